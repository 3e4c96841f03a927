"""Fixtures for the WebSocket tests: a running server with a WebSocket adapter, in both dialects.

The transport scenarios of tests/transports run here over WebSockets too, so
that directory's helpers are importable from here.  Every async test gets an
absolute ``trio.fail_after`` guard, as there.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TRANSPORT_TESTS = HERE.parent / "transports"
if str(TRANSPORT_TESTS) not in sys.path:
    sys.path.insert(0, str(TRANSPORT_TESTS))

from transport_helpers import prefix, register_suite, running  # noqa: E402
from websocket_helpers import WebSocketHarness  # noqa: E402

from transports import Server, websocket  # noqa: E402


@pytest.fixture(params=["websocket", "websocket-pub_sub"])
def kind(request: pytest.FixtureRequest) -> str:
    """The dialect the WebSocket clients speak: standard JSON-RPC, or the original pub_sub."""
    return str(request.param)


@pytest.fixture
async def harness(kind: str) -> AsyncIterator[WebSocketHarness]:
    """A running server with the suite's clients registered, reached over WebSockets."""
    adapter = websocket.Adapter("127.0.0.1", 0, trusted=True)
    server = Server([adapter])
    register_suite(server, prefix(kind))
    async with running(server):
        yield WebSocketHarness(kind, server, adapter)
