"""The idle timeout: close connections that send no valid request in time.

A half-open socket (a peer that vanished without a FIN) would otherwise hold
a connection slot forever.  One task serves the whole server: connections are
watched in accept order, so their deadlines ascend and only the first needs
a timer.  A connection leaves the watch when it closes, so the watch holds at
most the open connections.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import trio

from pubsub_rpc import ErrorCode, ServerConnection

_log = logging.getLogger("pubsub_rpc.transports.server")


def idle_message(timeout: float) -> str:
    """The ``closing`` text for a connection that sent no valid request in time."""
    return f"No valid request arrived within {timeout:g} seconds."


class IdleWatch:
    """Connections still subject to the idle timeout, and the task that enforces it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # connection -> deadline, in accept order (so deadlines ascend).
        self._watch: OrderedDict[ServerConnection, float] = OrderedDict()
        self._added = trio.Event()

    def add(self, connection: ServerConnection) -> None:
        """Start the clock for a newly accepted connection."""
        self._watch[connection] = trio.current_time() + self.timeout
        self._added.set()

    def discard(self, connection: object) -> None:
        """Stop watching a connection (it closed); unknown ones are ignored."""
        self._watch.pop(connection, None)  # type: ignore[call-overload]

    async def run(self) -> None:
        """Close each connection that is still silent at its deadline; runs until cancelled."""
        message = idle_message(self.timeout)
        watch = self._watch
        while True:
            if not watch:
                self._added = trio.Event()
                await self._added.wait()
                continue
            connection, deadline = next(iter(watch.items()))
            if trio.current_time() < deadline:
                await trio.sleep_until(deadline)
                continue
            del watch[connection]
            if not connection.active and not connection.closing:
                _log.debug("closing a connection that sent no valid request in %g s", self.timeout)
                connection.start_closing(ErrorCode.IDLE_TIMEOUT, message)
