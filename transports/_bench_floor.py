"""The floor of ``pubsub-rpc bench``: a bare trio newline-JSON forwarder (BENCH.md).

It is what a pub/sub server in Python + trio costs with nothing on top: no
JSON-RPC, no client ids, no rights.  The bench runs every workload against it
in the same run as against our server and prints our figures as ratios of
its figures.  Wire (one JSON text per line)::

    {"op":"sub","topics":[...]}             -> {"op":"subok","n":k}
    {"op":"pub","topic":T,"data":D}         -> every subscriber of T gets {"topic":T,"data":D}
    {"op":"pub","topic":T,"data":D,"ack":true}  -> also {"op":"ack","n":receivers}
    {"op":"ping"}                           -> {"op":"pong"}

As BENCH.md defines it: one ``orjson.loads`` per published line and one
``orjson.dumps`` per delivery frame, whose bytes all subscribers share; a
queue per subscriber drained by a writer task in coalesced writes of at most
256 KiB; and a publisher that stops reading while a subscriber it just fed has
more than 256 KiB queued (publisher backpressure, no disconnects).

    python -m transports._bench_floor --tcp 127.0.0.1:0 | --unix PATH

prints ``listening on URL`` and serves until killed.
"""

from __future__ import annotations

import argparse
import os
from collections import deque
from typing import Any, Final

import orjson
import trio

#: Bytes joined into one write at most.
BATCH_CAP: Final = 256 * 1024
#: Bytes queued for one subscriber above which its publisher stops reading.
HIGH_WATER: Final = 256 * 1024
_RECEIVE_SIZE: Final = 64 * 1024

_PONG: Final = b'{"op":"pong"}\n'


class _Conn:
    __slots__ = ("closed", "drained", "queue", "queued", "stream", "wake")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.closed = False
        self.wake = trio.Event()
        self.drained = trio.Event()

    def push(self, frame: bytes) -> None:
        if not self.queue:
            self.wake.set()
        self.queue.append(frame)
        self.queued += len(frame)

    async def wait_drained(self) -> None:
        while self.queued > HIGH_WATER and not self.closed:
            await self.drained.wait()


class Floor:
    """The forwarder's state: topic -> subscribers (insertion-ordered)."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[_Conn, None]] = {}

    async def handle(self, stream: trio.abc.Stream) -> None:
        conn = _Conn(stream)
        mine: list[str] = []
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, conn)
                try:
                    await self._reader(conn, mine)
                finally:
                    nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            conn.closed = True
            conn.drained.set()
            for topic in mine:
                subscribers = self.topics.get(topic)
                if subscribers is not None:
                    subscribers.pop(conn, None)
                    if not subscribers:
                        del self.topics[topic]
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _reader(self, conn: _Conn, mine: list[str]) -> None:
        topics = self.topics
        loads = orjson.loads
        dumps = orjson.dumps
        pending: bytes | bytearray = b""
        while True:
            data = await conn.stream.receive_some(_RECEIVE_SIZE)
            if not data:
                return
            lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if not line:
                    continue
                message: dict[str, Any] = loads(line)
                op = message["op"]
                if op == "pub":
                    topic = message["topic"]
                    subscribers = topics.get(topic)
                    receivers = 0
                    full: list[_Conn] = []
                    if subscribers:
                        frame = dumps({"topic": topic, "data": message["data"]}) + b"\n"
                        for subscriber in subscribers:
                            subscriber.push(frame)
                            if subscriber.queued > HIGH_WATER:
                                full.append(subscriber)
                        receivers = len(subscribers)
                    if message.get("ack"):
                        conn.push(b'{"op":"ack","n":%d}\n' % receivers)
                    for subscriber in full:
                        await subscriber.wait_drained()
                elif op == "sub":
                    for topic in message["topics"]:
                        topics.setdefault(topic, {})[conn] = None
                        mine.append(topic)
                    conn.push(b'{"op":"subok","n":%d}\n' % len(message["topics"]))
                elif op == "ping":
                    conn.push(_PONG)

    async def _writer(self, conn: _Conn) -> None:
        queue = conn.queue
        while True:
            if not queue:
                await conn.wake.wait()
                conn.wake = trio.Event()
                continue
            batch = []
            size = 0
            while queue and size < BATCH_CAP:
                frame = queue.popleft()
                batch.append(frame)
                size += len(frame)
            await conn.stream.send_all(b"".join(batch))
            conn.queued -= size
            if conn.queued <= HIGH_WATER:
                drained, conn.drained = conn.drained, trio.Event()
                drained.set()


async def _serve(tcp: str | None, unix: str | None) -> None:
    floor = Floor()
    listeners: list[trio.SocketListener]
    if unix is not None:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(unix)
        sock.listen(1024)
        listeners = [trio.SocketListener(sock)]
        url = f"unix://{os.path.abspath(unix)}"
    else:
        assert tcp is not None
        host, _, port = tcp.rpartition(":")
        listeners = await trio.open_tcp_listeners(int(port), host=host, backlog=1024)
        name = listeners[0].socket.getsockname()
        url = f"tcp://{name[0]}:{name[1]}"
    print(f"listening on {url}", flush=True)
    await trio.serve_listeners(floor.handle, listeners)


def main() -> None:
    """Entry point: ``python -m transports._bench_floor``."""
    parser = argparse.ArgumentParser(description="The bench floor: a bare trio NDJSON forwarder.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT")
    where.add_argument("--unix", metavar="PATH")
    args = parser.parse_args()
    trio.run(_serve, args.tcp, args.unix)


if __name__ == "__main__":
    main()
