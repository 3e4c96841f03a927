"""Suite-wide rule: every async test runs under an absolute ``trio.fail_after`` guard.

A fixture cannot do it (pytest-trio runs fixtures in tasks of their own, so a
cancel scope opened in one does not cover the test); wrapping each test
function at collection does.  No test may hang CI, whatever it exercises.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

# pytester runs small user test files against the pytest plugin
# (tests/plugin); pytest reads pytest_plugins only from top-level conftests.
pytest_plugins = ["pytester"]

#: Seconds any one async test may take: far more than each needs (the browser
#: tests start Chromium; the hardening faults kill and restart processes).
GUARD_SECONDS = 60


def _guarded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(GUARD_SECONDS):
            await test(*args, **kwargs)

    return guarded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Wrap every async test function in the guard."""
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _guarded(item.obj)
