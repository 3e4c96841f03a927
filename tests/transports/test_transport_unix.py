"""Unix socket files: permissions, stale files, live sockets, removal."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest
import trio
from transport_helpers import running

from transports import Server, unix


async def test_socket_file_mode_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    adapter = unix.Adapter(path)
    async with running(Server([adapter])):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert adapter.url == f"unix://{path}"
    assert not path.exists()


async def test_custom_mode(tmp_path: Path) -> None:
    path = tmp_path / "group.sock"
    async with running(Server([unix.Adapter(path, mode=0o660)])):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


async def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(path))
    crashed.close()  # the file stays, nobody listens: what a crashed server leaves
    assert path.exists()
    adapter = unix.Adapter(path)
    async with running(Server([adapter])), unix.connect(path) as client:
        await client.ping()
    assert not path.exists()


async def test_live_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    async with running(Server([unix.Adapter(path)])):
        with pytest.raises(OSError) as caught:
            await Server([unix.Adapter(path)]).serve()
        assert caught.value.errno == errno.EADDRINUSE
        assert "already listening" in str(caught.value)
        # The first server is untouched and still serving.
        async with unix.connect(path) as client:
            await client.ping()


async def test_non_socket_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("do not delete me")
    with pytest.raises(FileExistsError, match="not a socket"):
        await Server([unix.Adapter(path)]).serve()
    assert path.read_text() == "do not delete me"


async def test_replaced_file_is_not_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "moved.sock"
    async with running(Server([unix.Adapter(path)])):
        os.unlink(path)
        path.write_text("a newer tenant")
    assert path.read_text() == "a newer tenant"


async def test_connect_to_missing_socket(tmp_path: Path) -> None:
    from pubsub_rpc import ConnectionClosedError

    with pytest.raises(ConnectionClosedError, match="Connecting to unix://"):
        async with unix.connect(tmp_path / "nobody.sock"):
            pass
    await trio.lowlevel.checkpoint()
