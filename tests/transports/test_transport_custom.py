"""Custom transports are first-class: an Adapter of your own, and clients built on the core alone."""

from __future__ import annotations

import socket

import trio
from transport_helpers import collect, running

from pubsub_rpc import ClientConnection, ClientInfo, Dialect, EventReceived, PublishResult, RequestSucceeded
from transports import Adapter, Server, inprocess, open_client

# -- a whole transport in well under 30 lines --------------------------------------------


class SocketPairAdapter(Adapter):
    """Serves the far end of every socketpair it makes."""

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.server = server
        task_status.started()

    def connect(self) -> trio.SocketStream:
        near, far = socket.socketpair()
        served = trio.SocketStream(trio.socket.from_stdlib_socket(far))
        self.server.handler_nursery.start_soon(self.server.serve_stream, served)
        return trio.SocketStream(trio.socket.from_stdlib_socket(near))


# -- its use -------------------------------------------------------------------------------


async def test_custom_adapter_over_a_socketpair() -> None:
    adapter = SocketPairAdapter()
    server = Server([adapter, inprocess.Adapter()])
    server.register_client(ClientInfo("custom"))
    async with (
        running(server),
        open_client(adapter.connect(), client_id="custom") as client,
        inprocess.connect(server) as neighbour,
    ):
        subscription = await client.subscribe("hello")
        assert await neighbour.publish("hello", "over a socketpair") == 1
        assert await collect(subscription, 1) == ["over a socketpair"]


async def test_core_only_client_with_blocking_sockets_in_a_thread() -> None:
    """A client with no trio at all: pubsub_rpc.ClientConnection over a blocking socket."""
    adapter = SocketPairAdapter()
    server = Server([adapter, inprocess.Adapter()])
    server.register_client(ClientInfo("threaded"))
    near, far = socket.socketpair()
    near.settimeout(10)

    def blocking_client() -> list[object]:
        connection = ClientConnection(client_id="threaded", dialect=Dialect.PUB_SUB)
        outcomes: list[object] = []

        def read_until(count: int) -> None:
            while len(outcomes) < count:
                chunk = near.recv(65536)
                assert chunk, "server closed"
                outcomes.extend(connection.receive_data(chunk))

        near.sendall(connection.subscribe("news")[1])
        read_until(1)
        trio.from_thread.run_sync(ready.set)
        read_until(2)  # the event trio publishes
        near.sendall(connection.publish("news", "from the thread")[1])
        read_until(3)
        near.close()
        return outcomes

    ready = trio.Event()
    async with running(server), inprocess.connect(server) as publisher:
        server.handler_nursery.start_soon(
            server.serve_stream, trio.SocketStream(trio.socket.from_stdlib_socket(far))
        )
        async with trio.open_nursery() as nursery:
            result: list[list[object]] = []

            async def run_thread() -> None:
                result.append(await trio.to_thread.run_sync(blocking_client))

            nursery.start_soon(run_thread)
            news = await publisher.subscribe("news")
            await ready.wait()
            assert await publisher.publish("news", "from trio") == 1
            assert await collect(news, 1) == ["from the thread"]
    subscribed, event, published = result[0]
    assert isinstance(subscribed, RequestSucceeded)
    assert isinstance(event, EventReceived) and event.event.value == "from trio"
    assert isinstance(published, RequestSucceeded)
    assert published.result == PublishResult(listeners=1, client_id="threaded")
