"""Helpers for the WebSocket tests (fixtures are in conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
import trio
from transport_helpers import Harness
from trio_websocket import wrap_client_stream

from pubsub_rpc import Dialect
from transports import Client, websocket


class WebSocketHarness(Harness):
    """The transport scenarios' harness, connecting with ``websocket.connect``."""

    def connect(self, client_id: str | None = None, **options: Any) -> AbstractAsyncContextManager[Client]:
        adapter = self.adapter
        assert isinstance(adapter, websocket.Adapter)
        if self.kind == "websocket-pub_sub":
            options.setdefault("dialect", Dialect.PUB_SUB)
        return websocket.connect(adapter.url, client_id=client_id, **options)


def request(method: str, request_id: int, **params: Any) -> str:
    """One JSON-RPC request as the text of a WebSocket message."""
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}).decode()


async def http_get(port: int, raw_request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP request to 127.0.0.1:``port``; the status, headers and body of the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw_request)
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


@asynccontextmanager
async def raw_websocket(url: str, *, headers: list[tuple[bytes, bytes]] | None = None) -> AsyncIterator[Any]:
    """A bare trio-websocket client connection to ``url`` (ws:// only), for wire-level tests.

    Its socket is closed on exit even when the server closed first (which
    trio-websocket's own client leaves to the garbage collector).
    """
    host, port, resource, _ = websocket.split_url(url)
    stream = await trio.open_tcp_stream(host, port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(nursery, stream, f"{host}:{port}", resource, extra_headers=headers)
            try:
                yield ws
            finally:
                with trio.move_on_after(2):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


async def next_message(ws: Any) -> Any:
    """The next message of a raw connection, parsed as JSON."""
    return orjson.loads(await ws.get_message())
