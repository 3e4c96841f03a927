"""Helpers for the reconnecting-client tests: a server that stops and starts again at one address."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import orjson
import trio

from pubsub_rpc import ClientInfo
from transports import Client, Gap, Server, inprocess, tcp, unix

SUBSCRIBER = "reconnect-subscriber-s3cret"
PUBLISHER = "reconnect-publisher-s3cret"

#: Transports the reconnect scenarios run over.
KINDS = ["tcp", "unix", "inprocess"]

#: Backoff small enough for tests (seconds).
FAST = {"initial_delay": 0.01, "max_delay": 0.05}


class Restartable:
    """A server that can be stopped (in order, with ``closing``) and started again at the same address.

    ``connect`` looks the address up when called, so a reconnecting client's
    connect function reaches whichever server is running then.
    """

    def __init__(self, kind: str, tmp_path: Path, nursery: trio.Nursery) -> None:
        self.kind = kind
        self.nursery = nursery
        self.path = tmp_path / "server.sock"
        self.port = 0
        self.server: Server | None = None
        self.adapter: tcp.Adapter | unix.Adapter | inprocess.Adapter | None = None
        self.starts = 0

    async def start(
        self, client_ids: tuple[str, ...] = (SUBSCRIBER, PUBLISHER), *, infos: tuple[ClientInfo, ...] = ()
    ) -> Server:
        """Start a new server (a server starts only once) at the same address.

        ``client_ids`` are registered with every right but ``can_inspect``;
        ``infos`` are registered as they are (rules, ``can_inspect``).
        """
        adapter: tcp.Adapter | unix.Adapter | inprocess.Adapter
        if self.kind == "tcp":
            adapter = tcp.Adapter("127.0.0.1", self.port)
        elif self.kind == "unix":
            adapter = unix.Adapter(self.path)
        else:
            adapter = inprocess.Adapter()
        server = Server([adapter])
        for client_id in client_ids:
            server.register_client(ClientInfo(client_id))
        for info in infos:
            server.register_client(info)
        await self.nursery.start(server.serve)
        if isinstance(adapter, tcp.Adapter):
            self.port = adapter.port
        self.server, self.adapter = server, adapter
        self.starts += 1
        return server

    async def stop(self) -> None:
        """Shut the running server down in order (every peer gets ``closing``)."""
        assert self.server is not None
        await self.server.aclose()

    def connect(self, client_id: str, **options: Any) -> AbstractAsyncContextManager[Client]:
        """A plain connection to whichever server runs now."""
        adapter = self.adapter
        if isinstance(adapter, tcp.Adapter):
            return tcp.connect("127.0.0.1", self.port, client_id=client_id, **options)
        if isinstance(adapter, unix.Adapter):
            return unix.connect(self.path, client_id=client_id, **options)
        assert isinstance(adapter, inprocess.Adapter)
        return inprocess.connect(adapter, client_id=client_id, **options)

    def connector(self, client_id: str, **options: Any) -> Any:
        """The connect function a reconnecting client is given."""
        return lambda: self.connect(client_id, **options)

    async def publish(self, event_name: str, value: object) -> int:
        """Publish once from a plain client of the running server."""
        async with self.connect(PUBLISHER) as publisher:
            return await publisher.publish(event_name, value)


class Gaps:
    """An ``on_gap`` callback that records each gap and lets a test wait for the next."""

    def __init__(self) -> None:
        self.seen: list[Gap] = []
        self._changed = trio.Event()

    def __call__(self, gap: Gap) -> None:
        self.seen.append(gap)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.seen) < count:
            await self._changed.wait()


def answer(request: Any, result: Any) -> bytes:
    """A fake server's JSON-RPC answer to ``request``, one frame."""
    return orjson.dumps({"jsonrpc": "2.0", "result": result, "id": request["id"]}) + b"\n"


def event(subscription_id: str, event_name: str, value: Any) -> bytes:
    """A fake server's event frame for one subscription."""
    params = {"event_name": event_name, "value": value, "subscription_id": subscription_id}
    return orjson.dumps({"jsonrpc": "2.0", "method": "event", "params": params}) + b"\n"
