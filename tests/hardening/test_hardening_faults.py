"""Faults: processes killed mid-traffic, thousands of connections coming and going, SIGTERM.

* kill -9 of a subscriber or a publisher process: the server forgets it at once, everybody
  else carries on and nothing they were promised is lost;
* kill -9 (or a hang, SIGSTOP) of the server process: clients get a clear
  ``ConnectionClosedError`` within their keep-alive interval, never a hang;
* connect / subscribe / publish / disconnect cycles, half of them abrupt: afterwards the
  server holds no connection and no subscription, and its memory is back where it was;
* SIGTERM during traffic: every request the server read is answered (and its events
  delivered), every peer is told, and the process exits 0 in bounded time.

The cycle count is ``HARDENING_CYCLES`` (default 10,000; the test prints its figures,
see them with ``-s``)::

    HARDENING_CYCLES=10000 .venv/bin/python -m pytest -s tests/hardening/test_hardening_faults.py -k cycles
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from hardening_helpers import (
    HOSTILE,
    LONG_ID,
    PUBSUB_RPC,
    WITNESS_PUBLISHER,
    WITNESS_SUBSCRIBER,
    RawPeer,
    child_env,
    clients_toml,
    closing,
    make_server,
    python_child,
    read_line,
    request,
    running,
    wait_until,
    witness,
)

from pubsub_rpc import ConnectionClosedError, ErrorCode
from transports import tcp

CYCLES = int(os.environ.get("HARDENING_CYCLES", "10000"))


@asynccontextmanager
async def child(*args: str) -> AsyncIterator[subprocess.Popen[str]]:
    """A helper process, killed (if still alive) and reaped when the body ends."""
    process = python_child(*args)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        await trio.to_thread.run_sync(process.wait)
        assert process.stdout is not None
        process.stdout.close()


# -- kill -9 of a client -----------------------------------------------------------------------


async def test_kill_9_of_a_subscriber_process() -> None:
    server, adapter = make_server()
    async with (
        running(server),
        witness(adapter),
        tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_PUBLISHER) as publisher,
        tcp.connect("127.0.0.1", adapter.port, client_id=LONG_ID, subscription_buffer=100_000) as survivor,
        child("hardening_client.py", "subscribe", str(adapter.port), HOSTILE, "faults") as victim,
    ):
        values = await survivor.subscribe("faults")
        assert await read_line(victim) == "ready\n"
        connections_before = server.connection_count
        listeners = []
        seq = 0
        while True:
            listeners.append(await publisher.publish("faults", seq))
            seq += 1
            if seq == 50:
                assert await read_line(victim) == "0\n"  # it was receiving
                victim.send_signal(signal.SIGKILL)
            if seq > 50 and listeners[-1] == 1:
                break
            await trio.sleep(0.001)
        # The dead subscriber stopped counting; its connection and subscription are gone.
        assert listeners[0] == 2 and listeners[-1] == 1
        await wait_until(lambda: server.connection_count == connections_before - 1)
        assert server.broker.listener_count("faults") == 1
        for _ in range(20):
            assert await publisher.publish("faults", seq) == 1
            seq += 1
        assert [await values.__anext__() for _ in range(seq)] == list(range(seq))


async def test_kill_9_of_a_publisher_process() -> None:
    server, adapter = make_server()
    async with (
        running(server),
        witness(adapter),
        tcp.connect(
            "127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER, subscription_buffer=1_000_000
        ) as sub,
        child("hardening_client.py", "publish", str(adapter.port), HOSTILE, "faults") as victim,
    ):
        values = await sub.subscribe("faults")
        assert await read_line(victim) == "ready\n"
        connections_before = server.connection_count
        received = [await values.__anext__() for _ in range(100)]
        victim.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(victim.wait)
        assert victim.stdout is not None
        answered = [int(line) for line in victim.stdout.read().split()]
        await wait_until(lambda: server.connection_count == connections_before - 1)
        # Every publish that was answered before the kill was delivered, in order, once
        # (and perhaps a few the server handled but the victim never saw answered).
        assert answered and answered == list(range(len(answered)))
        # The victim's connection is gone, so everything it published has been
        # fanned out; a marker published now arrives after all of it (no quiet
        # window to guess, which a loaded machine can overrun).
        async with tcp.connect("127.0.0.1", adapter.port, client_id=LONG_ID) as other:
            assert await other.publish("faults", "after") == 1
        while (value := await values.__anext__()) != "after":
            received.append(value)
        assert received == list(range(len(received)))
        assert len(received) >= len(answered)
        # The subscriber's connection is untouched.
        await sub.ping()


# -- kill -9 and hang of the server -----------------------------------------------------------


@asynccontextmanager
async def server_process() -> AsyncIterator[tuple[subprocess.Popen[str], int]]:
    async with child("hardening_server.py", WITNESS_PUBLISHER, WITNESS_SUBSCRIBER, HOSTILE) as process:
        line = await read_line(process)
        assert line.startswith("listening on tcp://127.0.0.1:"), line
        yield process, int(line.rsplit(":", 1)[1])


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["kill -9", "hang (SIGSTOP)"])
async def test_the_server_dies_or_hangs_during_traffic(fault: signal.Signals) -> None:
    keepalive = 1.0
    async with (
        server_process() as (process, port),
        tcp.connect(
            "127.0.0.1", port, client_id=WITNESS_PUBLISHER, keepalive=keepalive, request_timeout=60
        ) as pub,
        tcp.connect("127.0.0.1", port, client_id=WITNESS_SUBSCRIBER, keepalive=keepalive) as sub,
    ):
        values = await sub.subscribe("e")
        errors: dict[str, tuple[float, BaseException]] = {}

        async def publish_forever() -> None:
            try:
                seq = 0
                while True:
                    await pub.publish("e", seq)
                    seq += 1
                    await trio.sleep(0.002)
            except ConnectionClosedError as exc:
                errors["publisher"] = (time.monotonic(), exc)

        async def receive_forever() -> None:
            try:
                async for _ in values:
                    pass
            except ConnectionClosedError as exc:
                errors["subscriber"] = (time.monotonic(), exc)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_forever)
                nursery.start_soon(receive_forever)
                await trio.sleep(0.3)
                struck = time.monotonic()
                process.send_signal(fault)
        finally:
            if fault == signal.SIGSTOP:
                process.kill()
        assert set(errors) == {"publisher", "subscriber"}
        for when, exc in errors.values():
            assert when - struck < keepalive + 0.5, exc
            if fault == signal.SIGSTOP:
                assert "keep-alive" in str(exc)


# -- connect, subscribe, publish, disconnect -------------------------------------------------------


async def _cycle(port: int, number: int) -> None:
    """One short life: subscribe and publish in one write, read both answers, leave."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        data = request("subscribe", {"client_id": HOSTILE, "event_name": "churn"}, 1) + request(
            "publish", {"client_id": HOSTILE, "event_name": "churn.all", "value": number}, 2
        )
        await stream.send_all(data)
        received = b""
        while received.count(b"\n") < 2:
            chunk = await stream.receive_some(65536)
            assert chunk, "the server closed the connection"
            received += chunk
        answers = [orjson.loads(line) for line in received.split(b"\n")[:2]]
        assert answers[1]["result"]["listeners"] == 1, answers
        if number % 2:
            # Abrupt: a reset, no unsubscribe, no goodbye.
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            subscription_id = answers[0]["result"]["subscription_id"]
            await stream.send_all(
                request("unsubscribe", {"client_id": HOSTILE, "subscription_id": subscription_id}, 3)
            )
            while b'"id":3' not in received:
                received += await stream.receive_some(65536)
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
    finally:
        await stream.aclose()


