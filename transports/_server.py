"""``Server``: one broker, many adapters, every connection pumped the same way.

Lifecycle, as in the original: adapters and clients are added before the
server starts; it starts once; starting without an adapter is an error.  The
exact texts are the original's (it called the server ``SyncServer``).

Shutdown (``aclose``): stop accepting (cancel every adapter, which also
removes Unix socket files), send every connected peer the ``closing``
notification, give the writers ``close_timeout`` seconds to flush, then close
what is left.  Cancelling ``serve`` instead skips the goodbye but still
releases everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final, Protocol, TypeVar

import trio

from pubsub_rpc import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_OUTBOUND,
    Broker,
    ClientInfo,
    ConnectionClosedError,
    ErrorCode,
    LocalProtocolError,
    ServerConnection,
)

from ._adapter import Adapter
from ._errors import unwrap_single_exception
from ._pump import Pump, PumpedConnection, StreamLink

_log = logging.getLogger("pubsub_rpc.transports.server")

#: Seconds a closing connection gets to write its last bytes (and the peer to read them).
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
#: Unsent answer bytes above which a connection's requests are no longer read.
_BACKLOG_LIMIT: Final = 1024 * 1024
#: The notification text every peer gets at an orderly shutdown.
SHUTDOWN_MESSAGE: Final = "The server is shutting down."


_In = TypeVar("_In")
_Out = TypeVar("_Out")
_In_contra = TypeVar("_In_contra", contravariant=True)
_Out_co = TypeVar("_Out_co", covariant=True)


class _Closable(Protocol):
    def start_closing(self, code: ErrorCode | int, message: str) -> None: ...


class _Served(PumpedConnection[_In_contra, _Out_co], _Closable, Protocol):
    def close(self) -> None: ...


class _StreamConnection(ServerConnection):
    """A ``ServerConnection`` that also tells its pump when it starts closing.

    The core sets ``closing`` from inside fan-out (a slow consumer) without
    producing output when the queue is already full, so ``on_output`` alone
    would not wake anybody; the flush deadline must start then.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        trusted: bool,
        pump: Pump[bytes, bytes],
        max_frame_size: int,
        max_outbound: int,
    ) -> None:
        super().__init__(
            broker,
            trusted=trusted,
            on_output=pump.wake,
            max_frame_size=max_frame_size,
            max_outbound=max_outbound,
        )
        self._on_closing: Callable[[], None] = pump.closing_started

    def start_closing(self, code: ErrorCode | int, message: str) -> None:
        was_closing = self.closing
        super().start_closing(code, message)
        if not was_closing:
            self._on_closing()


