"""Events cross transports: one server, a TCP publisher, subscribers on every other transport."""

from __future__ import annotations

from pathlib import Path

import trio
from transport_helpers import collect, running, serve_child

from pubsub_rpc import ClientInfo
from transports import Server, inprocess, tcp, unix


async def test_tcp_publisher_reaches_unix_stdio_and_inprocess_subscribers(tmp_path: Path) -> None:
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    unix_adapter = unix.Adapter(tmp_path / "s.sock")
    server = Server([tcp_adapter, unix_adapter, inprocess.Adapter()])
    for name in ("publisher", "unix-sub", "child", "observer"):
        server.register_client(ClientInfo(name))
    async with running(server), trio.open_nursery() as nursery:
        async with (
            tcp.connect("127.0.0.1", tcp_adapter.port, client_id="publisher") as publisher,
            unix.connect(unix_adapter.path, client_id="unix-sub") as unix_client,
            inprocess.connect(server) as inproc_client,
            tcp.connect("127.0.0.1", tcp_adapter.port, client_id="observer") as observer,
        ):
            ready = await observer.subscribe("child::ready")
            echoed = await observer.subscribe("child::got")
            unix_news = await unix_client.subscribe("news")
            inproc_news = await inproc_client.subscribe("news")
            # The stdio subscriber is a real process whose pipes the server serves.
            process = await serve_child(server, nursery, "child_stdio_client.py", "child", "news")
            assert await collect(ready, 1) == ["news"]

            value = {"headline": "cross-transport", "n": [1, 2.5, None, True]}
            assert await publisher.publish("news", value) == 3
            assert await collect(unix_news, 1) == [value]
            assert await collect(inproc_news, 1) == [value]
            assert await collect(echoed, 1) == [value]

            # And back: the in-process client publishes, the others hear it.
            assert await inproc_client.publish("news", "from in-process") == 2
            assert await collect(unix_news, 1) == ["from in-process"]
            assert await collect(echoed, 1) == ["from in-process"]
        process.kill()
