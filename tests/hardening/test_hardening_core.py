"""Core-level guarantees behind the transport tests: exact integers, error texts that never
raise, and a bug in a handler costing one answer (or one connection), never the server."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import trio
from hardening_helpers import HOSTILE, RawPeer, make_server, request, running, wait_until, witness

import transports._server as transport_server
from pubsub_rpc import (
    BadFrame,
    Broker,
    ClientInfo,
    ErrorCode,
    FrameDecoder,
    InProcessConnection,
    RequestError,
    ServerConnection,
)
from pubsub_rpc._dispatch import OPERATIONS, describe
from transports import Server, inprocess

TOO_BIG = [b"18446744073709551616", b"-9223372036854775809", b"123456789012345678901234567890"]
EXACT = [b"18446744073709551615", b"-9223372036854775808", b"1000000000000000000", b"0", b"-1"]


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("number", TOO_BIG)
@pytest.mark.parametrize("framing", ["newline", "content-length"])
def test_out_of_range_integers_are_refused_however_the_bytes_are_split(number: bytes, framing: str) -> None:
    def frame(body: bytes) -> bytes:
        return body + b"\n" if framing == "newline" else b"Content-Length: %d\r\n\r\n%b" % (len(body), body)

    stream = frame(b'{"a":[1,"x",' + number + b'],"b":2}') + frame(b'{"a":[1,"x",7],"b":2}')
    for cut in range(len(stream)):
        decoder = FrameDecoder(exact_integers=True)
        frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert len(frames) == 2
        assert isinstance(frames[0], BadFrame) and "integer out of range" in frames[0].detail
        assert frames[1] == {"a": [1, "x", 7], "b": 2}


@pytest.mark.parametrize("number", EXACT)
def test_integers_in_range_and_look_alikes_pass(number: bytes) -> None:
    text = b'{"a":' + number + b',"s":"12345678901234567890123","f":1.00000000000000000000001,"e":1e25}'
    decoder = FrameDecoder(exact_integers=True)
    (value,) = decoder.feed(text + b"\n")
    assert value == {"a": int(number), "s": "12345678901234567890123", "f": 1.0, "e": 1e25}


def test_exact_integers_is_a_server_choice() -> None:
    (value,) = FrameDecoder().feed(b"[18446744073709551616]\n")
    assert value == [float(2**64)]  # the client side's decoder is lenient, as orjson is


@pytest.mark.parametrize(
    "value",
    [
        ["x"] * 1000,
        [[[[]]]],
        nested(600),  # deeper than orjson writes
        nested(1500),  # deeper than Python's repr manages
        {1, 2},  # not JSON at all (an in-process caller)
        2**70,
        "é" * 100,
    ],
    ids=["long", "nested", "deep", "deeper", "set", "huge int", "unicode"],
)
def test_describe_never_raises_and_stays_short(value: Any) -> None:
    text = describe(value)
    assert len(text) <= 80


def test_describe_shows_the_prefix_of_a_deep_value() -> None:
    assert describe(nested(600)) == "[" * 77 + "..."
    assert describe(orjson.loads('{"k":' * 300 + "1" + "}" * 300)) == ('{"k":' * 16)[:77] + "..."


def test_a_bug_in_an_operation_costs_one_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise KeyError("client-s3cret")

    monkeypatch.setitem(OPERATIONS, "ping", broken)
    broker = Broker()
    broker.register_client(ClientInfo("client-s3cret"))
    broker.start()
    connection = ServerConnection(broker)
    internal = {"code": -32603, "message": "Internal error."}
    connection.receive_data(
        b'{"jsonrpc":"2.0","method":"ping","id":7}\n'
        b'{"jsonrpc":"2.0","method":"ping","params":{"request_id":"r"}}\n'
        b'{"jsonrpc":"2.0","method":"ping"}\n'
        b'[{"jsonrpc":"2.0","method":"ping","id":8},{"jsonrpc":"2.0","method":"nothing","id":9}]\n'
    )
    frames = FrameDecoder().feed(connection.data_to_send())
    assert frames == [
        {"jsonrpc": "2.0", "error": internal, "id": 7},
        {
            "jsonrpc": "2.0",
            "method": "r",
            "params": {
                "status": False,
                "request_id": "r",
                "error_message": "Internal error.",
                "error_code": -32603,
            },
        },
        [
            {"jsonrpc": "2.0", "error": internal, "id": 8},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": 'Unknown method "nothing".'}, "id": 9},
        ],
    ]
    assert connection.internal_errors == 4  # the plain notification too, unanswered
    # The connection carries on, and the log names the place, never the request or the text.
    connection.receive_data(request("subscribe", {"client_id": "client-s3cret", "event_name": "e"}))
    assert b"subscription_id" in connection.data_to_send()
    assert "KeyError" in caplog.text and "client-s3cret" not in caplog.text


async def test_a_bug_that_escapes_costs_one_connection_never_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    original = transport_server._StreamConnection.receive_data

    def receive_data(self: Any, data: bytes) -> None:
        if data.startswith(b"BOOM"):
            raise RuntimeError("a bug")
        original(self, data)

    monkeypatch.setattr(transport_server._StreamConnection, "receive_data", receive_data)
    server, adapter = make_server()
    async with running(server), witness(adapter):
        victim = await RawPeer.connect(adapter.port)
        await victim.send(request("subscribe", {"client_id": HOSTILE, "event_name": "victim"}))
        await victim.read_one()
        await victim.send(b"BOOM\n")
        assert await victim.read_until_closed() == []
        await trio.sleep(0)
        assert server.stats.internal_errors == 1
        assert server.broker.listener_count("victim") == 0  # its subscription went with it
    assert "RuntimeError" in caplog.text


async def test_the_server_adds_up_request_faults_as_connections_close(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise KeyError("a bug")

    monkeypatch.setitem(OPERATIONS, "ping", broken)
    server, adapter = make_server()
    async with running(server):
        peer = await RawPeer.connect(adapter.port)
        for request_id in (1, 2):
            await peer.send(request("ping", request_id=request_id))
            assert (await peer.read_one())["error"]["code"] == -32603
        await peer.aclose()
        await wait_until(lambda: server.connection_count == 0)
        assert server.stats.request_faults == 2
        assert server.stats.internal_errors == 0  # the connection itself carried on


def test_publish_of_a_value_too_deep_to_encode_is_refused_with_or_without_subscribers() -> None:
    broker = Broker()
    broker.register_client(ClientInfo("p"))
    broker.register_client(ClientInfo("s"))
    broker.start()
    publisher, subscriber = ServerConnection(broker), ServerConnection(broker)
    deep = b"[" * 300 + b"]" * 300
    frame = b'{"jsonrpc":"2.0","method":"publish","params":{"client_id":"p","event_name":"e","value":%s},"id":1}\n'
    expected = {
        "jsonrpc": "2.0",
        "error": {
            "code": -32602,
            "message": 'Parameter "value" for method "publish" cannot be encoded as JSON: Recursion limit reached.',
        },
        "id": 1,
    }
    publisher.receive_data(frame % deep)
    assert orjson.loads(publisher.data_to_send()) == expected
    subscriber.receive_data(request("subscribe", {"client_id": "s", "event_name": "e"}))
    subscriber.data_to_send()
    publisher.receive_data(frame % deep)
    assert orjson.loads(publisher.data_to_send()) == expected
    assert subscriber.data_to_send() == b""
    assert broker.events_published == 0


def test_an_in_process_request_that_hits_a_bug_is_answered_and_the_connection_carries_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = Broker()
    broker.register_client(ClientInfo("client-s3cret"))
    broker.start()

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise KeyError("client-s3cret")

    monkeypatch.setattr(broker, "publish", broken)
    connection = InProcessConnection(broker, connection_id="c")
    connection.data_to_send()  # the handshake
    publish = {"client_id": "client-s3cret", "event_name": "e", "value": 1}
    connection.receive_data([{"id": "c", "request_id": "r1", "method": "publish", "params": publish}])
    assert connection.data_to_send() == [
        {"status": False, "request_id": "r1", "error_message": "Internal error.", "error_code": -32603}
    ]
    assert connection.internal_errors == 1
    # The connection carries on, and the log names the place, never the request or the text.
    subscribe = {"client_id": "client-s3cret", "event_name": "e"}
    connection.receive_data([{"id": "c", "request_id": "r2", "method": "subscribe", "params": subscribe}])
    (answer,) = connection.data_to_send()
    assert answer["status"] is True and answer["request_id"] == "r2"
    assert "KeyError" in caplog.text and "client-s3cret" not in caplog.text


async def test_in_process_request_faults_are_added_up_when_the_connection_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise KeyError("a bug")

    adapter = inprocess.Adapter()
    server = Server([adapter])
    async with running(server):
        monkeypatch.setattr(server.broker, "publish", broken)
        async with inprocess.connect(adapter) as client:
            for _ in range(2):
                with pytest.raises(RequestError) as failed:
                    await client.publish("e", 1)
                assert failed.value.code == ErrorCode.INTERNAL_ERROR
            await client.ping()  # still connected
        await wait_until(lambda: server.connection_count == 0)
        assert server.stats.request_faults == 2
        assert server.stats.internal_errors == 0  # the connection itself carried on
