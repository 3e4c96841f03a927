"""Helpers for the cluster tests: private Redis servers, in-process clusters, a raw client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import coredis
import orjson
import pytest
import trio

from pubsub_rpc import ClientInfo
from transports import Server, tcp
from transports._redis_bridge import RedisBridge

ALICE, BOB, CAROL = "alice-s3cret", "bob-s3cret", "carol-s3cret"
#: The ids every test server registers (alice, bob and carol may do anything).
CLIENT_IDS = (ALICE, BOB, CAROL)
#: Also registered everywhere: a client that may not receive ``orders.secret``.
DAVE = ClientInfo("dave-s3cret", subscribe_deny=("orders.secret",))


def redis_server_binary() -> str:
    """The ``redis-server`` to run; fails under CI and skips elsewhere when it is missing."""
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary
    message = "redis-server is not installed (Debian: apt-get install redis-server)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; .ci/run installs it, so this must not happen in CI")
    pytest.skip(message)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """A private ``redis-server`` on a loopback port: no persistence, stopped by the test."""

    def __init__(self, binary: str, *extra: str) -> None:
        self.binary = binary
        self.extra = extra
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    async def start(self) -> None:
        """Start it (again, on the same port) and wait until it accepts connections."""
        self._spawn()
        with trio.fail_after(10):
            while not self._listening():
                await trio.sleep(0.02)

    def start_blocking(self) -> None:
        """``start`` for synchronous fixtures."""
        self._spawn()
        deadline = time.monotonic() + 10
        while not self._listening():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    stop = kill


async def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (the bridge converges within round trips)."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


@dataclass
class Node:
    """One in-process server of a test cluster."""

    server: Server
    bridge: RedisBridge
    port: int

    def connect(self, client_id: str) -> Any:
        """A ``tcp.connect`` context for one of ``CLIENT_IDS``."""
        return tcp.connect("127.0.0.1", self.port, client_id=client_id)


@asynccontextmanager
async def cluster(url: str, prefix: str, size: int = 3, **bridge_options: Any) -> AsyncIterator[list[Node]]:
    """``size`` servers sharing ``url`` under ``prefix``, each knowing all the others."""
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for _ in range(size):
            adapter = tcp.Adapter("127.0.0.1", 0)
            server = Server([adapter], idle_timeout=None)
            for client_id in CLIENT_IDS:
                server.register_client(ClientInfo(client_id))
            server.register_client(DAVE)
            bridge = RedisBridge(server.broker, url, prefix=prefix, **bridge_options)
            await nursery.start(bridge.run)
            await nursery.start(server.serve)
            nodes.append(Node(server, bridge, adapter.port))
        await wait_until(lambda: all(node.bridge.stats()["backplane_nodes"] == size - 1 for node in nodes))
        yield nodes
        for node in nodes:
            await node.server.aclose()
            await node.bridge.aclose()
        nursery.cancel_scope.cancel()


class RawClient:
    """Newline-delimited JSON-RPC by hand, to see whole answers (``forwarded`` included)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = b""
        self._next_id = 0
        #: Events received, as (event name, value), in order.
        self.events: list[tuple[str, Any]] = []

    @classmethod
    @asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[RawClient]:
        """Connect to a server on loopback."""
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            yield cls(stream)

    async def _message(self) -> Any:
        while b"\n" not in self._buffer:
            data = await self.stream.receive_some()
            assert data, "the server closed the connection"
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return orjson.loads(line)

    async def call(self, method: str, **params: Any) -> Any:
        """Send one request and return its ``result`` (events meanwhile go to ``events``)."""
        self._next_id += 1
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": self._next_id}
        await self.stream.send_all(orjson.dumps(request) + b"\n")
        with trio.fail_after(10):
            while True:
                message = await self._message()
                if message.get("id") == self._next_id:
                    assert "result" in message, message
                    return message["result"]
                self.events.append((message["params"]["event_name"], message["params"]["value"]))

    async def next_event(self) -> tuple[str, Any]:
        """The next event (already received, or the next to arrive)."""
        if self.events:
            return self.events.pop(0)
        with trio.fail_after(10):
            message = await self._message()
        return message["params"]["event_name"], message["params"]["value"]


async def redis_channels(url: str, prefix: str) -> set[str]:
    """The channels under ``prefix`` with a subscriber right now (``PUBSUB CHANNELS``)."""
    client = coredis.Redis.from_url(url)
    async with client:
        channels = await client.pubsub_channels(prefix.encode() + b"*")
    return {channel.decode() for channel in channels}
