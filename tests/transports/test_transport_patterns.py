"""Pattern subscriptions, per-name rules and publish options, end to end over real transports.

TCP in both dialects, a Unix socket and in-process: each client API
(``psubscribe``, ``publish(exclude_self=..., report=...)``) against a server
whose clients file-style records carry allow/deny rules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from transport_helpers import Harness, collect, make_adapter, running

from pubsub_rpc import ClientInfo, ErrorCode, Event, PatternError, PublishResult, RequestError
from transports import PatternSubscription, Server, inprocess

KINDS = ["tcp", "tcp-pub_sub", "unix", "inprocess"]


@pytest.fixture(params=KINDS)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = str(request.param)
    adapter = make_adapter(kind, tmp_path)
    server = Server([adapter])
    server.register_client(ClientInfo("alice"))
    server.register_client(ClientInfo("bob"))
    server.register_client(
        ClientInfo(
            "ruled",
            publish_allow=("orders.>",),
            publish_deny=("orders.secret",),
            subscribe_allow=("public.>",),
            subscribe_deny=("public.secret.>",),
        )
    )
    async with running(server):
        yield Harness(kind, server, adapter)


async def test_pattern_subscription_yields_events_with_the_real_names(rig: Harness) -> None:
    async with rig.connect("alice") as publisher, rig.connect("bob") as subscriber:
        events = await subscriber.psubscribe("user.*")
        assert isinstance(events, PatternSubscription) and events.event_name == "user.*"
        exact = await subscriber.subscribe("user.logged_in")
        # An exact subscription is string equality; the pattern matches either separator.
        assert await publisher.publish("user.logged_in", {"id": 7}) == 2
        assert await publisher.publish("user::logged_in", 8) == 1
        assert await publisher.publish("user.a.b", 9) == 0
        received = await collect(events, 2)
        assert received == [
            Event(event_name="user.logged_in", value={"id": 7}, subscription_id=events.id),
            Event(event_name="user::logged_in", value=8, subscription_id=events.id),
        ]
        assert await collect(exact, 1) == [{"id": 7}]
        await events.unsubscribe()
        assert await publisher.publish("user.left", 10) == 0  # the exact one remains, for another name
        assert rig.server.broker.subscription_count == 1


async def test_rest_wildcard_and_unsubscribe_on_leaving_the_block(rig: Harness) -> None:
    async with rig.connect("alice") as publisher, rig.connect("bob") as subscriber:
        async with await subscriber.psubscribe("orders.>") as events:
            for name in ("orders", "orders.eu", "orders::eu::new"):
                await publisher.publish(name, name)
            assert [e.event_name for e in await collect(events, 2)] == ["orders.eu", "orders::eu::new"]
        assert await publisher.publish("orders.eu", 1) == 0


async def test_exclude_self_false_delivers_to_the_publisher_and_report_counts(rig: Harness) -> None:
    async with rig.connect("alice") as alice, rig.connect("bob") as bob:
        own = await alice.psubscribe("chat.*")
        await bob.subscribe("chat.room")
        assert await alice.publish("chat.room", "hidden") == 1
        assert await alice.publish("chat.room", "seen", exclude_self=False) == 2
        report = await alice.publish("chat.room", "counted", report=True)
        assert isinstance(report, PublishResult)
        assert (report.listeners, report.delivered, report.dropped) == (1, 1, 0)
        assert report.client_id == "alice"
        # Only the publish with exclude_self false reached alice's own subscription.
        assert [e.value for e in await collect(own, 1)] == ["seen"]
        assert own.buffered == 0


async def test_publish_rules(rig: Harness) -> None:
    async with rig.connect("ruled") as ruled:
        assert await ruled.publish("orders::eu", 1) == 0
        with pytest.raises(RequestError) as info:
            await ruled.publish("orders.secret", 1)
        assert info.value.code == ErrorCode.PUBLISH_FORBIDDEN
        assert info.value.message == 'You are not allowed to publish events named "orders.secret".'


async def test_subscribe_rules_refuse_useless_patterns_and_filter_wide_ones(rig: Harness) -> None:
    async with rig.connect("alice") as publisher, rig.connect("ruled") as ruled:
        with pytest.raises(RequestError) as info:
            await ruled.psubscribe("public.secret.*")
        assert info.value.code == ErrorCode.SUBSCRIBE_FORBIDDEN
        assert (
            info.value.message == 'You are not allowed to subscribe to any event matching "public.secret.*".'
        )
        with pytest.raises(RequestError) as info:
            await ruled.subscribe("private")
        assert info.value.message == 'You are not allowed to subscribe to events named "private".'
        wide = await ruled.psubscribe(">")
        for name in ("private.x", "public.secret.x", "public.news"):
            await publisher.publish(name, name)
        # Counted as a listener (the filter applies per delivery), but never delivered.
        assert [e.event_name for e in await collect(wide, 1)] == ["public.news"]
        assert wide.buffered == 0


async def test_an_invalid_pattern_fails_in_the_client_before_anything_is_sent(rig: Harness) -> None:
    async with rig.connect("bob") as client:
        with pytest.raises(PatternError, match=r'^Invalid pattern "a\*": '):
            await client.psubscribe("a*")
        await client.ping()
        assert rig.server.broker.subscription_count == 0


async def test_a_slow_consumer_cut_off_mid_publish_shows_in_the_report() -> None:
    # In-process: the outbound bound counts messages, so the cut-off point is exact.
    adapter = inprocess.Adapter(max_outbound=2)
    server = Server([adapter])
    server.register_client(ClientInfo("alice"))
    server.register_client(ClientInfo("bob"))
    async with running(server):
        harness = Harness("inprocess", server, adapter)
        async with harness.connect("alice") as alice, harness.connect("bob") as bob:
            for pattern in ("x.*", "x.>", "*.y", ">"):
                await bob.psubscribe(pattern)
            # One synchronous fan-out of four copies to a queue bounded at two:
            # the third copy overflows it (queued, then closing), the fourth is refused.
            report = await alice.publish("x.y", 1, report=True)
            assert (report.listeners, report.delivered, report.dropped) == (3, 3, 1)
            assert server.broker.subscription_count == 0