async def _stats(process: subprocess.Popen[str]) -> dict[str, Any]:
    process.send_signal(signal.SIGUSR1)
    stats: dict[str, Any] = orjson.loads(await read_line(process))
    return stats


async def test_cycles_of_connect_subscribe_publish_disconnect() -> None:
    async with server_process() as (process, port):
        async with tcp.connect(
            "127.0.0.1", port, client_id=WITNESS_SUBSCRIBER, subscription_buffer=CYCLES + 1000
        ) as sub:
            everything = await sub.subscribe("churn.all")
            start = await _stats(process)

            async def run(numbers: range) -> None:
                async with trio.open_nursery() as nursery:
                    for worker in range(8):
                        nursery.start_soon(_worker, numbers[worker::8])

            async def _worker(numbers: range) -> None:
                for number in numbers:
                    await _cycle(port, number)

            warm_up = 200
            await run(range(warm_up))
            warm = await _stats(process)
            began = time.monotonic()
            await run(range(warm_up, warm_up + CYCLES))
            elapsed = time.monotonic() - began
            values = sorted([await everything.__anext__() for _ in range(warm_up + CYCLES)])
            assert values == list(range(warm_up + CYCLES))
        end: dict[str, Any] = {}
        for _ in range(200):  # the server notices the last disconnects within moments
            end = await _stats(process)
            if end["connections"] == 0:
                break
            await trio.sleep(0.01)
    assert (end["connections"], end["broker_connections"], end["subscriptions"]) == (0, 0, 0)
    growth = end["rss_kib"] - warm["rss_kib"]
    print(
        f"\n{CYCLES} cycles in {elapsed:.1f} s; server RSS: {start['rss_kib'] / 1024:.1f} MiB at start, "
        f"{warm['rss_kib'] / 1024:.1f} MiB after {warm_up} warm-up cycles, "
        f"{end['rss_kib'] / 1024:.1f} MiB after all ({growth / 1024:+.1f} MiB)"
    )
    assert growth < 20 * 1024


