"""The original ``pub_sub`` test suite (isolate_test.dart 1-8, json_rpc_2_test.dart 9-16), per transport.

The two Dart files ran the same eight scenarios over the isolate and the
JSON-RPC flavour; here each runs over every transport (``kind``): TCP in both
dialects, Unix sockets, pipes, in-process.  The fixture is the original's:
clients ``secret``, ``secret2``, ``secret3`` (full rights), ``no_publish``,
``no_subscribe`` under a per-suite prefix; client1..3 and a trusted client
with no id; client3 subscribed to ``foo`` in every test.  Unlike the
original (which checked exception types only) we assert the exact texts and
the ``listeners`` counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from transport_helpers import Harness, collect, prefix

from pubsub_rpc import ADHOC_PREFIX, RequestError
from transports import Client, Subscription


@dataclass
class Suite:
    harness: Harness
    prefix: str
    client1: Client
    client2: Client
    client3: Client
    trusted: Client
    client3_foo: Subscription


@pytest.fixture
async def suite(harness: Harness) -> AsyncIterator[Suite]:
    p = prefix(harness.kind)
    async with AsyncExitStack() as stack:
        client1 = await stack.enter_async_context(harness.connect(p + "secret"))
        client2 = await stack.enter_async_context(harness.connect(p + "secret2"))
        client3 = await stack.enter_async_context(harness.connect(p + "secret3"))
        trusted = await stack.enter_async_context(harness.connect(None))
        client3_foo = await client3.subscribe("foo")
        yield Suite(harness, p, client1, client2, client3, trusted, client3_foo)


# -- trusted (1, 9; 2, 10) ---------------------------------------------------------


async def test_trusted_can_publish(suite: Suite) -> None:
    assert suite.trusted.client_id is None
    assert await suite.trusted.publish("hey", "bye") == 0
    assert suite.trusted.client_id is not None
    assert suite.trusted.client_id.startswith(ADHOC_PREFIX)


async def test_trusted_can_sub_unsub(suite: Suite) -> None:
    await suite.trusted.publish("heyaaa", "byeaa")
    adhoc = suite.trusted.client_id
    assert adhoc is not None
    subscription = await suite.trusted.subscribe("yeppp")
    assert suite.trusted.client_id == adhoc
    assert subscription.event_name == "yeppp" and subscription.id
    await subscription.unsubscribe()
    assert suite.trusted.client_id == adhoc
    assert await collect(subscription, 1) == []


# -- delivery (3, 11; 4, 12; 5, 13) --------------------------------------------------


async def test_subscribers_receive_published_events(suite: Suite) -> None:
    subscription = await suite.client2.subscribe("foo")
    assert await suite.client1.publish("foo", "bar") == 2  # client2 and client3
    assert await collect(subscription, 1) == ["bar"]
    assert await collect(suite.client3_foo, 1) == ["bar"]


async def test_subscribers_are_not_sent_their_own_events(suite: Suite) -> None:
    subscription = await suite.client1.subscribe("foo")
    assert await suite.client1.publish("foo", "<this should never be sent to client1>") == 1  # client3
    await subscription.unsubscribe()
    assert await collect(subscription, 1) == []
    assert await collect(suite.client3_foo, 1) == ["<this should never be sent to client1>"]


async def test_can_unsubscribe(suite: Suite) -> None:
    subscription = await suite.client2.subscribe("foo")
    assert await suite.client1.publish("foo", "bar") == 2
    await subscription.unsubscribe()
    assert await suite.client1.publish("foo", "<this should never be sent to client2>") == 1
    assert await collect(subscription, 2) == ["bar"]
    assert await collect(suite.client3_foo, 2) == ["bar", "<this should never be sent to client2>"]


# -- rejections (6, 14; 7, 15; 8, 16) --------------------------------------------------


async def test_reject_unknown_client_id(suite: Suite) -> None:
    async with suite.harness.connect(suite.prefix + "invalid") as client:
        with pytest.raises(RequestError) as caught:
            await client.publish("foo", "bar")
    assert caught.value.message == f'Unrecognized client ID "{suite.prefix}invalid".'


async def test_reject_unprivileged_publish(suite: Suite) -> None:
    async with suite.harness.connect(suite.prefix + "no_publish") as client:
        with pytest.raises(RequestError) as caught:
            await client.publish("foo", "bar")
    assert caught.value.message == "You are not allowed to publish events."
    assert str(caught.value) == "`pub_sub` exception: You are not allowed to publish events."


async def test_reject_unprivileged_subscribe(suite: Suite) -> None:
    async with suite.harness.connect(suite.prefix + "no_subscribe") as client:
        with pytest.raises(RequestError) as caught:
            await client.subscribe("foo")
    assert caught.value.message == "You are not allowed to subscribe to events."
