"""The stream pump: one reader and one writer between a link and a sans-IO connection.

Every server-side connection, whatever carries it (TCP, TLS, Unix socket,
pipes, trio memory channels), runs through ``Pump.run``:

* the reader awaits input from the link and feeds it to the connection; it
  pauses while the connection's unsent output is above a high-water mark, so a
  peer that sends requests but never reads the answers cannot grow our memory;
* the writer waits until the connection has output (the connection's
  ``on_output`` hook sets ``Pump.wake``; fan-out calls it from inside *another*
  connection's ``receive_data``, so it only sets a flag), then takes everything
  queued as one buffer and makes one ``send_all`` of it;
* once the connection is closing (peer EOF, server shutdown, slow consumer,
  broken framing) the remaining output gets ``close_timeout`` seconds to be
  written; then both tasks end and the caller closes the link.

A ``Link`` is the small interface the pump needs from a transport; trio's
exceptions are turned into ``ConnectionClosedError`` inside the links.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import suppress
from typing import Final, Generic, Protocol, TypeVar

import trio

from pubsub_rpc import RemoteProtocolError

from ._errors import translate_io_errors

_log = logging.getLogger("pubsub_rpc.transports.pump")

#: Bytes asked of ``receive_some`` at a time: large enough that a burst of
#: small frames is one read, small enough that one read's answers stay small.
RECEIVE_SIZE: Final = 64 * 1024

_In_co = TypeVar("_In_co", covariant=True)
_Out_contra = TypeVar("_Out_contra", contravariant=True)
_In_contra = TypeVar("_In_contra", contravariant=True)
_Out_co = TypeVar("_Out_co", covariant=True)
_In = TypeVar("_In")
_Out = TypeVar("_Out")


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

    __slots__ = ("stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive(self) -> bytes | None:
        """Some bytes, or ``None`` at EOF."""
        with translate_io_errors("Receiving"):
            data = await self.stream.receive_some(RECEIVE_SIZE)
        # receive_some may hand back a bytearray; the core wants bytes.
        return bytes(data) if data else None

    async def send(self, data: bytes) -> None:
        """Write all of ``data``."""
        with translate_io_errors("Sending"):
            await self.stream.send_all(data)

    async def aclose(self) -> None:
        """Close the stream; a TLS close_notify gets a moment, a dead peer none."""
        # A failure here still leaves the stream closed, which is all we wanted.
        with trio.move_on_after(1.0), suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.stream.aclose()


class Pump(Generic[_In, _Out]):
    """Runs one connection's reader and writer; see the module docstring."""

    def __init__(self, link: Link[_In, _Out], *, close_timeout: float, backlog_limit: int) -> None:
        self.link = link
        self.close_timeout = close_timeout
        self.backlog_limit = backlog_limit
        self._output_ready = Wakeup()
        self._sent = Wakeup()
        #: Covers both tasks; its deadline is what bounds the final flush.
        self.scope = trio.CancelScope()

    def wake(self) -> None:
        """Tell the writer there is output; give this to the connection as ``on_output``."""
        self._output_ready.set()

    def closing_started(self) -> None:
        """The connection is closing: wake the writer and give it ``close_timeout`` to finish."""
        self._output_ready.set()
        if math.isfinite(self.close_timeout):
            self.scope.deadline = min(self.scope.deadline, trio.current_time() + self.close_timeout)

    async def run(self, connection: PumpedConnection[_In, _Out], backlog: Callable[[], int]) -> None:
        """Pump until the connection is done; ``backlog()`` is its unsent output size.

        Raises ``ConnectionClosedError`` when the link fails; the caller closes
        the link and the connection either way.
        """
        with self.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, connection, nursery.cancel_scope)
                await self._reader(connection, backlog)

    async def _reader(self, connection: PumpedConnection[_In, _Out], backlog: Callable[[], int]) -> None:
        link = self.link
        while not connection.closing:
            if backlog() > self.backlog_limit:
                # The peer is not reading its answers: stop reading its requests.
                await self._sent.wait()
                continue
            data = await link.receive()
            if data is None:
                try:
                    connection.receive_eof()
                except RemoteProtocolError as exc:
                    # The peer left mid-frame; answers to its complete frames still go out.
                    _log.debug("peer closed mid-frame: %s", exc.message)
                break
            connection.receive_data(data)
        self.closing_started()

    async def _writer(self, connection: PumpedConnection[_In, _Out], done: trio.CancelScope) -> None:
        link = self.link
        try:
            while True:
                data = connection.data_to_send()
                if data:
                    await link.send(data)
                    self._sent.set()
                elif connection.closing:
                    return
                else:
                    await self._output_ready.wait()
        finally:
            # Everything is written (or cannot be): the reader has nothing left to do.
            done.cancel()
