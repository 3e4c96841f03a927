"""The stream pump: one reader and one writer between a link and a sans-IO connection.

Every server-side connection, whatever carries it (TCP, TLS, Unix socket,
pipes, WebSockets, trio memory channels), runs through ``Pump.run``:

* the reader awaits input from the link and feeds it to the connection; it
  pauses while the connection's unsent output is above ``backlog_limit``, so
  a peer that sends requests but never reads the answers cannot grow our
  memory;
* output is written in one of two ways.  Output produced while a reader
  feeds its connection (answers, and the events fan-out queues on *other*
  connections) is collected: the connection's ``on_output`` hook (``wake``)
  only notes the pump.  When ``receive_data`` returns, the reader writes each
  noted connection's whole queue with one non-blocking write on its socket
  (``StreamLink.try_send``), in the reader's own turn; what the socket does
  not take, and all output of links that cannot write without waiting (TLS,
  WebSockets, channels), goes to that connection's writer task, which writes
  it with ``send_all`` in slices of at most ``WRITE_SLICE`` bytes;
* publisher backpressure: after writing, a reader whose input fed a
  connection that still has more than ``feed_high_water`` bytes unwritten
  stops reading until that connection's writer has got it below the mark.
  A connection whose writer makes no progress for ``stall_timeout`` seconds
  (a peer that stopped reading) no longer holds publishers back: its queue
  then grows until the core's ``max_outbound`` bound closes it as a slow
  consumer.  So a slow subscriber slows its publishers down, a dead one is
  cut off, and no queue is unbounded;
* once the connection is closing (peer EOF, server shutdown, slow consumer,
  broken framing) the remaining output gets ``close_timeout`` seconds to be
  written; then both tasks end and the caller closes the link.

Why the reader writes: a task switch to a writer, and trio's ``send_all``
around the system call, cost more than the write itself.  Writing every fed
connection once per read keeps the coalescing (one write per connection per
64 KiB read, however many events it got) and drops the hop: fan-out to 100
subscribers is 100 writes and no task switches, and an event reaches the
subscriber's socket before the publisher's reader waits again.

A ``Link`` is the small interface the pump needs from a transport; trio's
exceptions are turned into ``ConnectionClosedError`` inside the links.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Final, Generic, Protocol, TypeVar

import trio

from pubsub_rpc import RemoteProtocolError

from ._errors import translate_io_errors

_log = logging.getLogger("pubsub_rpc.transports.pump")

#: Bytes asked of ``receive_some`` at a time: large enough that a burst of
#: small frames is one read, small enough that one read's answers stay small.
RECEIVE_SIZE: Final = 64 * 1024
#: Unwritten bytes of a subscriber above which the readers feeding it pause.
FEED_HIGH_WATER: Final = 256 * 1024
#: Seconds without write progress after which a subscriber no longer holds publishers back.
STALL_TIMEOUT: Final = 2.0
#: Most bytes one ``send_all`` of the writer task is given (a progress step).
WRITE_SLICE: Final = 256 * 1024

_In_co = TypeVar("_In_co", covariant=True)
_Out_contra = TypeVar("_Out_contra", contravariant=True)
_In_contra = TypeVar("_In_contra", contravariant=True)
_Out_co = TypeVar("_Out_co", covariant=True)
_In = TypeVar("_In")
_Out = TypeVar("_Out")

_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Link(Protocol[_In_co, _Out_contra]):
    """What the pump needs from a transport: receive, send, close."""

    async def receive(self) -> _In_co | None:
        """The next input, or ``None`` at end of input; raises ``ConnectionClosedError``."""

    async def send(self, data: _Out_contra) -> None:
        """Deliver output; raises ``ConnectionClosedError``."""

    async def aclose(self) -> None:
        """Release the transport; never raises for a broken peer."""


class PumpedConnection(Protocol[_In_contra, _Out_co]):
    """What the pump needs from a sans-IO server connection."""

    @property
    def closing(self) -> bool:
        """The connection wants to be closed once its output is written."""

    def receive_data(self, data: _In_contra) -> None:
        """Process input."""

    def receive_eof(self) -> None:
        """No more input will come."""

    def data_to_send(self) -> _Out_co:
        """Take all queued output (falsy when there is none)."""


class Wakeup:
    """A re-arming flag: ``set`` from sync code, ``wait`` from the one task that sleeps on it.

    A notification that arrives while the waiter is already awake may be
    merged with the previous one; waiters always re-check the state they care
    about after waking, so nothing is lost.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        """Wake the waiter (or make its next ``wait`` return at once)."""
        self._event.set()

    async def wait(self) -> None:
        """Sleep until ``set`` is called, then re-arm."""
        await self._event.wait()
        self._event = trio.Event()


