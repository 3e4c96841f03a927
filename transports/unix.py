"""Unix domain sockets: a listening ``Adapter`` and ``connect`` for clients.

The socket file is created with mode 0600 (owner only) unless told
otherwise: file permissions are the access control of a Unix socket.  A
socket file left behind by a crashed server is replaced, but only after
checking that it is a socket and that nobody answers on it; a live socket or
a file of another kind is never touched.  The file is removed when the
adapter stops, if it is still the one this adapter created.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as stdlib_socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Unpack

import trio

from ._adapter import Adapter as _BaseAdapter
from ._client import Client
from ._errors import translate_io_errors
from ._open_client import ClientOptions, open_client

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["Adapter", "connect", "open_listener"]

_log = logging.getLogger("pubsub_rpc.transports.unix")

# What connect() says about a socket file nobody listens on any more.
_STALE_ERRNOS = frozenset((errno.ECONNREFUSED, errno.ENOENT))


async def _remove_stale(path: str) -> None:
    """Remove ``path`` if it is a socket file nobody listens on; refuse anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, "Refusing to replace a file that is not a socket", path)
    probe = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    with probe:
        try:
            await probe.connect(path)
        except OSError as exc:
            if exc.errno not in _STALE_ERRNOS:
                raise
        else:
            raise OSError(errno.EADDRINUSE, "A server is already listening on this socket", path)
    # Between the probe and this unlink another server could bind the path;
    # servers started at the same instant on one path are a deployment error.
    with suppress(FileNotFoundError):
        os.unlink(path)
    _log.info("replaced a stale socket file")


async def open_listener(path: str, *, mode: int = 0o600, backlog: int | None = None) -> trio.SocketListener:
    """Bind and listen on a Unix socket file created with ``mode`` (a stale one is replaced)."""
    await _remove_stale(path)
    sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        # bind() creates the file with the umask's mode; a chmod after it
        # would leave a moment in which others may connect.  Narrowing the
        # umask around the (synchronous, checkpoint-free) bind closes that gap.
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        sock.listen(backlog if backlog is not None else 128)
        return trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    except BaseException:
        sock.close()
        raise


class Adapter(_BaseAdapter):
    """Listen on a Unix socket file (mode 0600 by default), removed again at shutdown."""

    kind = "unix"

    def __init__(self, path: str | os.PathLike[str], *, trusted: bool = False, mode: int = 0o600) -> None:
        super().__init__(trusted=trusted)
        self.path = os.fspath(path)
        self.mode = mode

    @property
    def url(self) -> str:
        """``unix:///absolute/path``."""
        return f"unix://{os.path.abspath(self.path)}"

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled; the socket file is removed on the way out."""
        listener = await open_listener(self.path, mode=self.mode)
        created = os.stat(self.path)
        try:
            _log.info("listening on %s", self.url)
            task_status.started()
            await trio.serve_listeners(
                partial(server.serve_stream, trusted=self.trusted, adapter=self),
                [listener],
                handler_nursery=server.handler_nursery,
            )
        finally:
            # Synchronous work first: in a cancelled scope every await raises.
            self._unlink_if_ours(created)
            await trio.aclose_forcefully(listener)

    def _unlink_if_ours(self, created: os.stat_result) -> None:
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return
        # Somebody may have replaced the file since (a newer server): keep theirs.
        if (now.st_dev, now.st_ino) == (created.st_dev, created.st_ino):
            os.unlink(self.path)


@asynccontextmanager
async def connect(
    path: str | os.PathLike[str],
    **options: Unpack[ClientOptions],
) -> AsyncIterator[Client]:
    """Connect to a server's Unix socket and yield a ``Client`` (see ``open_client``)."""
    with translate_io_errors(f"Connecting to unix://{os.fspath(path)}"):
        stream = await trio.open_unix_socket(os.fspath(path))
    async with open_client(
        stream,
        **options,
    ) as client:
        yield client
