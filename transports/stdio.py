"""Standard input and output: serve one peer, or be one, over a process's pipes.

Three ways to use it:

* ``Adapter()`` in a server program serves the one peer at the other end of
  this process's stdin/stdout (typically the program that spawned it)::

      adapter = stdio.Adapter(trusted=True)
      server = Server([adapter])
      await nursery.start(server.serve)
      await adapter.wait_disconnected()
      await server.aclose()

* ``spawn(argv)`` starts such a server as a subprocess and yields a
  ``Client`` talking to it over its pipes;
* ``connect()`` yields a ``Client`` over this process's own stdin/stdout,
  for a process that a server-side program spawned and serves.

While any of these runs, nothing else in the process may read stdin or write
stdout (no ``print``): those bytes are the protocol.  Log to stderr.  The
streams use duplicates of the descriptors, and trio puts the underlying pipes
into non-blocking mode while they are open (see ``trio.lowlevel.FdStream``).
When the connection ends, the descriptors are pointed at ``/dev/null``, so
the peer sees end-of-file at once rather than when this process exits, and a
stray ``print`` afterwards goes nowhere instead of corrupting the stream.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Unpack

import trio

from ._adapter import Adapter as _BaseAdapter
from ._client import Client
from ._errors import unwrap_single_exception
from ._open_client import ClientOptions, open_client

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["Adapter", "StdioStream", "connect", "spawn"]

_log = logging.getLogger("pubsub_rpc.transports.stdio")


class StdioStream(trio.abc.Stream):
    """A ``trio.abc.Stream`` over two file descriptors (stdin and stdout by default).

    On ``aclose`` the descriptors themselves are pointed at ``/dev/null``
    (with ``release=True``, the default), which closes this process's last
    reference to the pipes so the peer sees end-of-file immediately.
    """

    def __init__(self, receive_fd: int = 0, send_fd: int = 1, *, release: bool = True) -> None:
        self._fds = (receive_fd, send_fd)
        self._release = release
        # FdStream owns (and closes) the fd it gets, so give it duplicates.
        self._receive = trio.lowlevel.FdStream(os.dup(receive_fd))
        self._send = trio.lowlevel.FdStream(os.dup(send_fd))
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` to the send descriptor."""
        await self._send.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the send descriptor can take data."""
        await self._send.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Read some bytes from the receive descriptor; ``b""`` at end-of-file."""
        return bytes(await self._receive.receive_some(max_bytes))

    async def aclose(self) -> None:
        """Close both directions (and release the descriptors, see the class docstring)."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        # Shielded: both descriptors must close (and be released) even in a
        # cancelled scope, and closing an fd does not block.
        with trio.CancelScope(shield=True):
            await self._send.aclose()
            await self._receive.aclose()
        if self._release:
            devnull = os.open(os.devnull, os.O_RDWR)
            try:
                for fd in self._fds:
                    os.dup2(devnull, fd)
            finally:
                os.close(devnull)


class Adapter(_BaseAdapter):
    """Serve the one peer at the other end of this process's stdin and stdout.

    ``receive_fd``/``send_fd`` pick other descriptors (a pipe pair, say).
    ``wait_disconnected()`` returns once that peer has gone; a stdio server
    usually shuts down then.
    """

    kind = "stdio"
    # One peer on pipes that close with the process: it cannot be half-open.
    idle_timeout_applies = False

    def __init__(self, *, trusted: bool = False, receive_fd: int = 0, send_fd: int = 1) -> None:
        super().__init__(trusted=trusted)
        self.receive_fd = receive_fd
        self.send_fd = send_fd
        self._disconnected = trio.Event()

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start serving the peer and return; its connection runs in the server's handler nursery."""
        stream = StdioStream(self.receive_fd, self.send_fd)
        server.handler_nursery.start_soon(self._serve_peer, server, stream)
        task_status.started()

    async def _serve_peer(self, server: Server, stream: StdioStream) -> None:
        try:
            await server.serve_stream(stream, trusted=self.trusted, adapter=self)
        finally:
            self._disconnected.set()
            _log.info("the stdio peer disconnected")

    async def wait_disconnected(self) -> None:
        """Wait until the peer has closed the connection (or the server closed it)."""
        await self._disconnected.wait()


@asynccontextmanager
async def connect(
    **options: Unpack[ClientOptions],
) -> AsyncIterator[Client]:
    """Yield a ``Client`` over this process's own stdin/stdout (see ``open_client``)."""
    async with open_client(
        StdioStream(),
        **options,
    ) as client:
        yield client


@asynccontextmanager
async def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stderr: int | None = None,
    exit_timeout: float = 5.0,
    **options: Unpack[ClientOptions],
) -> AsyncIterator[Client]:
    """Start ``argv`` (a stdio server) and yield a ``Client`` over its stdin/stdout.

    On exit the pipes are closed, which tells the server its peer left; it
    gets ``exit_timeout`` seconds to exit before it is killed.  ``stderr``
    is inherited unless given (``subprocess.DEVNULL``, a file descriptor).
    """
    with unwrap_single_exception():
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    list(argv),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                    cwd=cwd,
                    check=False,
                )
            )
            assert process.stdin is not None and process.stdout is not None
            try:
                async with open_client(
                    trio.StapledStream(process.stdin, process.stdout),
                    **options,
                ) as client:
                    yield client
            finally:
                with trio.move_on_after(exit_timeout):
                    await process.wait()
                if process.returncode is None:
                    _log.warning("the spawned server did not exit within %g s; killing it", exit_timeout)
                    process.kill()
