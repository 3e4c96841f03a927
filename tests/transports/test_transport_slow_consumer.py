"""A peer that stops reading is cut off by the stated policy; everyone else carries on."""

from __future__ import annotations

import trio
from transport_helpers import collect, running, wait_until

from pubsub_rpc import ClientInfo
from transports import Server, tcp


async def test_slow_consumer_is_disconnected_and_the_rest_continue() -> None:
    adapter = tcp.Adapter("127.0.0.1", 0)
    # A small outbound bound and flush grace, so the test needs little data and no long waits.
    server = Server([adapter], max_outbound=64 * 1024, close_timeout=0.2)
    for name in ("publisher", "stalled", "healthy"):
        server.register_client(ClientInfo(name))
    async with (
        running(server),
        tcp.connect("127.0.0.1", adapter.port, client_id="publisher") as publisher,
        tcp.connect("127.0.0.1", adapter.port, client_id="healthy") as healthy,
    ):
        stalled = await trio.open_tcp_stream("127.0.0.1", adapter.port)
        request = b'{"jsonrpc":"2.0","method":"subscribe","params":{"client_id":"stalled","event_name":"big"},"id":1}\n'
        await stalled.send_all(request)
        assert b'"id":1' in await stalled.receive_some(65536)
        values = await healthy.subscribe("big")
        # From here on the stalled peer reads nothing.  The kernel's socket
        # buffers take a few MB first; then its queue passes 64 KiB.
        chunk = "x" * 10_000
        published = 0
        while (listeners := await publisher.publish("big", chunk)) == 2:
            published += 1
            assert await collect(values, 1) == [chunk]
        assert listeners == 1  # the stalled subscription was dropped at once
        await wait_until(lambda: server.connection_count == 2)  # and its connection closed after the grace
        assert await publisher.publish("big", "still flowing") == 1
        assert await collect(values, 2) == [chunk, "still flowing"]
        assert published > 0
        await stalled.aclose()
