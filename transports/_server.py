"""``Server``: one broker, many adapters, every connection pumped the same way.

Lifecycle, as in the original: adapters and clients are added before the
server starts; it starts once; starting without an adapter is an error.  The
exact texts are the original's (it called the server ``SyncServer``).

Shutdown (``aclose``): stop accepting (cancel every adapter, which also
removes Unix socket files), send every connected peer the ``closing``
notification, give the writers ``close_timeout`` seconds to flush, then close
what is left.  Cancelling ``serve`` instead skips the goodbye but still
releases everything.

Limits (spec/README.md, "Limits"), each a keyword of ``Server``:

* ``max_frame_size`` (1 MiB): larger frames are skipped unparsed;
* ``max_batch`` (100): larger batches are refused;
* ``max_subscriptions`` (1,000 per connection): the excess subscribe is refused;
* ``max_connections`` (10,000 per adapter): an excess connection gets the
  ``closing`` notification (``LIMIT_EXCEEDED``) and is closed at once;
* ``max_outbound`` (8 MiB per connection): a peer with more events waiting is
  a slow consumer: it gets ``closing`` (``SLOW_CONSUMER``) and is closed;
* ``idle_timeout`` (30 s): a connection from a listening adapter that has
  sent no valid request by then gets ``closing`` (``IDLE_TIMEOUT``) and is
  closed (stdio's single peer is exempt: it cannot be half-open).

``stats`` counts the connections each policy closed, per adapter too
(``_server_stats``); the broker's ``stats()`` (the ``stats`` request) includes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final, Protocol, TypeVar

import trio

from pubsub_rpc import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_OUTBOUND,
    DEFAULT_MAX_SUBSCRIPTIONS,
    Broker,
    ClientInfo,
    ConnectionClosedError,
    ErrorCode,
    LocalProtocolError,
    ServerConnection,
)

from ._adapter import Adapter
from ._errors import unwrap_single_exception
from ._idle import IdleWatch
from ._pump import Pump, PumpedConnection, StreamLink
from ._server_stats import ServerStats

_log = logging.getLogger("pubsub_rpc.transports.server")

#: Seconds a closing connection gets to write its last bytes (and the peer to read them).
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
#: Seconds a new connection may take to send its first valid request.
DEFAULT_IDLE_TIMEOUT: Final = 30.0
#: Connections one adapter serves at a time.
DEFAULT_MAX_CONNECTIONS: Final = 10_000
#: Unsent answer bytes above which a connection's requests are no longer read.
_BACKLOG_LIMIT: Final = 1024 * 1024
#: The notification text every peer gets at an orderly shutdown.
SHUTDOWN_MESSAGE: Final = "The server is shutting down."


def too_many_connections_message(limit: int) -> str:
    """The ``closing`` text for a connection beyond an adapter's limit."""
    return f"Too many connections: this endpoint serves at most {limit} at a time."


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
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(
            broker,
            trusted=trusted,
            on_output=pump.wake,
            max_frame_size=max_frame_size,
            max_outbound=max_outbound,
            max_batch=max_batch,
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
    from all adapters share one broker, so events cross transports.  The
    keywords are the limits of the module docstring; ``idle_timeout`` None
    turns that one off.
    """

    def __init__(
        self,
        adapters: Iterable[Adapter] = (),
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_outbound: int = DEFAULT_MAX_OUTBOUND,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        for name, value in (
            ("max_frame_size", max_frame_size),
            ("max_outbound", max_outbound),
            ("max_batch", max_batch),
            ("max_connections", max_connections),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError("idle_timeout must be positive (or None for no timeout)")
        #: The protocol state shared by every connection.
        self.broker = Broker(max_subscriptions=max_subscriptions)
        self.max_frame_size = max_frame_size
        self.max_outbound = max_outbound
        self.max_batch = max_batch
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        #: Counters of connections and of what the limits did.
        self.stats = ServerStats()
        self.broker.add_stats_source(lambda: self.stats.snapshot(self._adapters, len(self._connections)))
        self._adapters: list[Adapter] = list(adapters)
        self._started = False
        self._handler_nursery: trio.Nursery | None = None
        self._connections: set[_Closable] = set()
        self._idle = IdleWatch(idle_timeout) if idle_timeout is not None else None
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

    @property
    def max_subscriptions(self) -> int:
        """Subscriptions one connection may hold at a time (the broker enforces it)."""
        return self.broker.max_subscriptions

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
        self.stats.started_at = time.monotonic()
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
            if self._idle is not None:
                handlers.start_soon(self._idle.run)
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

    async def serve_stream(
        self, stream: trio.abc.Stream, *, trusted: bool = False, adapter: Adapter | None = None
    ) -> None:
        """Serve one peer over any ``trio.abc.Stream`` until it disconnects or the server stops.

        This is how every byte-stream adapter serves its connections, and how
        you serve a stream of your own making (a socketpair, a pipe pair, a
        WebSocket wrapped as a stream).  The server must be serving.  The
        stream is closed on return; a peer that breaks the connection is
        logged, not raised.

        ``adapter`` is the listener that accepted the stream (adapters pass
        ``self``): ``max_connections`` and ``stats`` count per adapter, and
        only streams with one whose ``idle_timeout_applies`` are subject to
        ``idle_timeout`` (the protection against half-open sockets; stdio's
        single peer is exempt).  Streams served without one (a pipe of your
        own) count together and may stay idle.
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
            max_batch=self.max_batch,
        )
        await self._run_connection(pump, connection, lambda: connection.outbound_bytes, adapter=adapter)

    async def _run_connection(
        self,
        pump: Pump[_In, _Out],
        connection: _Served[_In, _Out],
        backlog: Callable[[], int],
        *,
        adapter: Adapter | None = None,
    ) -> None:
        """Pump one connection to its end, tracked for shutdown (shared by every adapter).

        Applies ``max_connections`` (per ``adapter``) and, to byte-stream
        connections from an adapter, ``idle_timeout``.
        """
        counted = self._admit(connection, adapter)
        try:
            with self._tracking(connection):
                _log.debug("connection opened (%d open)", len(self._connections))
                await pump.run(connection, backlog)
        except* ConnectionClosedError as group:
            _log.debug("connection lost: %s", group.exceptions[0])
        except* Exception as group:
            # A bug of ours must cost one connection, never the server.
            self.stats.internal_errors += 1
            _log.error(
                "a connection failed inside the server: %s",
                ", ".join(type(exc).__name__ for exc in group.exceptions),
            )
        finally:
            if counted:
                self.stats.closed(adapter)
                if self._idle is not None:
                    self._idle.discard(connection)
            # Subscriptions and the ad-hoc identity go first, so no publish
            # counts a peer that is gone.
            connection.close()
            self.stats.ended(connection)
            await pump.link.aclose()
            if pump.scope.cancelled_caught:
                _log.info("a closing connection did not flush within %.1f s", self.close_timeout)
            _log.debug("connection closed (%d open)", len(self._connections))

    def _admit(self, connection: _Closable, adapter: Adapter | None) -> bool:
        """Count a new connection against its adapter's limit; refuse it if it is over."""
        open_now = self.stats.open_on(adapter)
        if open_now >= self.max_connections:
            self.stats.refused(adapter)
            _log.debug("refused a connection: %d open on %r", open_now, adapter)
            connection.start_closing(
                ErrorCode.LIMIT_EXCEEDED, too_many_connections_message(self.max_connections)
            )
            return False
        self.stats.accepted(adapter)
        if (
            self._idle is not None
            and adapter is not None
            and adapter.idle_timeout_applies
            and isinstance(connection, ServerConnection)
        ):
            self._idle.add(connection)
        return True
