"""Reconnecting clients against faults: a server process killed with SIGKILL and restarted on its
port, a connection dropped with a publish unanswered, a first connection that cannot be made;
and the backoff's jitter.
"""

from __future__ import annotations

import inspect
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from reconnect_helpers import FAST, PUBLISHER, SUBSCRIBER, Gaps, answer
from transport_helpers import child_env

from pubsub_rpc import ConnectionClosedError, FrameDecoder
from transports import Gap, reconnecting, tcp
from transports._reconnect import backoff_delay


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    rng = random.Random(7)
    for failures, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (50, 1.0), (5000, 1.0)]:
        delays = [backoff_delay(failures, 0.1, 1.0, rng) for _ in range(2000)]
        assert all(0.0 <= delay <= cap for delay in delays)
        # Spread over the whole window, not bunched at its end (that is what full jitter is for).
        assert min(delays) < cap * 0.05 and max(delays) > cap * 0.95


async def test_the_first_connection_failure_is_raised_as_it_is() -> None:
    with trio.fail_after(10):
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # nobody listens there now
        with pytest.raises(ConnectionClosedError, match=r"^Connecting to tcp://127\.0\.0\.1:\d+ failed"):
            async with reconnecting(partial(tcp.connect, "127.0.0.1", port, client_id=SUBSCRIBER)):
                pytest.fail("connected to nothing")


def test_an_open_connection_is_refused_in_place_of_a_connect_function() -> None:
    with pytest.raises(TypeError, match="takes a function that opens a connection"):
        reconnecting(tcp.connect("127.0.0.1", 1, client_id=SUBSCRIBER))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        reconnecting(lambda: tcp.connect("127.0.0.1", 1), max_attempts=0)


# -- kill -9 of the server process -----------------------------------------------------------


@asynccontextmanager
async def server_process(clients: Path, port: int) -> AsyncIterator[tuple[trio.Process, int]]:
    """``pubsub-rpc serve`` on ``port`` (0: any) in a subprocess; yields it and its port."""
    argv = [sys.executable, "-m", "transports", "serve", "--clients", str(clients), "--tcp", f"127.0.0.1:{port}"]
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=child_env()
    )
    try:
        assert process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some(1)
            assert chunk, "the server exited before listening"
            line += chunk
        assert line.startswith(b"listening on tcp://127.0.0.1:"), line
        yield process, int(line.rsplit(b":", 1)[1])
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        assert process.stdout is not None
        await process.stdout.aclose()


async def test_a_server_killed_with_sigkill_and_restarted(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text("".join(f'[[client]]\nid = "{cid}"\n' for cid in (SUBSCRIBER, PUBLISHER)))
    gaps = Gaps()
    with trio.fail_after(30):
        async with server_process(clients, 0) as (first, port):
            sub_connect = partial(tcp.connect, "127.0.0.1", port, client_id=SUBSCRIBER)
            pub_connect = partial(tcp.connect, "127.0.0.1", port, client_id=PUBLISHER)
            async with (
                reconnecting(sub_connect, on_gap=gaps, **FAST) as subscriber,
                reconnecting(pub_connect, **FAST) as publisher,
            ):
                events = await subscriber.subscribe("e")
                assert await publisher.publish("e", "before") == 1
                assert await events.__anext__() == "before"
                first.send_signal(signal.SIGKILL)
                await first.wait()
                # No goodbye from a killed server: the client notices the connection end.
                async with server_process(clients, port):
                    await gaps.wait_for(1)
                    # The publisher reconnects by itself when it publishes.
                    assert await publisher.publish("e", "after") == 1
                    gap = await events.__anext__()
                    assert isinstance(gap, Gap) and gap is gaps.seen[0]
                    assert gap.reconnect_number == 1 and gap.reason
                    assert await events.__anext__() == "after"
                    assert publisher.reconnects == 1


# -- a publish in flight when the connection drops ------------------------------------------------


async def test_a_publish_in_flight_is_not_sent_again(nursery: trio.Nursery) -> None:
    published: list[Any] = []
    connections: list[int] = []

    async def fake_server(stream: trio.SocketStream) -> None:
        # Answers pings; drops the connection on the first publish, answers the later ones.
        connections.append(1)
        decoder = FrameDecoder()
        while data := await stream.receive_some(65536):
            for request in decoder.feed(data):
                assert isinstance(request, dict)
                if request["method"] == "ping":
                    await stream.send_all(answer(request, {}))
                elif request["method"] == "publish":
                    published.append(request["params"]["value"])
                    if len(published) == 1:
                        await stream.aclose()
                        return
                    await stream.send_all(answer(request, {"listeners": 0, "client_id": PUBLISHER}))

    listeners = await nursery.start(trio.serve_tcp, fake_server, 0)
    port = listeners[0].socket.getsockname()[1]
    gaps = Gaps()
    with trio.fail_after(20):
        connect = partial(tcp.connect, "127.0.0.1", port, client_id=PUBLISHER)
        async with reconnecting(connect, on_gap=gaps, **FAST) as client:
            with pytest.raises(ConnectionClosedError) as caught:
                await client.publish("e", "once")
            assert caught.value.message.endswith(
                "The publish request had been sent: it may or may not have reached the server, "
                "and it was not sent again."
            )
            await gaps.wait_for(1)
            assert await client.publish("e", "next") == 0
    assert published == ["once", "next"]
    assert len(connections) == 2


def test_the_readme_example_uses_real_names() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reconnecting clients", 1)[1]
    example = section.split("```py\n", 1)[1].split("```", 1)[0]
    imports, body = example.split("\n\n", 1)
    namespace: dict[str, Any] = {}
    exec(imports, namespace)  # the names it imports exist
    # The rest is the body of an async function; it must at least compile as one.
    compile("async def example():\n" + "".join(f"    {line}\n" for line in body.splitlines()), "README", "exec")
    assert "max_attempts" in inspect.signature(namespace["reconnecting"]).parameters
