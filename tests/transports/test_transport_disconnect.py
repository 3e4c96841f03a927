"""A client that goes away leaves nothing behind: its subscriptions are dropped at once."""

from __future__ import annotations

import signal

import trio
from transport_helpers import Harness, collect, prefix, running, serve_child, wait_until

from pubsub_rpc import ClientInfo
from transports import Server, inprocess, tcp


async def test_clean_disconnect_removes_subscriptions(harness: Harness) -> None:
    p = prefix(harness.kind)
    broker = harness.server.broker
    async with harness.connect(p + "secret") as publisher, harness.connect(p + "secret2") as staying:
        staying_foo = await staying.subscribe("foo")
        async with harness.connect(p + "secret3") as leaving:
            await leaving.subscribe("foo")
            await leaving.subscribe("foo")
            assert await publisher.publish("foo", 1) == 3
        await wait_until(lambda: broker.subscription_count == 1)
        assert await publisher.publish("foo", 2) == 1
        assert await collect(staying_foo, 2) == [1, 2]


async def test_killed_subprocess_client_leaves_nothing_behind() -> None:
    server = Server([inprocess.Adapter(), tcp.Adapter("127.0.0.1", 0)])
    server.register_client(ClientInfo("child"))
    server.register_client(ClientInfo("publisher"))
    async with (
        running(server),
        trio.open_nursery() as nursery,
        inprocess.connect(server, client_id="publisher") as publisher,
        inprocess.connect(server) as bystander,
    ):
        ready = await publisher.subscribe("child::ready")
        own = await publisher.subscribe("news")  # own events never come back
        heard = await bystander.subscribe("news")
        process = await serve_child(server, nursery, "child_stdio_client.py", "child", "news")
        assert await collect(ready, 1) == ["news"]
        assert server.broker.subscription_count == 4
        assert await publisher.publish("news", "before") == 2

        process.send_signal(signal.SIGKILL)
        await process.wait()
        await wait_until(lambda: server.connection_count == 2)
        assert server.broker.subscription_count == 3
        assert await publisher.publish("news", "after") == 1
        assert await collect(heard, 2) == ["before", "after"]
        assert own.buffered == 0
