"""Helpers for the hardening tests: a witness that proves everyone else carries on, raw peers,
subprocess servers and clients.

Conventions are those of tests/transports: real sockets on 127.0.0.1 port 0, every async
test under a ``trio.fail_after`` guard (conftest.py), no assertion on how long something
took except where a bound *is* the promise (keep-alive, shutdown).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio

from pubsub_rpc import ClientInfo, FrameDecoder
from transports import Client, Server, tcp

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: The console script installed next to this interpreter.
PUBSUB_RPC = str(Path(sys.executable).with_name("pubsub-rpc"))

#: Registered on every in-process test server.
WITNESS_PUBLISHER = "witness-publisher-s3cret"
WITNESS_SUBSCRIBER = "witness-subscriber-s3cret"
HOSTILE = "hostile-s3cret"
#: A registered id long enough to make every answer that echoes it 2 KB.
LONG_ID = "long-s3cret-" + "x" * 2000
CLIENT_IDS = (WITNESS_PUBLISHER, WITNESS_SUBSCRIBER, HOSTILE, LONG_ID)


def child_env() -> dict[str, str]:
    """Environment for a Python subprocess that must import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def make_server(**limits: Any) -> tuple[Server, tcp.Adapter]:
    """A server on a free TCP port with the test clients registered."""
    adapter = tcp.Adapter("127.0.0.1", 0)
    server = Server([adapter], **limits)
    for client_id in CLIENT_IDS:
        server.register_client(ClientInfo(client_id))
    return server, adapter


@asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    """Run ``server`` for the body, then shut it down in order."""
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            # Raw peers rarely say goodbye: close what the test left open.
            while OPEN_PEERS:
                OPEN_PEERS.pop().stream.socket.close()
            await server.aclose()


async def wait_until(predicate: Callable[[], bool], interval: float = 0.005) -> None:
    """Wait for a condition another task or process brings about (the test guard bounds it)."""
    while not predicate():
        await trio.sleep(interval)


# -- the witness -----------------------------------------------------------------------


class Witness:
    """A well-behaved publisher and subscriber, publishing without pause while a test misbehaves.

    Every publish must report exactly one listener and every value must arrive, in order:
    ``verify`` proves that no event was lost, duplicated or reordered because of whatever
    else happened on the server meanwhile.
    """

    def __init__(self, publisher: Client, subscriber: Client, event_name: str) -> None:
        self.publisher = publisher
        self.subscriber = subscriber
        self.event_name = event_name
        self.published = 0
        self.received: list[int] = []
        self.listeners: list[int] = []
        self._stop = trio.Event()

    async def _publish(self) -> None:
        while not self._stop.is_set():
            self.listeners.append(await self.publisher.publish(self.event_name, self.published))
            self.published += 1
            await trio.sleep(0.001)

    async def _receive(self, subscription: Any) -> None:
        try:
            async for value in subscription:
                self.received.append(value)
                if value == -1:
                    return
        finally:
            self._receiver_done.set()

    async def run(self, nursery: trio.Nursery) -> None:
        """Subscribe, then publish and receive in the background until ``verify``."""
        subscription = await self.subscriber.subscribe(self.event_name)
        self._receiver_done = trio.Event()
        nursery.start_soon(self._receive, subscription)
        nursery.start_soon(self._publish)

    async def verify(self, at_least: int = 5) -> None:
        """Stop, then check every event was delivered exactly once, in order."""
        await wait_until(lambda: self.published >= at_least)
        self._stop.set()
        await wait_until(lambda: len(self.listeners) == self.published)
        assert await self.publisher.publish(self.event_name, -1) == 1
        await self._receiver_done.wait()
        assert self.listeners == [1] * self.published
        assert self.received == [*range(self.published), -1]


@asynccontextmanager
async def witness(adapter: tcp.Adapter, event_name: str = "witness") -> AsyncIterator[Witness]:
    """Run a ``Witness`` on the server behind ``adapter`` for the body; verify it after."""
    async with (
        tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_PUBLISHER) as publisher,
        tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER) as subscriber,
        trio.open_nursery() as nursery,
    ):
        watcher = Witness(publisher, subscriber, event_name)
        await watcher.run(nursery)
        yield watcher
        await watcher.verify()


# -- raw peers ---------------------------------------------------------------------------


#: Every raw peer a test opened; ``running`` closes what a test left open.
OPEN_PEERS: list[RawPeer] = []


class RawPeer:
    """A bare socket to the server: send any bytes, read decoded frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        OPEN_PEERS.append(self)
        self.stream = stream
        self.decoder = FrameDecoder(max_frame_size=1 << 30)
        self.frames: list[Any] = []
        self.closed = False

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_json(self, message: Any) -> None:
        await self.send(orjson.dumps(message) + b"\n")

    async def _read_more(self) -> None:
        data = await self.stream.receive_some(1 << 16)
        if not data:
            self.closed = True
            self.frames.extend(self.decoder.feed_eof())
            return
        self.frames.extend(self.decoder.feed(data))

    async def read(self, count: int) -> list[Any]:
        """The next ``count`` frames."""
        while len(self.frames) < count and not self.closed:
            await self._read_more()
        assert len(self.frames) >= count, f"closed after {self.frames}"
        taken, self.frames = self.frames[:count], self.frames[count:]
        return taken

    async def read_one(self) -> Any:
        return (await self.read(1))[0]

    async def read_until_closed(self) -> list[Any]:
        """Every frame up to end of stream (a reset counts as the end)."""
        try:
            while not self.closed:
                await self._read_more()
        except (trio.BrokenResourceError, OSError):
            self.closed = True
        taken, self.frames = self.frames, []
        return taken

    async def expect_nothing(self, quiet: float = 0.1) -> None:
        with trio.move_on_after(quiet):
            await self._read_more()
        assert not self.frames and not self.closed, self.frames

    async def ping(self, request_id: int = 999) -> None:
        """Prove the connection still works: a ping is answered."""
        await self.send_json({"jsonrpc": "2.0", "method": "ping", "id": request_id})
        assert await self.read_one() == {"jsonrpc": "2.0", "result": {}, "id": request_id}

    async def aclose(self) -> None:
        await self.stream.aclose()

    def reset(self) -> None:
        """Close abruptly: the peer sees a TCP reset, not an orderly end."""
        sock = self.stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def error(code: int, message: str, request_id: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response as the server writes it."""
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": request_id}


def closing(code: int, message: str) -> dict[str, Any]:
    """The closing notification."""
    return {"jsonrpc": "2.0", "method": "closing", "params": {"code": code, "message": message}}


def request(method: str, params: Any = None, request_id: Any = 1) -> bytes:
    """A framed JSON-RPC request (params omitted when None)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    message["id"] = request_id
    return orjson.dumps(message) + b"\n"


# -- processes ---------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def python_child(script: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """Start one of this directory's helper scripts with this interpreter."""
    return subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        **popen,
    )


async def read_line(process: subprocess.Popen[str]) -> str:
    """The child's next stdout line, without blocking the event loop."""
    assert process.stdout is not None
    stdout = process.stdout
    line: str = await trio.to_thread.run_sync(stdout.readline)
    return line


def clients_toml(path: Path, *ids: str) -> Path:
    """Write a clients file registering ``ids`` with full rights."""
    path.write_text("".join(f'[[client]]\nid = "{client_id}"\n' for client_id in ids), encoding="utf-8")
    return path
