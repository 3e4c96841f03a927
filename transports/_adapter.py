"""The base class of every listener a ``Server`` runs.

An adapter turns one kind of medium into connections of one server: a TCP
port, a Unix socket, this process's stdio, trio memory channels, or a kind of
your own.  Writing one takes a single method.  For a byte-stream medium::

    class SocketPairAdapter(Adapter):
        def __init__(self, sock: trio.socket.SocketType) -> None:
            super().__init__(trusted=False)
            self.sock = sock

        async def serve(self, server, *, task_status=trio.TASK_STATUS_IGNORED):
            stream = trio.SocketStream(self.sock)
            serve = functools.partial(server.serve_stream, trusted=self.trusted)
            server.handler_nursery.start_soon(serve, stream)
            task_status.started()

``Server.serve_stream`` does the rest: framing detection, dispatch, fan-out,
the coalescing writer and the cleanup when the stream ends.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._server import Server


class Adapter(abc.ABC):
    """A listener that feeds connections to a ``Server``; subclass it for a new medium."""

    def __init__(self, *, trusted: bool = False) -> None:
        #: Whether connections from this adapter may omit the client id and get
        #: an ad-hoc identity with full rights.  Only for peers you control.
        self.trusted = trusted

    @abc.abstractmethod
    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, and hand each new connection to ``server``.

        Called once by ``Server.serve`` through ``nursery.start``.  Contract:

        * call ``task_status.started()`` once new peers can connect (for a
          port-0 listener, once the bound address is known);
        * run every connection in ``server.handler_nursery`` (usually with
          ``server.serve_stream(stream, trusted=self.trusted)``), not in a nursery of
          your own: at shutdown the server cancels this method first, to stop
          accepting, and then says goodbye to the connections it still has;
        * release what you hold (sockets, files) in a ``finally`` when
          cancelled; returning early is fine once nothing is left to accept.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} trusted={self.trusted}>"
