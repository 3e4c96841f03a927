"""Fixtures for the command-line tests: a clients file and a running server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import ServeProcess, serving


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
    with serving(clients_file, tmp_path, env={"TEST_WATCHER_ID": "watch-s3cret"}) as serve:
        yield serve
