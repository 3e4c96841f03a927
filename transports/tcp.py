"""TCP (and TLS over TCP): a listening ``Adapter`` and ``connect`` for clients.

Server::

    adapter = tcp.Adapter("127.0.0.1", 0)          # port 0: the OS picks one
    server = Server([adapter])
    await nursery.start(server.serve)
    print(adapter.url)                              # tcp://127.0.0.1:43121

Client::

    async with tcp.connect("127.0.0.1", 7700, client_id="s3cret") as client:
        await client.publish("greeting", "hello")

Pass an ``ssl.SSLContext`` on both sides for TLS (``ssl.create_default_context
(ssl.Purpose.CLIENT_AUTH)`` with a certificate chain loaded, on the server).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Unpack

import trio

from pubsub_rpc import ConnectionClosedError

from ._adapter import Adapter as _BaseAdapter
from ._client import DEFAULT_REQUEST_TIMEOUT, Client
from ._errors import translate_io_errors
from ._open_client import ClientOptions, open_client

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["Adapter", "connect", "open_stream"]

_log = logging.getLogger("pubsub_rpc.transports.tcp")


def format_url(scheme: str, host: str, port: int, path: str = "") -> str:
    """``scheme://host:port`` plus ``path``, with an IPv6 host in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}{path}"


class BoundAddress:
    """The address a TCP listener got, for every adapter that listens on TCP."""

    _address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; available once the server has started."""
        if self._address is None:
            raise RuntimeError("The adapter is not listening yet.")
        return self._address

    @property
    def port(self) -> int:
        """The bound port (the real one, also when 0 was asked for)."""
        return self.address[1]

    def url_with(self, scheme: str, path: str = "") -> str:
        """The bound address as a URL of that scheme."""
        host, port = self.address
        return format_url(scheme, host, port, path)


class Adapter(_BaseAdapter, BoundAddress):
    """Listen on a TCP port, optionally with TLS.

    ``host`` None listens on every interface.  With ``port`` 0 the OS picks a
    free port; read it from ``port``, ``address`` or ``url`` once the server
    has started.  If ``host`` resolves to several addresses with port 0, only
    the first is used (each would get a different port otherwise).
    """

    kind = "tcp"

    def __init__(
        self,
        host: str | None,
        port: int,
        *,
        trusted: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int | None = None,
    ) -> None:
        super().__init__(trusted=trusted)
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self.backlog = backlog

    @property
    def url(self) -> str:
        """``tcp://host:port``, or ``tls://host:port`` with TLS."""
        return self.url_with("tls" if self.ssl_context is not None else "tcp")

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled; the listeners are closed on the way out."""
        async with bound_listeners(
            self.host, self.requested_port, backlog=self.backlog, ssl_context=self.ssl_context
        ) as (self._address, listeners):
            _log.info("listening on %s", self.url)
            task_status.started()
            await trio.serve_listeners(
                partial(server.serve_stream, trusted=self.trusted, adapter=self),
                listeners,
                handler_nursery=server.handler_nursery,
            )


@asynccontextmanager
async def bound_listeners(
    host: str | None,
    port: int,
    *,
    backlog: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    https_compatible: bool = False,
) -> AsyncIterator[tuple[tuple[str, int], list[trio.abc.Listener[trio.abc.Stream]]]]:
    """Bind TCP listeners (TLS-wrapped with a context) and yield the bound address and them.

    For port 0 only the first listener is kept, so the reported port is the
    one every peer reaches.  The listeners are closed on the way out, also
    when cancelled.  Shared by every adapter that listens on TCP.
    """
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    try:
        if port == 0 and len(listeners) > 1:
            for extra in listeners[1:]:
                await extra.aclose()
            del listeners[1:]
        sockname = listeners[0].socket.getsockname()
        wrapped: list[trio.abc.Listener[trio.abc.Stream]] = (
            [trio.SSLListener(each, ssl_context, https_compatible=https_compatible) for each in listeners]
            if ssl_context is not None
            else list(listeners)
        )
        yield (sockname[0], sockname[1]), wrapped
    finally:
        # Shielded: in a cancelled scope the first await would raise and
        # leave the other listeners open.  Closing a listener is instant.
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()


async def open_stream(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> trio.abc.Stream:
    """Connect (and finish the TLS handshake) within ``timeout`` seconds.

    Raises ``ConnectionClosedError`` if the server cannot be reached or the
    TLS handshake fails (certificate problems included); the cause is chained.
    """
    where = format_url("tls" if ssl_context is not None else "tcp", host, port)
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(timeout), translate_io_errors(f"Connecting to {where}"):
            stream = await trio.open_tcp_stream(host, port)
            if ssl_context is not None:
                tls = trio.SSLStream(stream, ssl_context, server_hostname=server_hostname or host)
                stream = tls
                await tls.do_handshake()
    except trio.TooSlowError:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise ConnectionClosedError(
            f"Connecting to {where} failed: no answer within {timeout:g} seconds."
        ) from None
    except ConnectionClosedError:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    return stream


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    **options: Unpack[ClientOptions],
) -> AsyncIterator[Client]:
    """Connect to a server over TCP (TLS with ``ssl_context``) and yield a ``Client``.

    Connecting is bounded by ``request_timeout`` too.  See ``open_client``
    for the other arguments.
    """
    stream = await open_stream(
        host,
        port,
        ssl_context=ssl_context,
        server_hostname=server_hostname,
        timeout=options.get("request_timeout", DEFAULT_REQUEST_TIMEOUT),
    )
    async with open_client(
        stream,
        **options,
    ) as client:
        yield client
