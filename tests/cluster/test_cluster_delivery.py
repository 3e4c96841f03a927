"""Three in-process servers on one Redis: delivery, order, exclusion, ``listeners``, channels.

Each server has its own TCP adapter and its own Redis connection; clients
connect over real loopback sockets.  Convergence points (a subscription
known on the other servers) are waited for through the bridge's own counts,
never with a sleep.
"""

from __future__ import annotations

import coredis
import trio
from cluster_helpers import ALICE, BOB, CAROL, RawClient, cluster, redis_channels, wait_until


async def test_events_cross_servers_once_each_never_back_to_the_publisher(
    shared_redis_url: str, prefix: str
) -> None:
    async with (
        cluster(shared_redis_url, prefix) as (a, b, c),
        RawClient.open(a.port) as alice_a,
        RawClient.open(b.port) as alice_b,
        RawClient.open(b.port) as bob_b,
        RawClient.open(c.port) as carol_c,
        RawClient.open(c.port) as carol_c2,
        RawClient.open(a.port) as bob_a,
    ):
        for client, who in (
            (alice_a, ALICE),
            (alice_b, ALICE),
            (bob_b, BOB),
            (carol_c, CAROL),
            (carol_c2, CAROL),
            (bob_a, BOB),
        ):
            await client.call("subscribe", client_id=who, event_name="news")
        # Other servers hold 4 subscriptions to "news", one of them alice's own.
        await wait_until(lambda: a.bridge.remote_listeners("news") == 4)
        answer = await alice_a.call("publish", client_id=ALICE, event_name="news", value={"n": 1})
        # bob on A (local), bob on B, carol twice on C; never alice, on any server.
        assert answer == {"listeners": 4, "client_id": ALICE}
        for client in (bob_a, bob_b, carol_c, carol_c2):
            assert await client.next_event() == ("news", {"n": 1})
        # A ping round trip after the event: nothing else arrived, no copy, no echo.
        for client in (alice_a, alice_b, bob_a, bob_b, carol_c, carol_c2):
            await client.call("ping")
            assert client.events == []
        assert (b.bridge.received, c.bridge.received) == (1, 1)
        # carol publishing on C: alice (A and B), bob (A and B); carol's own C subs left out.
        await wait_until(lambda: c.bridge.remote_listeners("news", CAROL) == 4)
        answer = await carol_c.call("publish", client_id=CAROL, event_name="news", value=2)
        assert answer["listeners"] == 4
        for client in (alice_a, alice_b, bob_a, bob_b):
            assert await client.next_event() == ("news", 2)
        await carol_c2.call("ping")
        assert carol_c2.events == []


async def test_each_publishers_order_holds_across_servers(shared_redis_url: str, prefix: str) -> None:
    async with (
        cluster(shared_redis_url, prefix) as (a, b, c),
        a.connect(ALICE) as alice,
        c.connect(CAROL) as carol,
        b.connect(BOB) as bob,
        await bob.subscribe("ticks") as events,
    ):
        await wait_until(
            lambda: a.bridge.remote_listeners("ticks") == 1 and c.bridge.remote_listeners("ticks") == 1
        )

        async def publish(client: object, who: str) -> None:
            for n in range(300):
                assert await client.publish("ticks", [who, n]) == 1  # type: ignore[attr-defined]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish, alice, "alice")
            nursery.start_soon(publish, carol, "carol")
        seen: dict[str, list[int]] = {"alice": [], "carol": []}
        for _ in range(600):
            who, n = await events.__anext__()
            seen[who].append(n)
        assert seen == {"alice": list(range(300)), "carol": list(range(300))}


async def test_only_subscribed_names_cross_the_network(shared_redis_url: str, prefix: str) -> None:
    async with cluster(shared_redis_url, prefix) as (a, b, _c):
        assert await redis_channels(shared_redis_url, prefix) == {prefix + "ctl"}
        async with b.connect(BOB) as bob, a.connect(ALICE) as alice:
            first = await bob.subscribe("wanted")
            second = await bob.subscribe("wanted")
            await wait_until(lambda: a.bridge.remote_listeners("wanted") == 2)
            assert await redis_channels(shared_redis_url, prefix) == {prefix + "ctl", prefix + "e:wanted"}
            # A name nobody elsewhere wants stays on its server: nothing is sent.
            sent = a.bridge.forwarded
            assert await alice.publish("unwanted", 1) == 0
            assert a.bridge.forwarded == sent
            assert await alice.publish("wanted", 1) == 2
            await wait_until(lambda: a.bridge.forwarded == sent + 1)
            # The channel goes when the last subscription to it goes, not before.
            await first.unsubscribe()
            await wait_until(lambda: a.bridge.remote_listeners("wanted") == 1)
            assert prefix + "e:wanted" in await redis_channels(shared_redis_url, prefix)
            await second.unsubscribe()
            await wait_until(lambda: a.bridge.remote_listeners("wanted") == 0)
            with trio.fail_after(10):
                while await redis_channels(shared_redis_url, prefix) != {prefix + "ctl"}:
                    await trio.sleep(0.01)
            # A closed connection's subscriptions go the same way.
            await bob.subscribe("again")
            await wait_until(lambda: a.bridge.remote_listeners("again") == 1)
        await wait_until(lambda: a.bridge.remote_listeners("again") == 0)
        assert b.bridge.stats()["backplane_channels"] == 0


async def test_foreign_messages_on_the_channels_are_counted_and_ignored(
    shared_redis_url: str, prefix: str
) -> None:
    async with (
        cluster(shared_redis_url, prefix, size=2) as (a, b),
        b.connect(BOB) as bob,
        a.connect(ALICE) as alice,
        await bob.subscribe("news") as events,
    ):
        await wait_until(lambda: a.bridge.remote_listeners("news") == 1)
        # Readable JSON nested deeper than any publish may be, then plain junk.
        deep = b'["x",1,null]\n' + b"[" * 300 + b"1" + b"]" * 300
        client = coredis.Redis.from_url(shared_redis_url)
        async with client:
            for payload in (b"junk", deep):
                await client.publish(f"{prefix}e:news".encode(), payload)
            await client.publish(f"{prefix}ctl".encode(), b'{"k":"count","n":"x"}')
        await wait_until(lambda: b.bridge.malformed == 3 and a.bridge.malformed == 1)
        # Both servers carry on.
        assert await alice.publish("news", "still here") == 1
        assert await events.__anext__() == "still here"
