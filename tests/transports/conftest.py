"""Fixtures for the transport tests: a running server per test, reachable over any transport.

Rules every test here follows: real sockets on 127.0.0.1 port 0, socket
files under ``tmp_path``, real pipes and subprocesses; an absolute
``trio.fail_after`` guard (added to every async test at collection); no
assertion on how long something took.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from transport_helpers import HERE, TRANSPORTS, Harness, make_adapter, prefix, register_suite, running

from transports import Server

#: No transport test may hang: each gets this many seconds, far more than it needs.
GUARD_SECONDS = 30


def _guarded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(GUARD_SECONDS):
            await test(*args, **kwargs)

    return guarded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every async test of this directory under a ``trio.fail_after`` guard.

    A fixture cannot do it: pytest-trio runs fixtures in tasks of their own,
    so a cancel scope opened in one does not cover the test.
    """
    for item in items:
        in_here = isinstance(item, pytest.Function) and HERE in item.path.parents
        if in_here and inspect.iscoroutinefunction(item.obj):
            item.obj = _guarded(item.obj)


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
