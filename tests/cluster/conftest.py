"""Fixtures for the cluster tests: a Redis to share, private ones to kill, a fresh prefix.

Under ``CI=true`` a missing ``redis-server`` fails these tests (``.ci/run``
installs it); elsewhere they skip and say why.  ``.ci/run`` starts one
private server and exports its URL as ``PUBSUB_RPC_TEST_REDIS_URL``; without
it the first test that needs Redis starts one for the session.  Tests that
kill Redis start their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from cluster_helpers import RedisProcess, redis_server_binary


@pytest.fixture(scope="session")
def shared_redis_url() -> Iterator[str]:
    """The Redis every test may share (each under its own prefix)."""
    url = os.environ.get("PUBSUB_RPC_TEST_REDIS_URL")
    if url:
        yield url
        return
    redis = RedisProcess(redis_server_binary())
    redis.start_blocking()
    try:
        yield redis.url
    finally:
        redis.stop()


@pytest.fixture
def prefix() -> str:
    """A channel prefix no other test uses, so tests sharing a Redis never meet."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisProcess]:
    """A Redis of this test's own, to kill and restart."""
    redis = RedisProcess(redis_server_binary())
    await redis.start()
    try:
        yield redis
    finally:
        redis.stop()
