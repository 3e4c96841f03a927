"""Pattern subscriptions and publish options across servers.

A pattern subscription on one server receives what is published on another,
once, with its owner's rules applied, and is counted in ``listeners`` where
the event was published; ``exclude_self`` and ``report`` keep their meaning
(spec sections 4.4, 4.5, 5.1 and 16).
"""

from __future__ import annotations

import coredis
from cluster_helpers import ALICE, BOB, CAROL, DAVE, RawClient, cluster, wait_until


async def _numpat(url: str) -> int:
    client = coredis.Redis.from_url(url)
    async with client:
        return await client.pubsub_numpat()


async def test_patterns_on_other_servers_receive_once_and_are_counted(
    shared_redis_url: str, prefix: str
) -> None:
    async with (
        cluster(shared_redis_url, prefix) as (a, b, c),
        RawClient.open(a.port) as alice,
        RawClient.open(b.port) as bob,
        RawClient.open(c.port) as carol,
    ):
        # bob on B: an exact subscription and an overlapping pattern; carol on C: two patterns.
        await bob.call("subscribe", client_id=BOB, event_name="orders.eu")
        await bob.call("subscribe", client_id=BOB, pattern="orders.>")
        await carol.call("subscribe", client_id=CAROL, pattern="*.eu")
        await carol.call("subscribe", client_id=CAROL, pattern="orders.*")
        await wait_until(lambda: a.bridge.remote_listeners("orders.eu") == 4)
        answer = await alice.call("publish", client_id=ALICE, event_name="orders.eu", value=1)
        assert answer == {"listeners": 4, "client_id": ALICE}
        # Each subscription once: B and C each took one copy of the event from Redis.
        assert [await bob.next_event() for _ in range(2)] == [("orders.eu", 1)] * 2
        assert [await carol.next_event() for _ in range(2)] == [("orders.eu", 1)] * 2
        for client in (bob, carol):
            await client.call("ping")
            assert client.events == []
        assert (b.bridge.received, c.bridge.received) == (1, 1)
        # "::" separates as "." does; a name only the glob (not the pattern) admits reaches nobody.
        assert a.bridge.remote_listeners("orders::us") == 2
        answer = await alice.call("publish", client_id=ALICE, event_name="orders::us", value=2)
        assert answer["listeners"] == 2
        assert await bob.next_event() == ("orders::us", 2)
        assert await carol.next_event() == ("orders::us", 2)
        assert a.bridge.remote_listeners("ordersX") == 0
        assert (await alice.call("publish", client_id=ALICE, event_name="ordersX", value=3))["listeners"] == 0
        await bob.call("ping")
        assert bob.events == [] and b.bridge.received == 2


async def test_glob_characters_in_a_pattern_are_literal_in_redis(shared_redis_url: str, prefix: str) -> None:
    async with (
        cluster(shared_redis_url, prefix, size=2) as (a, b),
        RawClient.open(a.port) as alice,
        RawClient.open(b.port) as bob,
    ):
        # Unescaped, "[1]" would be a character class and "a[1].x" would not match the glob.
        await bob.call("subscribe", client_id=BOB, pattern="a[1]\\?.*")
        await wait_until(lambda: a.bridge.remote_listeners("a[1]\\?.x") == 1)
        assert a.bridge.remote_listeners("a1?.x") == 0
        answer = await alice.call("publish", client_id=ALICE, event_name="a[1]\\?.x", value="ok")
        assert answer["listeners"] == 1
        assert await bob.next_event() == ("a[1]\\?.x", "ok")


async def test_rules_filter_remote_pattern_deliveries_and_counts(shared_redis_url: str, prefix: str) -> None:
    async with (
        cluster(shared_redis_url, prefix, size=2) as (a, b),
        RawClient.open(a.port) as alice,
        RawClient.open(b.port) as dave,
    ):
        await dave.call("subscribe", client_id=DAVE.id, pattern="orders.*")
        await wait_until(lambda: a.bridge.remote_listeners("orders.eu") == 1)
        # dave may not receive orders.secret: not counted on A, not delivered on B.
        assert a.bridge.remote_listeners("orders.secret") == 0
        answer = await alice.call("publish", client_id=ALICE, event_name="orders.secret", value=1)
        assert answer["listeners"] == 0
        answer = await alice.call("publish", client_id=ALICE, event_name="orders.eu", value=2)
        assert answer["listeners"] == 1
        assert await dave.next_event() == ("orders.eu", 2)
        await dave.call("ping")
        assert dave.events == []


