"""Faults: Redis killed and restarted under traffic; a server killed under traffic.

Redis here is a private ``redis-server`` each test kills with SIGKILL; the
servers that lose a peer are real ``pubsub-rpc serve`` processes killed the
same way.  Waits are for states (connected, counts), never for durations.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster_helpers import ALICE, BOB, RawClient, RedisProcess, cluster, redis_server_binary, wait_until

from transports import Server
from transports._redis_bridge import RedisBridge

SCRIPT = Path(sys.executable).with_name("pubsub-rpc")


async def test_redis_lost_and_back_under_traffic(
    private_redis: RedisProcess, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pubsub_rpc.transports.redis")
    async with (
        cluster(private_redis.url, prefix) as (a, b, c),
        RawClient.open(a.port) as alice,
        RawClient.open(a.port) as bob_a,
        RawClient.open(b.port) as bob_b,
    ):
        await bob_a.call("subscribe", client_id=BOB, event_name="news")
        await bob_b.call("subscribe", client_id=BOB, event_name="news")
        await wait_until(lambda: a.bridge.remote_listeners("news") == 1)
        answers: list[dict[str, Any]] = []

        async def publish(count: int) -> None:
            for _ in range(count):
                answers.append(
                    await alice.call("publish", client_id=ALICE, event_name="news", value=len(answers))
                )

        await publish(5)
        assert answers == [{"listeners": 2, "client_id": ALICE}] * 5
        # (Events still on their way when Redis dies are lost: at most once.)
        await wait_until(lambda: b.bridge.received == 5)
        private_redis.kill()
        await wait_until(lambda: not (a.bridge.connected or b.bridge.connected))
        # Every publish meanwhile reaches the local subscriber and says it went no further.
        await publish(20)
        assert answers[5:] == [{"listeners": 1, "client_id": ALICE, "forwarded": False}] * 20
        assert a.bridge.stats()["backplane_unforwarded"] == 20
        # Reconnection attempts go on; the outage is logged once per server, not per attempt or publish.
        await wait_until(lambda: a.bridge.outages == 1)
        await trio.sleep(0.5)  # several failed attempts (backoff starts at 0.1 s)
        await private_redis.start()
        await wait_until(lambda: a.bridge.connected and b.bridge.connected and c.bridge.connected)
        await wait_until(lambda: a.bridge.remote_listeners("news") == 1)
        await publish(5)
        assert answers[25:] == [{"listeners": 2, "client_id": ALICE}] * 5
        # Local delivery never stopped, in order; the far side got what was forwarded.
        assert [(await bob_a.next_event())[1] for _ in range(30)] == list(range(30))
        assert [(await bob_b.next_event())[1] for _ in range(10)] == [0, 1, 2, 3, 4, 25, 26, 27, 28, 29]
    lost = [r for r in caplog.records if "out of reach" in r.getMessage()]
    back = [r for r in caplog.records if "is back;" in r.getMessage()]
    assert len(lost) == 3 and len(back) == 3, [r.getMessage() for r in caplog.records]
    assert any("20 publishes were not forwarded" in r.getMessage() for r in back)


async def test_a_server_starting_without_redis_serves_and_joins_later(
    private_redis: RedisProcess, prefix: str
) -> None:
    private_redis.kill()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(private_redis.start)
        async with cluster(private_redis.url, prefix, size=2) as (a, b):
            assert a.bridge.connected and b.bridge.connected


def _serve(clients: Path, url: str, prefix: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            *(str(SCRIPT), "serve", "--clients", str(clients), "--tcp", "127.0.0.1:0", "--trust", "tcp"),
            *("--redis", url, "--redis-prefix", prefix),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening on tcp://"), line + (process.stderr.read() if not line else "")
    return process, int(line.rsplit(":", 1)[1])


async def _stats(client: RawClient) -> dict[str, Any]:
    result: dict[str, Any] = await client.call("stats")
    return result


async def test_a_killed_server_stops_counting_and_the_others_carry_on(
    shared_redis_url: str, prefix: str, tmp_path: Path
) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(f'[[client]]\nid = "{ALICE}"\n\n[[client]]\nid = "{BOB}"\n')
    processes = [_serve(clients, shared_redis_url, prefix) for _ in range(3)]
    try:
        (_, port_a), (_, port_b), (process_c, port_c) = processes
        async with (
            RawClient.open(port_a) as alice,
            RawClient.open(port_a) as operator,
            RawClient.open(port_b) as bob_b,
            RawClient.open(port_c) as bob_c,
        ):
            await bob_b.call("subscribe", client_id=BOB, event_name="news")
            await bob_c.call("subscribe", client_id=BOB, event_name="news")
            with trio.fail_after(10):
                while (await _stats(operator))["backplane_remote_subscriptions"] != 2:
                    await trio.sleep(0.02)
            answer = await alice.call("publish", client_id=ALICE, event_name="news", value=0)
            assert answer == {"listeners": 2, "client_id": ALICE}
            assert await bob_b.next_event() == ("news", 0) and await bob_c.next_event() == ("news", 0)
            process_c.send_signal(signal.SIGKILL)
            process_c.wait(timeout=10)
            # Until C's counts expire, A still counts it; after, only B.  B never stops receiving.
            n = 0
            with trio.fail_after(15):
                while True:
                    n += 1
                    answer = await alice.call("publish", client_id=ALICE, event_name="news", value=n)
                    assert await bob_b.next_event() == ("news", n)
                    if answer["listeners"] == 1:
                        break
                    assert answer["listeners"] == 2
                    await trio.sleep(0.05)
            stats = await _stats(operator)
            assert stats["backplane_nodes"] == 1 and stats["backplane_remote_subscriptions"] == 1
            assert stats["backplane_connected"] == 1 and stats["backplane_unforwarded"] == 0
            assert stats["backplane_channels"] == 0  # A's clients subscribe to nothing
            with trio.fail_after(10):  # counted once Redis acknowledged the last pipeline
                while (await _stats(operator))["backplane_forwarded"] != n + 1:
                    await trio.sleep(0.01)
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in processes:
            _out, errors = process.communicate(timeout=10)
            assert "Traceback" not in errors, errors
            assert "s3cret" not in errors


async def test_a_password_in_the_url_works_and_is_never_logged(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pubsub_rpc")
    redis = RedisProcess(redis_server_binary(), "--requirepass", "pw-s3cret")
    await redis.start()
    try:
        url = f"redis://:pw-s3cret@127.0.0.1:{redis.port}/0"
        async with (
            cluster(url, prefix, size=2) as (a, b),
            a.connect(ALICE) as alice,
            b.connect(BOB) as bob,
            await bob.subscribe("news") as events,
        ):
            await wait_until(lambda: a.bridge.remote_listeners("news") == 1)
            assert await alice.publish("news", 1) == 1
            assert await events.__anext__() == 1
        # A wrong password: the server serves on, says Redis is out of reach, never prints either.
        wrong = RedisBridge(
            Server([]).broker, f"redis://:wrong-s3cret@127.0.0.1:{redis.port}/0", prefix=prefix
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(wrong.run)
            await wait_until(lambda: wrong.outages == 1)
            assert not wrong.connected
            await wrong.aclose()
    finally:
        redis.stop()
    assert caplog.records and not any("s3cret" in record.getMessage() for record in caplog.records)
    assert any(f"redis://127.0.0.1:{redis.port}/0" in record.getMessage() for record in caplog.records)


class _Publisher:
    """A stand-in connection for publishing straight into a broker (no subscriptions of its own)."""

    trusted = False

    def push_event(self, event: object, subscription: object) -> bool:
        raise AssertionError("a publisher without subscriptions gets no events")


async def test_a_full_outbox_counts_unforwarded_instead_of_growing(
    shared_redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pubsub_rpc.transports.redis")
    async with (
        cluster(shared_redis_url, prefix, size=2, queue_size=3) as (a, b),
        b.connect(BOB) as bob,
        await bob.subscribe("news") as events,
    ):
        await wait_until(lambda: a.bridge.remote_listeners("news") == 1)
        broker, publisher = a.server.broker, _Publisher()
        # Ten publishes in one go, before the sender task can run: three fit.
        answers = [broker.publish(publisher, ALICE, "news", n) for n in range(10)]
        assert answers[:3] == [{"listeners": 1, "client_id": ALICE}] * 3
        assert answers[3:] == [{"listeners": 0, "client_id": ALICE, "forwarded": False}] * 7
        assert a.bridge.unforwarded == 7
        assert [await events.__anext__() for _ in range(3)] == [0, 1, 2]
        # Once it drained, events go again; the overflow was logged once.
        await wait_until(lambda: a.bridge.forwarded == 3)
        assert broker.publish(publisher, ALICE, "news", 10)["listeners"] == 1
        assert await events.__anext__() == 10
    assert len([r for r in caplog.records if "not keeping up" in r.getMessage()]) == 1


async def test_the_python_client_sees_a_publish_that_stayed_on_its_server(
    private_redis: RedisProcess, prefix: str
) -> None:
    async with (
        cluster(private_redis.url, prefix, size=2) as (a, b),
        a.connect(ALICE) as alice,
        a.connect(BOB) as bob_a,
        b.connect(BOB) as bob_b,
        await bob_a.subscribe("news") as local,
        await bob_b.subscribe("news") as remote,
    ):
        await wait_until(lambda: a.bridge.remote_listeners("news") == 1)
        report = await alice.publish("news", 1, report=True)
        assert (report.listeners, report.delivered, report.forwarded) == (2, 1, True)
        assert await remote.__anext__() == 1
        private_redis.kill()
        await wait_until(lambda: not a.bridge.connected)
        report = await alice.publish("news", 2, report=True)
        # Delivered on A only, and the client can tell.
        assert (report.listeners, report.delivered, report.forwarded) == (1, 1, False)
        assert [await local.__anext__() for _ in range(2)] == [1, 2]


async def test_pattern_subscriptions_are_taken_up_again_after_redis_returns(
    private_redis: RedisProcess, prefix: str
) -> None:
    async with (
        cluster(private_redis.url, prefix, size=2) as (a, b),
        RawClient.open(a.port) as alice,
        RawClient.open(b.port) as bob,
    ):
        await bob.call("subscribe", client_id=BOB, pattern="news.>")
        await bob.call("subscribe", client_id=BOB, event_name="news.x")
        await wait_until(lambda: a.bridge.remote_listeners("news.x") == 2)
        private_redis.kill()
        await wait_until(lambda: not (a.bridge.connected or b.bridge.connected))
        assert a.bridge.remote_listeners("news.x") == 0
        await private_redis.start()
        # B subscribes again (the glob included) and announces both; A counts them again.
        await wait_until(lambda: a.bridge.remote_listeners("news.x") == 2)
        assert b.bridge.stats()["backplane_patterns"] == 1
        answer = await alice.call("publish", client_id=ALICE, event_name="news.x", value="back")
        assert answer == {"listeners": 2, "client_id": ALICE}
        assert [await bob.next_event() for _ in range(2)] == [("news.x", "back")] * 2
        await bob.call("ping")
        assert bob.events == []
