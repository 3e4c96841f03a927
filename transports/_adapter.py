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
from typing import TYPE_CHECKING, ClassVar

import trio

if TYPE_CHECKING:
    from ._server import Server


class Adapter(abc.ABC):
    """A listener that feeds connections to a ``Server``; subclass it for a new medium."""

    #: The medium's short name, as ``stats`` and metrics show it ("tcp", "unix", ...).
    kind: ClassVar[str] = "custom"
    #: Whether the server's ``idle_timeout`` closes this adapter's silent
    #: connections (False for a medium that cannot be half-open, like stdio).
    idle_timeout_applies: ClassVar[bool] = True
    #: Whether ``stats`` lists this adapter (False for one that serves no pub/sub peers).
    listed_in_stats: ClassVar[bool] = True

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

    def describe(self) -> str:
        """How ``stats`` names this adapter: its ``url`` once it listens, else its ``kind``.

        Override it for a medium whose address is not a ``url`` attribute.
        """
        try:
            url = getattr(self, "url", None)
        except RuntimeError:  # a TCP port asked for before it was bound
            url = None
        return url if isinstance(url, str) else self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} trusted={self.trusted}>"
