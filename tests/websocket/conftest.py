"""Fixtures for the WebSocket tests: a running server with a WebSocket adapter, in both dialects.

The transport scenarios of tests/transports run here over WebSockets too, so
that directory's helpers are importable from here.  Every async test gets an
absolute ``trio.fail_after`` guard, as there.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

HERE = Path(__file__).resolve().parent
TRANSPORT_TESTS = HERE.parent / "transports"
if str(TRANSPORT_TESTS) not in sys.path:
    sys.path.insert(0, str(TRANSPORT_TESTS))

from transport_helpers import prefix, register_suite, running  # noqa: E402
from websocket_helpers import WebSocketHarness  # noqa: E402

from transports import Server, websocket  # noqa: E402

#: No test here may hang: each gets this many seconds (the browser test needs a few to start Chromium).
GUARD_SECONDS = 60


def _guarded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(GUARD_SECONDS):
            await test(*args, **kwargs)

    return guarded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every async test of this directory under a ``trio.fail_after`` guard."""
    for item in items:
        in_here = isinstance(item, pytest.Function) and HERE in item.path.parents
        if in_here and inspect.iscoroutinefunction(item.obj):
            item.obj = _guarded(item.obj)


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