class StreamLink:
    """A ``Link`` over any ``trio.abc.Stream``: bytes in, bytes out."""

    __slots__ = ("_fd", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        # Plain sockets can also be written without waiting (see try_send).
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1

    async def receive(self) -> bytes | None:
        """Some bytes, or ``None`` at EOF."""
        # Lean on purpose: a context manager around every read costs more than
        # the read's own Python; errors are translated on the way out only.
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except _STREAM_ERRORS:
            with translate_io_errors("Receiving"):
                raise
        # receive_some may hand back a bytearray; the core wants bytes.
        return bytes(data) if data else None

    async def send(self, data: bytes | memoryview) -> None:
        """Write all of ``data``."""
        try:
            await self.stream.send_all(data)
        except _STREAM_ERRORS:
            with translate_io_errors("Sending"):
                raise

    def try_send(self, data: bytes | memoryview) -> int | None:
        """Write what the socket takes right now: the bytes written, or None if it cannot.

        ``None`` for streams that are not plain sockets, for a closed socket,
        and for a failing one (the writer task then meets the error itself
        and reports it as usual).  Only called while no ``send`` is running.
        """
        fd = self._fd
        if fd < 0:
            return None
        stream = self.stream
        assert isinstance(stream, trio.SocketStream)
        if stream.socket.fileno() != fd:
            return None  # closed; the number may belong to another file by now
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return None

    async def aclose(self) -> None:
        """Close the stream; a TLS close_notify gets a moment, a dead peer none."""
        # A failure here still leaves the stream closed, which is all we wanted.
        with trio.move_on_after(1.0), suppress(*_STREAM_ERRORS):
            await self.stream.aclose()


class _Collector(threading.local):
    """The pumps ``wake`` was called for during the current ``receive_data`` (per thread)."""

    fed: dict[Pump[Any, Any], None] | None = None


_collector: Final = _Collector()


class Pump(Generic[_In, _Out]):
    """Runs one connection's reader and writer; see the module docstring."""

    def __init__(
        self,
        link: Link[_In, _Out],
        *,
        close_timeout: float,
        backlog_limit: int,
        feed_high_water: int | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        self.link = link
        self.close_timeout = close_timeout
        self.backlog_limit = backlog_limit
        #: Defaults read now, not at import, so tests can lower them.
        self.feed_high_water = FEED_HIGH_WATER if feed_high_water is None else feed_high_water
        self.stall_timeout = STALL_TIMEOUT if stall_timeout is None else stall_timeout
        self._output_ready = Wakeup()
        self._connection: PumpedConnection[_In, _Out] | None = None
        self._backlog: Callable[[], int] | None = None
        self._try_send: Callable[[Any], int | None] | None = getattr(link, "try_send", None)
        #: StreamLinks take their output in slices (memoryviews of one buffer).
        self._send_slice: Callable[[memoryview], Awaitable[None]] | None = (
            link.send if isinstance(link, StreamLink) else None
        )
        #: Output taken from the connection and not written yet (written first).
        self._unsent: memoryview | None = None
        self._busy = False  # the writer task is inside link.send
        self._finished = False
        self._stalled = False  # no write progress for stall_timeout: holds nobody back
        self._progress: trio.Event | None = None
        #: Connections this pump's input fed that still have output unwritten.
        self._feeding: dict[Pump[Any, Any], None] = {}
        #: Covers both tasks; its deadline is what bounds the final flush.
        self.scope = trio.CancelScope()

    def wake(self) -> None:
        """Tell the pump there is output; give this to the connection as ``on_output``."""
        fed = _collector.fed
        if fed is None:
            self._output_ready.set()
        else:
            fed[self] = None  # written by the feeding reader when receive_data returns

    def closing_started(self) -> None:
        """The connection is closing: wake the writer and give it ``close_timeout`` to finish."""
        self._output_ready.set()
        if math.isfinite(self.close_timeout):
            self.scope.deadline = min(self.scope.deadline, trio.current_time() + self.close_timeout)

    @property
    def pending(self) -> int:
        """Output not yet written: queued in the connection, plus taken and unsent."""
        backlog = self._backlog
        unsent = self._unsent
        return (backlog() if backlog is not None else 0) + (len(unsent) if unsent is not None else 0)

    async def run(self, connection: PumpedConnection[_In, _Out], backlog: Callable[[], int]) -> None:
        """Pump until the connection is done; ``backlog()`` is its unsent output size.

        Raises ``ConnectionClosedError`` when the link fails; the caller closes
        the link and the connection either way.
        """
        self._connection = connection
        self._backlog = backlog
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, connection, nursery.cancel_scope)
                    await self._reader(connection)
        finally:
            self._finished = True
            self._progressed()  # nobody may wait for this pump any more
            # Publishers may still hold this pump in their _feeding until their
            # next read: keep nothing big (the connection's queue) alive through it.
            self._connection = self._backlog = self._unsent = None
            self._feeding.clear()

    async def _reader(self, connection: PumpedConnection[_In, _Out]) -> None:
        link = self.link
        collector = _collector
        fed: dict[Pump[Any, Any], None] = {}
        while not connection.closing:
            if self.pending > self.backlog_limit:
                # The peer is not reading its answers: stop reading its requests.
                await self._progress_event().wait()
                continue
            data = await link.receive()
            if data is None:
                try:
                    connection.receive_eof()
                except RemoteProtocolError as exc:
                    # The peer left mid-frame; answers to its complete frames still go out.
                    _log.debug("peer closed mid-frame: %s", exc.message)
                break
            outer = collector.fed
            collector.fed = fed
            try:
                connection.receive_data(data)
            finally:
                collector.fed = outer
                self._write_fed(fed)
            if self._feeding and self._congested():
                await self._wait_for_subscribers()
        self.closing_started()

    def _write_fed(self, fed: dict[Pump[Any, Any], None]) -> None:
        """Write the output of every pump noted during ``receive_data`` (never raises)."""
        feeding = self._feeding
        if self in fed:
            self._write_now()  # answers first: their requester is waiting for them
        for pump in fed:
            if pump is not self:
                pump._write_now()
                feeding[pump] = None
        fed.clear()

    def _write_now(self) -> None:
        """One non-blocking write of everything queued; the rest is the writer task's."""
        connection = self._connection
        try_send = self._try_send
        if connection is None or self._finished:
            return
        if try_send is None or self._busy or self._unsent is not None:
            self._output_ready.set()
            return
        data: Any = connection.data_to_send()  # bytes: only stream links have try_send
        if not data:
            if connection.closing:
                self._output_ready.set()
            return
        written = try_send(data)
        if written != len(data):
            self._unsent = memoryview(data)[written or 0 :]
            self._output_ready.set()
        if written:
            self._progressed()

    def _congested(self) -> bool:
        """Forget fed pumps that are written out; whether one is still above the high-water mark."""
        feeding = self._feeding
        high = self.feed_high_water
        congested = False
        for pump in list(feeding):
            pending = 0 if pump._finished else pump.pending
            if not pending:
                del feeding[pump]
            elif pending > high and not pump._stalled:
                congested = True
        return congested

    async def _wait_for_subscribers(self) -> None:
        """Publisher backpressure: wait until no fed pump is above the mark, or it stalls."""
        high = self.feed_high_water
        for pump in list(self._feeding):
            while not pump._finished and not pump._stalled and pump.pending > high:
                with trio.move_on_after(self.stall_timeout) as waited:
                    await pump._progress_event().wait()
                if waited.cancelled_caught:
                    _log.info(
                        "a subscriber made no progress for %.1f s: it no longer holds its publishers back",
                        self.stall_timeout,
                    )
                    pump._stalled = True

    def _progress_event(self) -> trio.Event:
        event = self._progress
        if event is None:
            event = self._progress = trio.Event()
        return event

    def _progressed(self) -> None:
        self._stalled = False
        event = self._progress
        if event is not None:
            self._progress = None
            event.set()

    async def _writer(self, connection: PumpedConnection[_In, _Out], done: trio.CancelScope) -> None:
        link = self.link
        send_slice = self._send_slice
        try:
            while True:
                unsent = self._unsent
                if unsent is None:
                    data: Any = connection.data_to_send()
                    if not data:
                        if connection.closing:
                            return
                        await self._output_ready.wait()
                        continue
                    if send_slice is None:
                        self._busy = True
                        try:
                            await link.send(data)
                        finally:
                            self._busy = False
                        self._progressed()
                        continue
                    unsent = self._unsent = memoryview(data)  # a StreamLink's bytes
                assert send_slice is not None  # only StreamLinks leave output unsent
                self._busy = True
                try:
                    await send_slice(unsent[:WRITE_SLICE])
                finally:
                    self._busy = False
                self._unsent = unsent[WRITE_SLICE:] if len(unsent) > WRITE_SLICE else None
                self._progressed()
        finally:
            # Everything is written (or cannot be): the reader has nothing left to do.
            done.cancel()