# -- SIGTERM during traffic -------------------------------------------------------------------------


async def test_sigterm_during_traffic(tmp_path: Path) -> None:
    publishers, subscribers = 3, 2
    clients = clients_toml(tmp_path / "clients.toml", WITNESS_PUBLISHER, WITNESS_SUBSCRIBER)
    process = subprocess.Popen(
        [PUBSUB_RPC, "serve", "--clients", str(clients), "--tcp", "127.0.0.1:0", "--close-timeout", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=child_env(),
    )
    try:
        line = await read_line(process)
        port = int(line.rsplit(":", 1)[1])
        subs = [await RawPeer.connect(port) for _ in range(subscribers)]
        for number, sub in enumerate(subs):
            await sub.send(request("subscribe", {"client_id": WITNESS_SUBSCRIBER, "event_name": "t"}, number))
            await sub.read_one()
        pubs = [await RawPeer.connect(port) for _ in range(publishers)]
        sent = [0] * publishers

        async def publish(index: int) -> None:
            # Pipelined, 10 publishes a write, until the server stops reading (a modest
            # rate, so that even a loaded machine's subscribers keep up).
            peer = pubs[index]
            try:
                while True:
                    batch = b"".join(
                        request(
                            "publish",
                            {"client_id": WITNESS_PUBLISHER, "event_name": "t", "value": [index, seq]},
                            seq,
                        )
                        for seq in range(sent[index], sent[index] + 10)
                    )
                    await peer.send(batch)
                    sent[index] += 10
                    await trio.sleep(0.005)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        frames: dict[str, list[Any]] = {}

        async def drain(name: str, peer: RawPeer) -> None:
            frames[name] = await peer.read_until_closed()

        async with trio.open_nursery() as nursery:
            for index in range(publishers):
                nursery.start_soon(publish, index)
            for index, peer in enumerate(pubs):
                nursery.start_soon(drain, f"pub{index}", peer)
            for index, peer in enumerate(subs):
                nursery.start_soon(drain, f"sub{index}", peer)
            await trio.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            status = await trio.to_thread.run_sync(process.wait)
            exited = time.monotonic() - signalled
        goodbye = closing(int(ErrorCode.SERVER_CLOSING), "The server is shutting down.")
        answered = []
        for index in range(publishers):
            got = frames[f"pub{index}"]
            # A prefix of the requests, each answered in order, then the goodbye: every
            # request sent after it was never read, and the client knows it.
            assert got[-1] == goodbye
            assert [answer["id"] for answer in got[:-1]] == list(range(len(got) - 1))
            assert all(answer["result"]["listeners"] == subscribers for answer in got[:-1])
            assert len(got) - 1 > 0
            answered.append(len(got) - 1)
        for index in range(subscribers):
            got = frames[f"sub{index}"]
            assert got[-1] == goodbye
            # Exactly the events of the answered publishes, each publisher's in order.
            for publisher in range(publishers):
                seqs = [e["params"]["value"][1] for e in got[:-1] if e["params"]["value"][0] == publisher]
                assert seqs == list(range(answered[publisher]))
        assert status == 0
        assert exited < 2 + 3  # the close timeout, plus a margin for a loaded machine
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)  # nobody listens any more
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
