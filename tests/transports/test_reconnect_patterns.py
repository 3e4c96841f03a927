"""Reconnecting clients with issue 9's features: pattern subscriptions, publish options, rules, stats.

Over TCP, Unix sockets and in-process, each test restarts a real server at
the same address and checks that a ``psubscribe`` comes back as a pattern
subscription (``Event`` objects, a ``Gap`` between them), that
``exclude_self`` and ``report`` reach the server on every connection, that a
rule on the restarted server ends a renewal it forbids, and that ``stats``
works through the reconnecting client.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from reconnect_helpers import FAST, KINDS, PUBLISHER, SUBSCRIBER, Gaps, Restartable

from pubsub_rpc import ClientInfo, ErrorCode, Event, PublishResult, RequestError
from transports import Gap, reconnecting

OPERATOR = "reconnect-operator-s3cret"
#: Registered on every server of these tests, so stats can be read through a reconnecting client.
INFOS = (ClientInfo(OPERATOR, can_inspect=True),)


@pytest.fixture(params=KINDS)
async def restartable(request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery) -> Restartable:
    """A running server over the transport under test, which the test may restart."""
    restartable = Restartable(str(request.param), tmp_path, nursery)
    await restartable.start(infos=INFOS)
    return restartable


async def restart(restartable: Restartable, infos: tuple[ClientInfo, ...] = INFOS) -> None:
    await restartable.stop()
    await restartable.start(infos=infos)


def named(items: list[Event | Gap]) -> list[tuple[str, object] | Gap]:
    return [item if isinstance(item, Gap) else (item.event_name, item.value) for item in items]


async def test_a_pattern_subscription_is_renewed_as_a_pattern_with_a_gap(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client:
            users = await client.psubscribe("user.>")
            login = await client.subscribe("user.login")  # an exact one beside it stays exact
            assert await restartable.publish("user.login", 1) == 2
            assert await restartable.publish("user::logout", 2) == 1  # "::" separates segments too
            assert await restartable.publish("other.login", "no") == 0
            await restart(restartable)
            await gaps.wait_for(1)
            server = restartable.server
            assert server is not None
            assert server.broker.stats()["pattern_subscriptions"] == 1
            assert server.broker.subscription_count == 2
            # A name never published before: only a pattern can match it.
            assert await restartable.publish("user.a.b", 3) == 1
            assert await restartable.publish("user.login", 4) == 2
            items = [await users.__anext__() for _ in range(5)]
            assert named(items) == [
                ("user.login", 1),
                ("user::logout", 2),
                gaps.seen[0],
                ("user.a.b", 3),
                ("user.login", 4),
            ]
            assert all(isinstance(item, Event) for item in items if not isinstance(item, Gap))
            # Events after the renewal carry the new subscription's id.
            assert isinstance(items[-1], Event) and items[-1].subscription_id == users.id
            assert [await login.__anext__() for _ in range(3)] == [1, gaps.seen[0], 4]
            assert users.event_name == "user.>" and users.active
            async with users:
                pass  # leaving the block unsubscribes the renewed pattern subscription
            assert not users.active
            assert [item async for item in users] == []
            assert server.broker.stats()["pattern_subscriptions"] == 0
            assert server.broker.subscription_count == 1
            await login.unsubscribe()
    assert restartable.server is not None and restartable.server.broker.subscription_count == 0


async def test_publish_options_pass_through_on_every_connection(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client:
            own = await client.psubscribe("news.*")
            assert await client.publish("news.a", "hidden") == 0  # exclude_self by default
            assert await client.publish("news.a", 1, exclude_self=False) == 1
            report = await client.publish("news.a", 2, exclude_self=False, report=True)
            assert report == PublishResult(listeners=1, client_id=SUBSCRIBER, delivered=1, dropped=0)
            await restart(restartable)
            await gaps.wait_for(1)
            report = await client.publish("news.b", 3, exclude_self=False, report=True)
            assert (report.listeners, report.delivered, report.dropped) == (1, 1, 0)
            report = await client.publish("news.b", "hidden", report=True)
            assert (report.listeners, report.delivered, report.dropped) == (0, 0, 0)
            items = [await own.__anext__() for _ in range(4)]
            assert named(items) == [("news.a", 1), ("news.a", 2), gaps.seen[0], ("news.b", 3)]
            assert own.buffered == 0  # the excluded ones never came
            await own.unsubscribe()


async def test_a_rule_of_the_restarted_server_ends_a_renewal_it_forbids(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client:
            secrets = await client.psubscribe("secret.*")
            news = await client.psubscribe("news.>")
            assert await restartable.publish("secret.plan", "before") == 1
            # The same client id comes back denied the secret names.
            await restartable.stop()
            await restartable.start(
                (PUBLISHER,), infos=(*INFOS, ClientInfo(SUBSCRIBER, subscribe_deny=("secret.>",)))
            )
            await gaps.wait_for(1)
            assert named([await secrets.__anext__()]) == [("secret.plan", "before")]
            with pytest.raises(RequestError) as refused:
                await secrets.__anext__()
            assert refused.value.code == ErrorCode.SUBSCRIBE_FORBIDDEN
            assert not secrets.active
            # The other pattern was renewed and carries on.
            assert await restartable.publish("news.today", "ok") == 1
            assert await restartable.publish("secret.plan", "after") == 0
            assert named([await news.__anext__() for _ in range(2)]) == [gaps.seen[0], ("news.today", "ok")]
            await news.unsubscribe()


async def test_stats_are_read_through_a_reconnecting_client(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with (
            reconnecting(restartable.connector(OPERATOR), on_gap=gaps, **FAST) as operator,
            reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as subscriber,
        ):
            await subscriber.psubscribe("user.>")
            await subscriber.subscribe("user.login")
            stats = await operator.stats()
            assert (stats["subscriptions"], stats["pattern_subscriptions"], stats["event_names"]) == (2, 1, 1)
            assert stats["connections"] == 2
            with pytest.raises(RequestError) as refused:
                await subscriber.stats()
            assert refused.value.code == ErrorCode.INSPECT_FORBIDDEN
            assert subscriber.connected  # a refusal is an answer, not a lost connection
            await restart(restartable)
            await gaps.wait_for(2)  # both clients are back, the subscriber's subscriptions renewed
            stats = await operator.stats()
            assert (stats["subscriptions"], stats["pattern_subscriptions"], stats["event_names"]) == (2, 1, 1)
            assert stats["events_published"] == 0  # a new server: its counters started afresh
