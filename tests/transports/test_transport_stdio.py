"""stdio with real subprocesses: ``stdio.spawn`` a server, and a server that serves a spawned client."""

from __future__ import annotations

from pathlib import Path

import pytest
from transport_helpers import child_env, collect, python_argv

from pubsub_rpc import ADHOC_PREFIX, RequestError
from transports import stdio, unix

PREFIX = "stdio_test::"


async def test_spawned_server_speaks_over_pipes_and_shares_its_broker(tmp_path: Path) -> None:
    socket_path = str(tmp_path / "child.sock")
    argv = python_argv("child_stdio_server.py", PREFIX, socket_path)
    async with stdio.spawn(argv, env=child_env()) as client:
        # Trusted over stdio: no id, an ad-hoc identity.
        assert await client.publish("hey", "bye") == 0
        assert client.client_id is not None and client.client_id.startswith(ADHOC_PREFIX)
        subscription = await client.subscribe("foo")
        async with unix.connect(socket_path, client_id=PREFIX + "secret") as neighbour:
            assert await neighbour.publish("foo", {"via": "unix"}) == 1
            news = await neighbour.subscribe("news")
            assert await client.publish("news", [1, 2, 3]) == 1
            assert await collect(news, 1) == [[1, 2, 3]]
        assert await collect(subscription, 1) == [{"via": "unix"}]
        with pytest.raises(RequestError, match="Unrecognized client ID"):
            async with stdio.spawn(python_argv("child_stdio_server.py", PREFIX), env=child_env(),
                                   client_id=PREFIX + "invalid") as stranger:  # fmt: skip
                await stranger.publish("foo", 1)
    # Closing the pipes made the child shut down by itself (spawn waited for it).
    assert not Path(socket_path).exists()


async def test_spawned_server_rejections_use_the_original_texts() -> None:
    argv = python_argv("child_stdio_server.py", PREFIX)
    async with stdio.spawn(argv, env=child_env(), client_id=PREFIX + "no_subscribe") as client:
        with pytest.raises(RequestError) as caught:
            await client.subscribe("foo")
        assert caught.value.message == "You are not allowed to subscribe to events."
        assert await client.publish("foo", "allowed") == 0