class Server:
    """A pub/sub server: a ``Broker`` plus the adapters that bring it connections.

    ``serve`` runs it (use ``nursery.start(server.serve)``, which returns once
    every adapter listens); ``aclose`` shuts it down in order.  Connections
    from all adapters share one broker, so events cross transports.
    """

    def __init__(
        self,
        adapters: Iterable[Adapter] = (),
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_outbound: int = DEFAULT_MAX_OUTBOUND,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        #: The protocol state shared by every connection.
        self.broker = Broker()
        self.max_frame_size = max_frame_size
        self.max_outbound = max_outbound
        self.close_timeout = close_timeout
        self._adapters: list[Adapter] = list(adapters)
        self._started = False
        self._handler_nursery: trio.Nursery | None = None
        self._connections: set[_Closable] = set()
        self._connection_gone = trio.Event()
        self._shutdown = trio.Event()
        self._stopped = trio.Event()

    # -- configuration (before start) ---------------------------------------

    @property
    def adapters(self) -> tuple[Adapter, ...]:
        """The adapters, in the order they were added."""
        return tuple(self._adapters)

    @property
    def started(self) -> bool:
        """Whether ``serve`` was called; no adapters or clients can be added after."""
        return self._started

    def add_adapter(self, adapter: Adapter) -> None:
        """Attach another listener; only before the server starts."""
        if self._started:
            raise LocalProtocolError("You cannot add new adapters after the server has started listening.")
        self._adapters.append(adapter)

    def register_client(self, info: ClientInfo) -> None:
        """Allow a client id (with its rights) to connect; only before the server starts."""
        if self._started:
            raise LocalProtocolError(
                "You cannot register new clients after the server has started listening."
            )
        self.broker.register_client(info)

    # -- running -------------------------------------------------------------

    @property
    def handler_nursery(self) -> trio.Nursery:
        """Where adapters start their connection tasks; exists while ``serve`` runs."""
        if self._handler_nursery is None:
            raise LocalProtocolError("The server is not serving.")
        return self._handler_nursery

    @property
    def connection_count(self) -> int:
        """Number of connections currently open, all adapters together."""
        return len(self._connections)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every adapter and serve until ``aclose`` (or cancellation).

        With ``await nursery.start(server.serve)`` the call returns once every
        adapter is listening, so a port-0 adapter's address is known then.
        Raises ``LocalProtocolError`` if there is no adapter or the server was
        started before, and whatever an adapter raised if it could not listen
        (``OSError`` for a port in use), unwrapped from the nurseries.
        """
        if not self._adapters:
            raise LocalProtocolError("Cannot start a SyncServer that has no adapters attached.")
        if self._started:
            raise LocalProtocolError("A SyncServer may only be started once.")
        self._started = True
        self.broker.start()
        try:
            with unwrap_single_exception():
                await self._run(task_status)
        finally:
            self._handler_nursery = None
            self._stopped.set()
            _log.info("stopped")

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as handlers:
            self._handler_nursery = handlers
            async with trio.open_nursery() as listeners:
                for adapter in self._adapters:
                    await listeners.start(adapter.serve, self)
                _log.info("serving with %d adapter(s)", len(self._adapters))
                task_status.started()
                await self._shutdown.wait()
                listeners.cancel_scope.cancel()
            await self._say_goodbye()
            handlers.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Shut down in order and wait until everything is released.

        Stops accepting, sends each peer the ``closing`` notification
        (``ErrorCode.SERVER_CLOSING``, "The server is shutting down."), waits
        up to ``close_timeout`` for the writers to flush, closes every
        connection and removes Unix socket files.  Safe to call more than
        once, and before ``serve`` (the server then can never start).
        """
        self._shutdown.set()
        if not self._started:
            self._started = True
            return
        await self._stopped.wait()

    async def _say_goodbye(self) -> None:
        for connection in list(self._connections):
            connection.start_closing(ErrorCode.SERVER_CLOSING, SHUTDOWN_MESSAGE)
        # Each connection bounds its own flush by close_timeout; the margin
        # covers closing the links.  This is a backstop, not the mechanism.
        with trio.move_on_after(self.close_timeout + 1.0):
            while self._connections:
                await self._connection_gone.wait()
                self._connection_gone = trio.Event()

    @contextmanager
    def _tracking(self, connection: _Closable) -> Iterator[None]:
        """Register a live connection, so shutdown can reach it (used by adapters)."""
        if self._shutdown.is_set():
            # Accepted in the instant before the listeners stopped: say goodbye at once.
            connection.start_closing(ErrorCode.SERVER_CLOSING, SHUTDOWN_MESSAGE)
        self._connections.add(connection)
        try:
            yield
        finally:
            self._connections.discard(connection)
            self._connection_gone.set()

    async def serve_stream(self, stream: trio.abc.Stream, *, trusted: bool = False) -> None:
        """Serve one peer over any ``trio.abc.Stream`` until it disconnects or the server stops.

        This is how every byte-stream adapter serves its connections, and how
        you serve a stream of your own making (a socketpair, a pipe pair, a
        WebSocket wrapped as a stream).  The server must be serving.  The
        stream is closed on return; a peer that breaks the connection is
        logged, not raised.
        """
        if self._handler_nursery is None:
            raise LocalProtocolError("The server is not serving: start Server.serve first.")
        pump: Pump[bytes, bytes] = Pump(
            StreamLink(stream), close_timeout=self.close_timeout, backlog_limit=_BACKLOG_LIMIT
        )
        connection = _StreamConnection(
            self.broker,
            trusted=trusted,
            pump=pump,
            max_frame_size=self.max_frame_size,
            max_outbound=self.max_outbound,
        )
        await self._run_connection(pump, connection, lambda: connection.outbound_bytes)

    async def _run_connection(
        self, pump: Pump[_In, _Out], connection: _Served[_In, _Out], backlog: Callable[[], int]
    ) -> None:
        """Pump one connection to its end, tracked for shutdown (shared by every adapter)."""
        try:
            with self._tracking(connection):
                _log.debug("connection opened (%d open)", len(self._connections))
                await pump.run(connection, backlog)
        except* ConnectionClosedError as group:
            _log.debug("connection lost: %s", group.exceptions[0])
        finally:
            # Subscriptions and the ad-hoc identity go first, so no publish
            # counts a peer that is gone.
            connection.close()
            await pump.link.aclose()
            if pump.scope.cancelled_caught:
                _log.info("a closing connection did not flush within %.1f s", self.close_timeout)
            _log.debug("connection closed (%d open)", len(self._connections))
