"""Client behaviour at the edges: timeouts, dropped connections, slow subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
import trio
from transport_helpers import Harness, collect, prefix

from pubsub_rpc import ConnectionClosedError, FrameDecoder, RequestTimeoutError
from transports import SubscriptionOverflowError, tcp


@pytest.fixture
async def fake_server(
    nursery: trio.Nursery,
) -> AsyncIterator[tuple[int, trio.MemoryReceiveChannel[trio.SocketStream]]]:
    """A TCP listener whose connections the test drives by hand."""
    send, receive = trio.open_memory_channel[trio.SocketStream](1)

    async def hand_over(stream: trio.SocketStream) -> None:
        await send.send(stream)
        await trio.sleep_forever()  # serve_tcp closes the stream when this returns

    listeners = await nursery.start(trio.serve_tcp, hand_over, 0)
    yield listeners[0].socket.getsockname()[1], receive


async def read_requests(
    stream: trio.SocketStream, decoder: FrameDecoder, count: int
) -> list[dict[str, object]]:
    requests: list[dict[str, object]] = []
    while len(requests) < count:
        requests.extend(decoder.feed(await stream.receive_some(65536)))  # type: ignore[arg-type]
    return requests


async def test_request_timeout(fake_server: tuple[int, trio.MemoryReceiveChannel[trio.SocketStream]]) -> None:
    port, accepted = fake_server
    async with tcp.connect("127.0.0.1", port, client_id="x", request_timeout=0.2) as client:
        peer = await accepted.receive()  # reads nothing, answers nothing
        with pytest.raises(RequestTimeoutError) as caught:
            await client.publish("foo", 1)
        assert caught.value.message == 'The server did not answer the "publish" request within 0.2 seconds.'
        # The late answer is ignored, and the connection stays usable.
        decoder = FrameDecoder()
        [late] = await read_requests(peer, decoder, 1)
        await peer.send_all(
            orjson.dumps({"jsonrpc": "2.0", "result": {"listeners": 0}, "id": late["id"]}) + b"\n"
        )
        pinging = trio.Event()

        async def answer_ping() -> None:
            [ping] = await read_requests(peer, decoder, 1)
            await peer.send_all(orjson.dumps({"jsonrpc": "2.0", "result": {}, "id": ping["id"]}) + b"\n")
            pinging.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_ping)
            await client.ping()
        assert pinging.is_set()


async def test_dropped_connection_fails_pending_and_ends_subscriptions(
    fake_server: tuple[int, trio.MemoryReceiveChannel[trio.SocketStream]],
) -> None:
    port, accepted = fake_server
    async with tcp.connect("127.0.0.1", port, client_id="x") as client:
        peer = await accepted.receive()
        decoder = FrameDecoder()
        async with trio.open_nursery() as nursery:
            subscribing = nursery.start_soon
            result: list[object] = []

            async def subscribe() -> None:
                result.append(await client.subscribe("foo"))

            subscribing(subscribe)
            [request] = await read_requests(peer, decoder, 1)
            answer = {"subscription_id": "s1", "client_id": "x"}
            await peer.send_all(
                orjson.dumps({"jsonrpc": "2.0", "result": answer, "id": request["id"]}) + b"\n"
            )
        subscription = result[0]
        failures: list[str] = []

        async def publish() -> None:
            with pytest.raises(ConnectionClosedError) as caught:
                await client.publish("foo", "never answered")
            failures.append(caught.value.message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            nursery.start_soon(publish)
            await read_requests(peer, decoder, 2)
            await peer.aclose()  # the server vanishes with two requests pending
        assert failures == ["The server closed the connection."] * 2
        with pytest.raises(ConnectionClosedError):
            await collect(subscription, 1)
        assert client.closed
        with pytest.raises(ConnectionClosedError):
            await client.ping()


async def test_subscription_overflow_policy(harness: Harness) -> None:
    p = prefix(harness.kind)
    broker = harness.server.broker
    async with (
        harness.connect(p + "secret") as publisher,
        harness.connect(p + "secret2", subscription_buffer=5) as slow,
    ):
        slow_foo = await slow.subscribe("foo")
        slow_bar = await slow.subscribe("bar")
        for number in range(8):
            await publisher.publish("foo", number)
        await publisher.publish("bar", "still flowing")
        await slow.ping()  # everything published so far has reached the slow client
        await slow.ping()  # and its unsubscribe has been answered
        assert not slow_foo.active
        assert await publisher.publish("foo", "after") == 0  # unsubscribed at the server too
        values = []
        with pytest.raises(SubscriptionOverflowError) as caught:
            async for value in slow_foo:
                values.append(value)
        assert values == [0, 1, 2, 3, 4]  # what fitted is still delivered, then the error
        assert caught.value.message == (
            'The subscription to "foo" was ended: more than 5 values were waiting to be read.'
        )
        # The rest of the client carries on.
        assert await collect(slow_bar, 1) == ["still flowing"]
        assert await publisher.publish("bar", "again") == 1
        assert await collect(slow_bar, 1) == ["again"]
        assert broker.subscription_count == 1  # slow_bar


async def test_answers_before_a_broken_header_arrive_then_the_connection_ends() -> None:
    """A server that breaks its framing mid-read: what came first still counts."""
    import orjson

    from pubsub_rpc import ConnectionClosedError
    from transports import open_client

    client_side, server_side = trio.testing.memory_stream_pair()

    async def fake_server() -> None:
        request = await server_side.receive_some()
        key = orjson.loads(request.splitlines()[0])["id"]
        body = orjson.dumps({"jsonrpc": "2.0", "result": {}, "id": key})
        await server_side.send_all(
            b"Content-Length: %d\r\n\r\n%sContent-Length: -1\r\n\r\n" % (len(body), body)
        )

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake_server)
            answered = []
            with pytest.raises(ConnectionClosedError, match="broke the protocol"):
                async with open_client(client_side, client_id="x") as client:
                    await client.ping()  # answered before the damage
                    answered.append(True)
                    await client.ping()  # the connection is gone by now
            assert answered == [True]
