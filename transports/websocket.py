"""WebSocket (ws:// and wss://): browsers and any WebSocket client as first-class peers.

Server::

    adapter = websocket.Adapter("127.0.0.1", 7701, allowed_origins=["https://app.example"])
    server = Server([tcp.Adapter("127.0.0.1", 7700), adapter])
    await nursery.start(server.serve)
    print(adapter.url)                              # ws://127.0.0.1:7701/

Client::

    async with websocket.connect("ws://127.0.0.1:7701/", client_id="s3cret") as client:
        await client.publish("greeting", "hello")

Each text message carries one JSON-RPC message or batch, in either dialect;
answers and events come back one per text message.  Binary messages are
refused (close code 1003).  The server's ``max_frame_size`` bounds a message:
one of more characters than that closes the connection with 1009 (Message Too
Big: a WebSocket message is buffered whole before anyone sees it, so it is
refused while it arrives); one within that many characters but more bytes gets
the ``FRAME_TOO_LARGE`` error answer, as on every transport.  ``max_outbound``,
``max_batch`` and the other limits apply unchanged.  With ``allowed_origins``
a handshake from any other browser origin gets HTTP 403.

The same port answers ``GET /client.js`` with the dependency-free JavaScript
client shipped in this package (``transports/static/client.js``), so a page
needs nothing else::

    import { connect } from "http://127.0.0.1:7701/client.js";
    const client = await connect("ws://127.0.0.1:7701/", { clientId: "s3cret" });

Pass an ``ssl.SSLContext`` for wss:// (on the server, one with a certificate
chain loaded; on the client, one that trusts it, the default for ``wss://``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from pubsub_rpc import Broker, ErrorCode

from ._adapter import Adapter as _BaseAdapter
from ._pump import Pump, PumpedConnection
from ._server import _BACKLOG_LIMIT, _StreamConnection
from ._websocket_client import connect, split_url
from ._websocket_http import (
    BadRequest,
    ReplayStream,
    RequestHead,
    client_js,
    file_response,
    handshake_problem,
    normalise_origin,
    origin_allowed,
    parse_head,
    read_head,
    response,
)
from ._websocket_link import GOING_AWAY, POLICY_VIOLATION, WebSocketLink
from .tcp import BoundAddress, bound_listeners

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["CLIENT_JS_PATH", "Adapter", "connect", "split_url"]

_log = logging.getLogger("pubsub_rpc.transports.websocket")

#: Where the adapter serves the JavaScript client.
CLIENT_JS_PATH: Final = "/client.js"
#: Seconds a new connection gets to complete its HTTP request or WebSocket handshake.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0


class _WebSocketConnection(_StreamConnection):
    """A server connection that also picks the close frame its link will send."""

    def __init__(
        self,
        broker: Broker,
        *,
        trusted: bool,
        pump: Pump[bytes, bytes],
        link: WebSocketLink,
        max_frame_size: int,
        max_outbound: int,
        max_batch: int,
    ) -> None:
        super().__init__(
            broker,
            trusted=trusted,
            pump=pump,
            max_frame_size=max_frame_size,
            max_outbound=max_outbound,
            max_batch=max_batch,
        )
        self._link = link

    def start_closing(self, code: ErrorCode | int, message: str) -> None:
        if not self.closing:
            close_code = GOING_AWAY if code == ErrorCode.SERVER_CLOSING else POLICY_VIOLATION
            self._link.set_close(close_code, message)
        super().start_closing(code, message)


class _WebSocketPump(Pump[bytes, bytes]):
    """A pump that closes its WebSocket as soon as the connection is done.

    ``Server`` stops tracking a connection when its pump returns and closes
    the link after that, by when a shutdown may already be cancelling the
    connection's task; the close frame (1001 and the reason) would then be
    cut off.  Closing here, still tracked, lets the close handshake finish.
    """

    async def run(self, connection: PumpedConnection[bytes, bytes], backlog: Callable[[], int]) -> None:
        await super().run(connection, backlog)
        await self.link.aclose()  # the server's later aclose finds it closed


class Adapter(_BaseAdapter, BoundAddress):
    """Listen for WebSocket connections (ws://, or wss:// with ``ssl_context``) on a TCP port.

    ``host`` None listens on every interface; with ``port`` 0 the OS picks a
    free one (read ``port`` or ``url`` once the server has started; with
    several addresses for ``host`` only the first is used then).

    ``allowed_origins``: the browser origins (``"https://app.example"``,
    scheme, host and port) whose pages may connect; a handshake with any other
    ``Origin`` is refused with HTTP 403.  None (the default) allows all.  A
    handshake without ``Origin`` is not from a browser page and passes.

    ``files`` maps more paths to contents served by plain HTTP GET on the same
    port, beside ``/client.js`` (a page that uses the client, say).
    """

    kind = "websocket"

    def __init__(
        self,
        host: str | None,
        port: int,
        *,
        trusted: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        allowed_origins: Iterable[str] | None = None,
        files: Mapping[str, bytes] | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        backlog: int | None = None,
    ) -> None:
        super().__init__(trusted=trusted)
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self.allowed_origins = allowed_origins  # the setter normalises
        self.files: dict[str, bytes] = {CLIENT_JS_PATH: client_js(), **(files or {})}
        self.handshake_timeout = handshake_timeout
        self.backlog = backlog

    @property
    def allowed_origins(self) -> frozenset[str] | None:
        """The origins whose pages may connect, normalised (None: all); may change at any time."""
        return self._allowed_origins

    @allowed_origins.setter
    def allowed_origins(self, origins: Iterable[str] | None) -> None:
        self._allowed_origins = None if origins is None else frozenset(map(normalise_origin, origins))

    @property
    def url(self) -> str:
        """``ws://host:port/``, or ``wss://host:port/`` with TLS."""
        return self.url_with("wss" if self.ssl_context is not None else "ws", "/")

    @property
    def http_url(self) -> str:
        """The same address as ``http://`` (or ``https://``): where ``/client.js`` is served."""
        return self.url_with("https" if self.ssl_context is not None else "http", "/")

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled; the listeners are closed on the way out."""
        async with bound_listeners(
            self.host,
            self.requested_port,
            backlog=self.backlog,
            ssl_context=self.ssl_context,
            https_compatible=True,
        ) as (self._address, listeners):
            _log.info("listening on %s", self.url)
            task_status.started()

            async def handle(stream: trio.abc.Stream) -> None:
                await self._serve_one(server, stream)

            await trio.serve_listeners(handle, listeners, handler_nursery=server.handler_nursery)

    async def _serve_one(self, server: Server, stream: trio.abc.Stream) -> None:
        """Serve one TCP connection: one HTTP answer, or a WebSocket until it ends."""
        try:
            replay = await self._read_request(stream)
            if replay is not None:
                await self._serve_websocket(server, ReplayStream(stream, replay))
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ConnectionClosed) as group:
            _log.debug("a WebSocket connection failed: %r", group.exceptions[0])
        finally:
            with (
                trio.move_on_after(1.0),
                suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
            ):
                await stream.aclose()

    async def _read_request(self, stream: trio.abc.Stream) -> bytes | None:
        """Read the request head and answer it; or return the bytes read, to go on as a WebSocket."""
        with trio.move_on_after(self.handshake_timeout):
            read = await read_head(stream)
            if read is None:
                return None  # closed, too long: nothing worth answering
            head_bytes, everything = read
            try:
                head = parse_head(head_bytes)
            except BadRequest as exc:
                answer = response(400, f"Bad request: {exc}.\n".encode())
            else:
                if not head.wants_websocket:
                    answer = file_response(head, self.files, self.allowed_origins)
                else:
                    refusal = self._refusal(head)
                    if refusal is None:
                        return everything
                    answer = refusal
            await stream.send_all(answer)
        return None

    def _refusal(self, head: RequestHead) -> bytes | None:
        """The HTTP answer refusing an upgrade request, or None to go ahead."""
        problem = handshake_problem(head)
        if problem is not None:
            status, text = problem
            extra = [("Sec-WebSocket-Version", "13")] if status == 426 else []
            return response(status, text.encode(), extra=extra)
        if not origin_allowed(head, self.allowed_origins):
            _log.info("refused a WebSocket handshake from origin %r", head.headers.get("origin"))
            return response(403, b"This origin may not connect.\n")
        return None

    async def _serve_websocket(self, server: Server, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:  # for trio-websocket's reader task
            ws: WebSocketConnection | None = None
            with trio.move_on_after(self.handshake_timeout):
                request = await wrap_server_stream(nursery, stream, max_message_size=server.max_frame_size)
                ws = await request.accept()
            if ws is None:
                nursery.cancel_scope.cancel()
                return
            link = WebSocketLink(ws, max_frame_size=server.max_frame_size)
            pump = _WebSocketPump(link, close_timeout=server.close_timeout, backlog_limit=_BACKLOG_LIMIT)
            connection = _WebSocketConnection(
                server.broker,
                trusted=self.trusted,
                pump=pump,
                link=link,
                max_frame_size=server.max_frame_size,
                max_outbound=server.max_outbound,
                max_batch=server.max_batch,
            )
            await server._run_connection(pump, connection, lambda: connection.outbound_bytes, adapter=self)
            nursery.cancel_scope.cancel()
