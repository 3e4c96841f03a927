"""Every async hardening test runs under an absolute ``trio.fail_after`` guard: none may hang.

A fixture cannot do it (pytest-trio runs fixtures in tasks of their own, so a cancel scope
opened in one does not cover the test); wrapping each test function at collection does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

HERE = Path(__file__).resolve().parent

#: Seconds any one hardening test may take, far more than each needs.
GUARD_SECONDS = 60


def _guarded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(GUARD_SECONDS):
            await test(*args, **kwargs)

    return guarded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Wrap every async test of this directory in the guard."""
    for item in items:
        in_here = isinstance(item, pytest.Function) and HERE in item.path.parents
        if in_here and inspect.iscoroutinefunction(item.obj):
            item.obj = _guarded(item.obj)
