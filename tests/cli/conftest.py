"""Fixtures for the command-line tests: a clients file and a running server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import ServeProcess, start_serve


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    """A clients file with a publisher, a watcher and a client with no rights."""
    path = tmp_path / "clients.toml"
    path.write_text(
        '[[client]]\nid = "pub-s3cret"\ncan_subscribe = false\n'
        '[[client]]\nid_env = "TEST_WATCHER_ID"\ncan_publish = false\n'
        '[[client]]\nid = "mute-s3cret"\ncan_publish = false\ncan_subscribe = false\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def server(clients_file: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    """A server on a free TCP port and a Unix socket, stopped with SIGTERM afterwards."""
    serve = start_serve(
        "--clients",
        str(clients_file),
        "--tcp",
        "127.0.0.1:0",
        "--unix",
        str(tmp_path / "app.sock"),
        env={"TEST_WATCHER_ID": "watch-s3cret"},
        listeners=2,
    )
    try:
        yield serve
    finally:
        if serve.process.poll() is None:
            serve.process.terminate()
        serve.process.communicate(timeout=15)  # also closes the pipes
