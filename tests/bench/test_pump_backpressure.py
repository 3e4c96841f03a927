"""The slow-consumer policy the bench's figures are measured under (``transports._pump``).

A subscriber that reads slowly slows its publisher down and loses nothing;
one that stops reading holds the publisher back for ``STALL_TIMEOUT`` only,
then is cut off at ``max_outbound`` while everyone else carries on.  Both
with a total far above ``max_outbound`` (and above what the kernel's socket
buffers hold), so neither can pass by buffering everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
import trio

from pubsub_rpc import ClientInfo, ErrorCode
from transports import Server, _pump, tcp

EVENTS = 2_000
VALUE = "x" * 8_000  # 2,000 x ~8 KB: 16 MB of events, against a 1 MiB max_outbound
MAX_OUTBOUND = 1024 * 1024


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield
        finally:
            await server.aclose()


def make_server() -> tuple[Server, tcp.Adapter]:
    adapter = tcp.Adapter("127.0.0.1", 0)
    server = Server([adapter], max_outbound=MAX_OUTBOUND, close_timeout=0.5)
    for name in ("publisher", "slow", "stalled", "healthy"):
        server.register_client(ClientInfo(name))
    return server, adapter


async def subscribed(port: int, client_id: str) -> tuple[trio.SocketStream, bytes]:
    """A raw connection subscribed to "big"; returns it and bytes read past the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = {
        "jsonrpc": "2.0",
        "method": "subscribe",
        "params": {"client_id": client_id, "event_name": "big"},
        "id": 1,
    }
    await stream.send_all(orjson.dumps(request) + b"\n")
    buffer = b""
    while b"\n" not in buffer:
        buffer += await stream.receive_some(65536)
    answer, _, rest = buffer.partition(b"\n")
    assert "result" in orjson.loads(answer)
    return stream, rest


async def publish_all(port: int) -> None:
    """Write every publish at once (no waiting per message), then sync on a ping."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    params = {"client_id": "publisher", "event_name": "big", "value": VALUE}
    frame = orjson.dumps({"jsonrpc": "2.0", "method": "publish", "params": params}) + b"\n"
    await stream.send_all(frame * EVENTS + b'{"jsonrpc":"2.0","method":"ping","params":{},"id":"sync"}\n')
    answer = b""
    while b"\n" not in answer:
        data = await stream.receive_some(65536)
        assert data, "the publisher was disconnected"
        answer += data
    assert orjson.loads(answer.partition(b"\n")[0])["id"] == "sync"
    await stream.aclose()


async def read_events(stream: trio.SocketStream, already: bytes, *, pause: float) -> list[bytes]:
    """Every line until EOF or the last event, reading 32 KiB at a time with a pause between reads."""
    buffer = already
    lines: list[bytes] = []
    while len(lines) < EVENTS:
        data = await stream.receive_some(32 * 1024)
        if not data:
            break
        buffer += data
        *complete, buffer = buffer.split(b"\n")
        lines += complete
        if pause:
            await trio.sleep(pause)
    return lines


async def test_a_slow_subscriber_slows_the_publisher_and_loses_nothing() -> None:
    server, adapter = make_server()
    with trio.fail_after(60):
        async with serving(server), trio.open_nursery() as nursery:
            slow, rest = await subscribed(adapter.port, "slow")
            async with slow:
                nursery.start_soon(publish_all, adapter.port)
                # About 16 MB/s: the publisher could write many times faster.
                lines = await read_events(slow, rest, pause=0.002)
    assert len(lines) == EVENTS
    assert all(b'"method":"event"' in line for line in lines)


async def test_a_stalled_subscriber_is_cut_off_and_the_others_get_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_pump, "STALL_TIMEOUT", 0.2)
    server, adapter = make_server()
    with trio.fail_after(60):
        async with serving(server), trio.open_nursery() as nursery:
            stalled, _ = await subscribed(adapter.port, "stalled")
            healthy, rest = await subscribed(adapter.port, "healthy")
            async with stalled, healthy:
                nursery.start_soon(publish_all, adapter.port)
                lines = await read_events(healthy, rest, pause=0)
                # Only now does the stalled peer read: what was queued, the closing notice, EOF.
                tail = await read_events(stalled, b"", pause=0)
    assert len(lines) == EVENTS
    assert 0 < len(tail) < EVENTS
    closing = orjson.loads(tail[-1])
    assert closing["method"] == "closing"
    assert closing["params"]["code"] == ErrorCode.SLOW_CONSUMER
