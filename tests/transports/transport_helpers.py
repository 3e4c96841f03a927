"""Helpers shared by the transport tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio
import trustme

from pubsub_rpc import ClientInfo, Dialect
from transports import Adapter, Client, Server, inprocess, open_client, stdio, tcp, unix

#: Every transport a scenario runs over.  "stdio" is a pair of OS pipes per
#: client, served with the same ``StdioStream`` the stdio adapter uses (a
#: stdio server has one peer, so a shared server needs pipes it can make);
#: the real-subprocess cases are in test_transport_stdio.py.
TRANSPORTS = ["tcp", "tcp-pub_sub", "unix", "stdio", "inprocess"]

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def child_env() -> dict[str, str]:
    """Environment for a Python subprocess that must import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def python_argv(script: str, *args: str) -> list[str]:
    """argv running one of this directory's helper scripts with this interpreter."""
    return [sys.executable, str(HERE / script), *args]


class PipePairs(Adapter):
    """Test adapter: each ``connect`` makes two OS pipes and serves one end."""

    def __init__(self) -> None:
        super().__init__(trusted=True)
        self.server: Server | None = None

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.server = server
        task_status.started()

    def open_pipes(self) -> stdio.StdioStream:
        assert self.server is not None
        to_server_r, to_server_w = os.pipe()
        to_client_r, to_client_w = os.pipe()
        served = stdio.StdioStream(to_server_r, to_client_w, release=False)
        mine = stdio.StdioStream(to_client_r, to_server_w, release=False)
        for fd in (to_server_r, to_server_w, to_client_r, to_client_w):
            os.close(fd)  # the streams hold duplicates
        self.server.handler_nursery.start_soon(_serve_trusted, self.server, served)
        return mine


async def _serve_trusted(server: Server, stream: trio.abc.Stream) -> None:
    await server.serve_stream(stream, trusted=True)


class Harness:
    """A started server and a way to connect a client to it over one transport."""

    def __init__(self, kind: str, server: Server, adapter: Adapter) -> None:
        self.kind = kind
        self.server = server
        self.adapter = adapter

    def connect(self, client_id: str | None = None, **options: Any) -> AbstractAsyncContextManager[Client]:
        """An async context manager yielding a new client over this harness's transport."""
        adapter = self.adapter
        if isinstance(adapter, tcp.Adapter):
            if self.kind == "tcp-pub_sub":
                options.setdefault("dialect", Dialect.PUB_SUB)
            return tcp.connect("127.0.0.1", adapter.port, client_id=client_id, **options)
        if isinstance(adapter, unix.Adapter):
            return unix.connect(adapter.path, client_id=client_id, **options)
        if isinstance(adapter, inprocess.Adapter):
            return inprocess.connect(adapter, client_id=client_id, **options)
        assert isinstance(adapter, PipePairs)
        return open_client(adapter.open_pipes(), client_id=client_id, **options)


def make_adapter(kind: str, tmp_path: Path, *, trusted: bool = True) -> Adapter:
    """The adapter a harness of ``kind`` listens with."""
    if kind.startswith("tcp"):
        return tcp.Adapter("127.0.0.1", 0, trusted=trusted)
    if kind == "unix":
        return unix.Adapter(tmp_path / "server.sock", trusted=trusted)
    if kind == "inprocess":
        return inprocess.Adapter()
    if kind == "stdio":
        return PipePairs()
    raise ValueError(kind)


@asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    """Run ``server`` for the body, then shut it down in order."""
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            yield server
        finally:
            await server.aclose()


def register_suite(server: Server, prefix: str) -> None:
    """The original test suite's registered clients."""
    for name in ("secret", "secret2", "secret3"):
        server.register_client(ClientInfo(prefix + name))
    server.register_client(ClientInfo(prefix + "no_publish", can_publish=False))
    server.register_client(ClientInfo(prefix + "no_subscribe", can_subscribe=False))


def prefix(kind: str) -> str:
    """Client-id prefix per suite, as the original had (``isolate_test::``...)."""
    return kind.replace("-", "_") + "_test::"


async def collect(subscription: Any, count: int) -> list[Any]:
    """The next ``count`` values of a subscription."""
    values = []
    async for value in subscription:
        values.append(value)
        if len(values) == count:
            break
    return values


async def serve_child(server: Server, nursery: trio.Nursery, script: str, *args: str) -> trio.Process:
    """Spawn a helper script whose stdin/stdout the server serves (a stdio client)."""
    process: trio.Process = await nursery.start(
        partial(
            trio.run_process,
            python_argv(script, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            check=False,
        )
    )
    assert process.stdin is not None and process.stdout is not None
    stream = trio.StapledStream(process.stdin, process.stdout)
    nursery.start_soon(partial(server.serve_stream, stream))
    return process


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition another task or process brings about (the test guard bounds it)."""
    while not predicate():
        await trio.sleep(0.005)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and localhost, and a client context trusting it."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return server_context, client_context
