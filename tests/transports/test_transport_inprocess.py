"""The in-process flavour at the object level: the isolate envelope, exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from transport_helpers import collect, running

from pubsub_rpc import ClientInfo, ConnectionClosedError, ErrorCode
from transports import Server, inprocess

P = "isolate_test::"


class Raw:
    """A hand-driven in-process connection: send envelopes, receive objects."""

    def __init__(self, adapter: inprocess.Adapter) -> None:
        self.send, self.receive = adapter.open_channels()
        self.id = ""
        self.counter = 0

    async def handshake(self) -> dict[str, Any]:
        message = await self.receive.receive()
        assert isinstance(message, dict)
        self.id = message["id"]
        return message

    async def request(self, method: Any, params: Any, **envelope: Any) -> Any:
        self.counter += 1
        message = {"id": self.id, "request_id": f"R{self.counter}", "method": method, "params": params}
        message.update(envelope)
        await self.send.send(message)
        return await self.receive.receive()


@pytest.fixture
async def adapter() -> AsyncIterator[inprocess.Adapter]:
    adapter = inprocess.Adapter()
    server = Server([adapter])
    for name in ("secret", "secret2"):
        server.register_client(ClientInfo(P + name))
    server.register_client(ClientInfo(P + "no_publish", can_publish=False))
    async with running(server):
        yield adapter


async def test_handshake_and_answers(adapter: inprocess.Adapter) -> None:
    a, b = Raw(adapter), Raw(adapter)
    hello = await a.handshake()
    assert hello == {"status": True, "id": a.id} and len(a.id) == 36
    await b.handshake()
    subscribed = await a.request("subscribe", {"client_id": P + "secret2", "event_name": "foo"})
    subscription_id = subscribed["result"]["subscription_id"]
    assert subscribed == {
        "status": True,
        "request_id": "R1",
        "result": {"subscription_id": subscription_id, "client_id": P + "secret2"},
    }
    published = await b.request("publish", {"client_id": P + "secret", "event_name": "foo", "value": "bar"})
    assert published == {
        "status": True,
        "request_id": "R1",
        "result": {"listeners": 1, "client_id": P + "secret"},
    }
    assert await a.receive.receive() == ["foo", "bar", subscription_id]
    unsubscribed = await a.request(
        "unsubscribe", {"client_id": P + "secret2", "subscription_id": subscription_id}
    )
    assert unsubscribed == {"status": True, "request_id": "R2", "result": {}}
    refused = await b.request("publish", {"client_id": P + "no_publish", "event_name": "foo", "value": "bar"})
    assert refused == {
        "status": False,
        "request_id": "R2",
        "error_message": "You are not allowed to publish events.",
        "error_code": int(ErrorCode.PUBLISH_FORBIDDEN),
    }


@pytest.mark.parametrize(
    ("method", "params", "text"),
    [
        ("publish", {"client_id": None, "event_name": "foo"}, "Expected client_id, event_name, and value."),
        (
            "publish",
            {"client_id": 7, "event_name": "foo", "value": 1},
            "Expected client_id, event_name, and value.",
        ),
        ("publish", {"event_name": 3, "value": 1}, "Expected client_id, event_name, and value."),
        ("subscribe", {"client_id": None}, "Expected client_id, and event_name."),
        (
            "unsubscribe",
            {"client_id": None, "subscription_id": 5},
            "Expected client_id, and subscription_id.",
        ),
        ("shout", {}, 'Unrecognized method "shout". Or, you omitted id, request_id, method, or params.'),
        (None, {}, 'Unrecognized method "null". Or, you omitted id, request_id, method, or params.'),
        (
            "publish",
            "not a map",
            'Unrecognized method "publish". Or, you omitted id, request_id, method, or params.',
        ),
        ("unsubscribe", {"subscription_id": "nope"}, "The specified subscription does not exist."),
    ],
)
async def test_validation_texts(adapter: inprocess.Adapter, method: Any, params: Any, text: str) -> None:
    raw = Raw(adapter)
    await raw.handshake()
    answer = await raw.request(method, params)
    assert answer["status"] is False and answer["request_id"] == "R1"
    assert answer["error_message"] == text


async def test_wrong_connection_id_is_answered_and_unanswerable_messages_dropped(
    adapter: inprocess.Adapter,
) -> None:
    raw = Raw(adapter)
    await raw.handshake()
    await raw.send.send("not a map")
    await raw.send.send({"id": raw.id, "method": "publish", "params": {}})  # no request_id: nothing to answer
    answer = await raw.request("publish", {"event_name": "x", "value": 1}, id="somebody else")
    assert answer["request_id"] == "R1"
    assert answer["error_message"].startswith('Unrecognized method "publish".')


async def test_trusted_ad_hoc_identity_and_value_copies(adapter: inprocess.Adapter) -> None:
    async with (
        inprocess.connect(adapter) as one,
        inprocess.connect(adapter) as two,
        inprocess.connect(adapter) as me,
    ):
        first, second = await one.subscribe("data"), await two.subscribe("data")
        value = {"items": [1, 2]}
        assert await me.publish("data", value) == 2
        assert me.client_id is not None and me.client_id != one.client_id
        [got_one], [got_two] = await collect(first, 1), await collect(second, 1)
        assert got_one == got_two == value
        got_one["items"].append(3)  # each subscriber owns its copy
        assert got_two == value == {"items": [1, 2]}
        with pytest.raises(TypeError):
            await me.publish("data", {"not json": {1, 2}})


async def test_connections_opened_before_start_wait_for_it() -> None:
    adapter = inprocess.Adapter()
    server = Server([adapter])
    server.register_client(ClientInfo("early"))
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def early_client() -> None:
            async with inprocess.connect(adapter, client_id="early") as client:
                assert await client.publish("x", 1) == 0
            done.set()

        nursery.start_soon(early_client)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        await nursery.start(server.serve)
        await done.wait()
        await server.aclose()


async def test_closing_message_then_end_of_channel() -> None:
    adapter = inprocess.Adapter()
    server = Server([adapter])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        raw = Raw(adapter)
        await raw.handshake()
        await server.aclose()
        assert await raw.receive.receive() == {
            "status": False,
            "closing": True,
            "error_code": int(ErrorCode.SERVER_CLOSING),
            "error_message": "The server is shutting down.",
        }
        with pytest.raises(trio.EndOfChannel):
            await raw.receive.receive()
    with pytest.raises(ConnectionClosedError, match="not accepting"):
        adapter.open_channels()


async def test_keepalive_is_quiet_while_the_server_answers() -> None:
    adapter = inprocess.Adapter()
    server = Server([adapter])
    for name in ("kept-alive", "watcher"):
        server.register_client(ClientInfo(name))
    with trio.fail_after(10):
        async with (
            running(server),
            inprocess.connect(adapter, client_id="kept-alive", keepalive=0.1) as client,
            inprocess.connect(adapter, client_id="watcher") as watcher,
        ):
            assert client.keepalive == 0.1
            values = await watcher.subscribe("k")
            await trio.sleep(0.5)  # five intervals of pings, all answered
            assert not client.closed
            assert await client.publish("k", 1) == 1
            assert await values.__anext__() == 1


async def test_keepalive_notices_an_in_process_server_that_hangs(nursery: trio.Nursery) -> None:
    adapter = inprocess.Adapter()

    async def hung_server() -> None:
        # Accepts one connection and takes its requests, never answering one.
        receive, send = await adapter._accept_receive.receive()
        await send.send({"status": True, "id": "hung-1"})
        async for _ in receive:
            pass

    nursery.start_soon(hung_server)
    with trio.fail_after(10):
        async with inprocess.connect(adapter, client_id="x", keepalive=0.2, request_timeout=60) as client:
            with pytest.raises(ConnectionClosedError, match=r"keep-alive ping within 0\.1 seconds"):
                await client.ping()  # no answer will come; the request timeout is a minute
            assert client.closed
