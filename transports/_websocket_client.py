"""``connect``: a ``Client`` over a WebSocket (ws:// or wss://), on trio-websocket.

The client is the same ``Client`` every byte-stream transport uses, over a
``WebSocketLink`` instead of a ``StreamLink``: the sans-IO ``ClientConnection``
writes newline-terminated frames, each goes out as one text message, and each
message received comes back as one frame (see ``_websocket_link``).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, wrap_client_stream

from pubsub_rpc import DEFAULT_MAX_FRAME_SIZE, ConnectionClosedError, Dialect, Framing

from ._client import DEFAULT_REQUEST_TIMEOUT, Client
from ._errors import unwrap_single_exception
from ._open_client import open_link_client
from ._subscription import DEFAULT_SUBSCRIPTION_BUFFER
from ._websocket_link import WebSocketLink
from .tcp import open_stream


def split_url(url: str) -> tuple[str, int, str, bool]:
    """``ws://HOST[:PORT][/PATH]`` or ``wss://...`` as ``(host, port, resource, secure)``.

    The port defaults to 80 (ws) or 443 (wss), the resource to ``/``.
    Raises ``ValueError`` with a message a person can act on.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r}: a WebSocket URL starts with ws:// or wss://")
    secure = parts.scheme == "wss"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r}: expected {parts.scheme}://HOST[:PORT][/PATH]")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port if port is not None else (443 if secure else 80), resource, secure


async def _handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    url: str,
    *,
    origin: str | None,
    max_message_size: int,
    timeout: float,
) -> WebSocketConnection:
    host, port, resource, secure = split_url(url)
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if port == (443 if secure else 80) else f"{bracketed}:{port}"
    headers = [] if origin is None else [(b"Origin", origin.encode())]
    try:
        with trio.fail_after(timeout):
            return await wrap_client_stream(
                nursery,
                stream,  # type: ignore[arg-type]  # typed for socket streams; any trio stream works
                host_header,
                resource,
                extra_headers=headers,
                max_message_size=max_message_size,
            )
    except trio.TooSlowError:
        raise ConnectionClosedError(
            f"Connecting to {url} failed: no WebSocket handshake within {timeout:g} seconds."
        ) from None


@asynccontextmanager
async def connect(
    url: str,
    *,
    client_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    dialect: Dialect = Dialect.JSONRPC,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    subscription_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    keepalive: float | None = None,
) -> AsyncIterator[Client]:
    """Connect to a WebSocket server (``ws://HOST:PORT/`` or ``wss://...``) and yield a ``Client``.

    ``wss://`` verifies the server against the system's CAs unless you pass
    ``ssl_context`` (which ``ws://`` does not take: ``ValueError``).
    ``origin`` sends an ``Origin`` header, as a browser page would.
    Connecting and the handshake are each bounded by ``request_timeout``; a
    refusal (HTTP 403 for an origin that is not allowed, ...) raises
    ``ConnectionClosedError`` with the status and the server's text.
    ``max_frame_size`` bounds the messages accepted from the server (a longer
    one closes the connection).  See ``open_client`` for the other arguments
    (``keepalive`` too).
    """
    host, port, _, secure = split_url(url)
    if not secure and ssl_context is not None:
        raise ValueError(f"{url!r} is plaintext: use a wss:// URL with an ssl_context")
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    stream = await open_stream(
        host, port, ssl_context=ssl_context, server_hostname=server_hostname, timeout=request_timeout
    )
    try:
        with unwrap_single_exception():
            try:
                async with trio.open_nursery() as nursery:  # for trio-websocket's reader task
                    ws = await _handshake(
                        nursery,
                        stream,
                        url,
                        origin=origin,
                        max_message_size=max_frame_size,
                        timeout=request_timeout,
                    )
                    async with open_link_client(
                        WebSocketLink(ws, max_frame_size=max_frame_size),
                        client_id=client_id,
                        dialect=dialect,
                        framing=Framing.NEWLINE,
                        request_timeout=request_timeout,
                        subscription_buffer=subscription_buffer,
                        max_frame_size=max_frame_size,
                        keepalive=keepalive,
                    ) as client:
                        yield client
                    nursery.cancel_scope.cancel()
            except* ConnectionRejected as group:
                rejected = group.exceptions[0]
                assert isinstance(rejected, ConnectionRejected)
                text = (rejected.body or b"").decode(errors="replace").strip()
                raise ConnectionClosedError(
                    f"The server refused the WebSocket connection to {url}: HTTP {rejected.status_code}"
                    + (f", {text}" if text else "")
                ) from rejected
    finally:
        # trio-websocket leaves the socket open when the server closed first.
        with trio.move_on_after(1.0), suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.aclose()
