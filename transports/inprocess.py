"""In-process clients over trio memory channels: the original's isolate flavour for tasks.

Messages are Python objects, not bytes, in the shapes documented in
``pubsub_rpc._inprocess`` (handshake ``{"status": True, "id": <connection
id>}``, requests ``{"id", "request_id", "method", "params"}``, answers
``{"status", "request_id", "result" | "error_message"}``, events
``[event_name, value, subscription_id]``).  In-process connections are always
trusted, as isolates were: a client may omit its id and get an ad-hoc one.

::

    adapter = inprocess.Adapter()
    server = Server([adapter, tcp.Adapter("127.0.0.1", 7700)])
    await nursery.start(server.serve)
    async with inprocess.connect(server) as client:   # or connect(adapter)
        await client.publish("greeting", "hello")

A published value must be JSON (other subscribers may be on sockets), and
each in-process subscriber receives its own copy of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio

from pubsub_rpc import (
    Broker,
    ConnectionClosedError,
    ErrorCode,
    InProcessClientConnection,
    InProcessConnection,
    LocalProtocolError,
    RequestTimeoutError,
)

from ._adapter import Adapter as _BaseAdapter
from ._client import DEFAULT_REQUEST_TIMEOUT, Client
from ._errors import translate_io_errors
from ._open_client import run_client
from ._pump import Pump
from ._server import Server
from ._subscription import DEFAULT_SUBSCRIPTION_BUFFER

if TYPE_CHECKING:
    _Channels = tuple[trio.MemoryReceiveChannel[object], trio.MemorySendChannel[object]]

__all__ = ["Adapter", "ChannelLink", "connect"]

_log = logging.getLogger("pubsub_rpc.transports.inprocess")

#: Objects each direction of a connection buffers before the sender waits.
CHANNEL_SIZE: Final = 1024
#: Messages moved per wake-up: enough to amortise the task switch.
_BATCH: Final = 512


class ChannelLink:
    """A link over a pair of memory channels carrying objects, batched both ways."""

    __slots__ = ("_receive", "_send")

    def __init__(
        self, send: trio.MemorySendChannel[object], receive: trio.MemoryReceiveChannel[object]
    ) -> None:
        self._send = send
        self._receive = receive

    async def receive(self) -> list[object] | None:
        """Every object waiting (at least one), or ``None`` once the sender closed."""
        with translate_io_errors("Receiving"):
            try:
                items = [await self._receive.receive()]
            except trio.EndOfChannel:
                return None
            receive_nowait = self._receive.receive_nowait
            while len(items) < _BATCH:
                try:
                    items.append(receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break  # EndOfChannel repeats on the next receive()
        return items

    async def send(self, items: list[object]) -> None:
        """Send every object, waiting only when the channel is full."""
        send, send_nowait = self._send.send, self._send.send_nowait
        with translate_io_errors("Sending"):
            for item in items:
                try:
                    send_nowait(item)
                except trio.WouldBlock:
                    await send(item)

    async def receive_first(self, timeout: float) -> object:
        """The first object (a handshake), within ``timeout`` seconds."""
        with trio.move_on_after(timeout) as scope, translate_io_errors("Connecting"):
            try:
                return await self._receive.receive()
            except trio.EndOfChannel:
                raise ConnectionClosedError("The server closed the connection before accepting it.") from None
        assert scope.cancelled_caught
        raise RequestTimeoutError(
            f"The in-process server did not accept the connection within {timeout:g} seconds."
        )

    async def aclose(self) -> None:
        """Close both channel ends; the peer sees end-of-channel or a broken channel."""
        # close() is synchronous: both ends close even in a cancelled scope.
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()


class _ObjectConnection(InProcessConnection):
    """An ``InProcessConnection`` that tells its pump when it starts closing."""

    def __init__(self, broker: Broker, *, pump: Pump[list[object], list[object]], max_outbound: int) -> None:
        super().__init__(broker, on_output=pump.wake, max_outbound=max_outbound)
        self._on_closing: Callable[[], None] = pump.closing_started

    def start_closing(self, code: ErrorCode | int, message: str) -> None:
        was_closing = self.closing
        super().start_closing(code, message)
        if not was_closing:
            self._on_closing()


class Adapter(_BaseAdapter):
    """Accept in-process connections; always trusted.

    ``open_channels()`` is the raw interface (objects in, objects out); most
    code uses ``connect``.  Connections opened before the server starts wait
    for it, as the original's did.
    """

    kind = "inprocess"

    def __init__(self, *, max_outbound: int = 10_000) -> None:
        super().__init__(trusted=True)
        #: Messages queued for one connection before it counts as a slow consumer.
        self.max_outbound = max_outbound
        self._accept_send, self._accept_receive = trio.open_memory_channel["_Channels"](math.inf)

    def open_channels(self) -> tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]]:
        """Open a raw connection: send requests on the first channel, receive on the second.

        The first object received is the handshake.  Raises
        ``ConnectionClosedError`` once the adapter has stopped.
        """
        to_server, from_client = trio.open_memory_channel[object](CHANNEL_SIZE)
        to_client, from_server = trio.open_memory_channel[object](CHANNEL_SIZE)
        try:
            self._accept_send.send_nowait((from_client, to_client))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionClosedError("The in-process adapter is not accepting connections.") from None
        return to_server, from_server

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections until cancelled; connections still waiting then are closed."""
        task_status.started()
        try:
            async for channels in self._accept_receive:
                server.handler_nursery.start_soon(self._serve_one, server, channels)
        finally:
            # Nobody will ever answer the connections still waiting: close
            # them so their clients see it.  No checkpoint from here to the
            # close, so none can slip in between.
            while True:
                try:
                    receive, send = self._accept_receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                receive.close()
                send.close()
            self._accept_receive.close()

    async def _serve_one(self, server: Server, channels: _Channels) -> None:
        receive, send = channels
        pump: Pump[list[object], list[object]] = Pump(
            ChannelLink(send, receive), close_timeout=server.close_timeout, backlog_limit=CHANNEL_SIZE
        )
        connection = _ObjectConnection(server.broker, pump=pump, max_outbound=self.max_outbound)
        await server._run_connection(pump, connection, lambda: connection.outbound_messages, adapter=self)


def _find_adapter(target: Adapter | Server) -> Adapter:
    if isinstance(target, Adapter):
        return target
    for adapter in target.adapters:
        if isinstance(adapter, Adapter):
            return adapter
    raise LocalProtocolError("The server has no in-process adapter.")


@asynccontextmanager
async def connect(
    target: Adapter | Server,
    *,
    client_id: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    subscription_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
    keepalive: float | None = None,
) -> AsyncIterator[Client]:
    """Connect to a server's in-process adapter (or to the adapter) and yield a ``Client``.

    Waits up to ``request_timeout`` for the server to accept (it may not have
    started yet).  ``client_id`` None gets an ad-hoc identity.  ``keepalive``
    (seconds) makes a server whose tasks hang noticed within that interval,
    as on the other transports (see ``Client``).
    """
    send, receive = _find_adapter(target).open_channels()
    link = ChannelLink(send, receive)
    protocol = InProcessClientConnection(client_id=client_id)
    try:
        protocol.receive_handshake(await link.receive_first(request_timeout))
    except BaseException:
        await link.aclose()
        raise
    client = Client(
        link,
        protocol,
        join=list,
        request_timeout=request_timeout,
        subscription_buffer=subscription_buffer,
        keepalive=keepalive,
    )
    async with run_client(client):
        yield client
