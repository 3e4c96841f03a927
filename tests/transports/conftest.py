"""Fixtures for the transport tests: a running server per test, reachable over any transport.

Rules every test here follows: real sockets on 127.0.0.1 port 0, socket
files under ``tmp_path``, real pipes and subprocesses; an absolute
``trio.fail_after`` guard (added to every async test at collection); no
assertion on how long something took.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from transport_helpers import TRANSPORTS, Harness, make_adapter, prefix, register_suite, running

from transports import Server


@pytest.fixture(params=TRANSPORTS)
def kind(request: pytest.FixtureRequest) -> str:
    """The transport under test."""
    return str(request.param)


@pytest.fixture
async def harness(kind: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """A running server with the suite's clients registered, over ``kind``."""
    adapter = make_adapter(kind, tmp_path)
    server = Server([adapter])
    register_suite(server, prefix(kind))
    async with running(server):
        yield Harness(kind, server, adapter)