async def test_pattern_interest_comes_and_goes_with_subscriptions(shared_redis_url: str, prefix: str) -> None:
    async with cluster(shared_redis_url, prefix, size=2) as (a, b):
        before = await _numpat(shared_redis_url)
        async with RawClient.open(b.port) as bob:
            # Two patterns with one glob share one PSUBSCRIBE.
            first = await bob.call("subscribe", client_id=BOB, pattern="news.*")
            await bob.call("subscribe", client_id=BOB, pattern="news.>")
            await bob.call("subscribe", client_id=BOB, pattern="news::*")
            await wait_until(lambda: a.bridge.remote_listeners("news.x") == 3)
            assert b.bridge.stats()["backplane_patterns"] == 1
            assert await _numpat(shared_redis_url) == before + 1
            await bob.call("unsubscribe", client_id=BOB, subscription_id=first["subscription_id"])
            await wait_until(lambda: a.bridge.remote_listeners("news.x") == 2)
            assert a.bridge.stats()["backplane_remote_subscriptions"] == 2
        # The connection closed: its patterns are forgotten everywhere, the glob released.
        await wait_until(lambda: a.bridge.remote_listeners("news.x") == 0)
        await wait_until(lambda: b.bridge.stats()["backplane_patterns"] == 0)
        assert await _numpat(shared_redis_url) == before


async def test_a_late_server_learns_the_others_patterns(shared_redis_url: str, prefix: str) -> None:
    async with (
        cluster(shared_redis_url, prefix, size=2) as (a, b),
        RawClient.open(b.port) as bob,
    ):
        await bob.call("subscribe", client_id=BOB, pattern="late.>")
        await wait_until(lambda: a.bridge.remote_listeners("late.x") == 1)
        async with cluster(shared_redis_url, prefix, size=1) as (c,):
            # C joined after the subscription: it learns it from B's state message.
            await wait_until(lambda: c.bridge.remote_listeners("late.x.y") == 1)
            async with RawClient.open(c.port) as carol:
                answer = await carol.call("publish", client_id=CAROL, event_name="late.x.y", value=1)
                assert answer["listeners"] == 1
                assert await bob.next_event() == ("late.x.y", 1)


async def test_exclude_self_false_reaches_the_publishers_subscriptions_elsewhere(
    shared_redis_url: str, prefix: str
) -> None:
    async with (
        cluster(shared_redis_url, prefix, size=2) as (a, b),
        RawClient.open(a.port) as alice_a,
        RawClient.open(b.port) as alice_b,
        RawClient.open(b.port) as bob,
    ):
        await alice_a.call("subscribe", client_id=ALICE, event_name="feed.x")
        await alice_b.call("subscribe", client_id=ALICE, event_name="feed.x")
        await alice_b.call("subscribe", client_id=ALICE, pattern="feed.*")
        await bob.call("subscribe", client_id=BOB, pattern="feed.>")
        await wait_until(lambda: a.bridge.remote_listeners("feed.x") == 3)
        # By default the publisher's own subscriptions, on every server, are left out.
        answer = await alice_a.call("publish", client_id=ALICE, event_name="feed.x", value=1)
        assert answer == {"listeners": 1, "client_id": ALICE}
        assert await bob.next_event() == ("feed.x", 1)
        answer = await alice_a.call(
            "publish", client_id=ALICE, event_name="feed.x", value=2, exclude_self=False, report=True
        )
        # listeners: all four subscriptions; delivered: the one queued on A (spec 4.5, 16).
        assert answer == {"listeners": 4, "client_id": ALICE, "delivered": 1, "dropped": 0}
        assert await alice_a.next_event() == ("feed.x", 2)
        assert [await alice_b.next_event() for _ in range(2)] == [("feed.x", 2)] * 2
        assert await bob.next_event() == ("feed.x", 2)
        for client in (alice_a, alice_b, bob):
            await client.call("ping")
            assert client.events == []
