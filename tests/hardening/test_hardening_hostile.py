"""Hostile and broken input, over real sockets: each case gets its documented answer (or its
documented close), and a well-behaved publisher and subscriber on the same server keep
going throughout with every event accounted for (``Witness``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import trio
from hardening_helpers import (
    HOSTILE,
    LONG_ID,
    WITNESS_SUBSCRIBER,
    RawPeer,
    closing,
    error,
    make_server,
    request,
    running,
    wait_until,
    witness,
)

from pubsub_rpc import ErrorCode
from transports import Server, tcp

PARSE, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
BROKEN_FRAMING = "The connection's framing is broken beyond recovery."


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, tcp.Adapter]]:
    server, adapter = make_server()
    async with running(server):
        yield server, adapter


def _is_parse_error(frame: Any) -> bool:
    return (
        frame["id"] is None
        and frame["error"]["code"] == PARSE
        and frame["error"]["message"].startswith("Invalid JSON: ")
    )


# -- malformed frames: one answer each, the connection carries on ------------------------

SIMPLE_CASES: list[tuple[str, bytes, list[Any]]] = [
    (
        "wrong jsonrpc version",
        request("ping").replace(b'"2.0"', b'"1.0"'),
        [error(INVALID_REQUEST, 'Invalid JSON-RPC version "1.0", expected "2.0".', 1)],
    ),
    (
        "no jsonrpc member",
        b'{"method":"ping","id":1}\n',
        [error(INVALID_REQUEST, 'Request must contain a "jsonrpc" key.', 1)],
    ),
    (
        "no method",
        b'{"jsonrpc":"2.0","id":1}\n',
        [error(INVALID_REQUEST, 'Request must contain a "method" key.', 1)],
    ),
    (
        "non-string method",
        b'{"jsonrpc":"2.0","method":["ping"],"id":1}\n',
        [error(INVALID_REQUEST, 'Request method must be a string, but was ["ping"].', 1)],
    ),
    (
        "params neither array nor object",
        b'{"jsonrpc":"2.0","method":"publish","params":"x","id":1}\n',
        [error(INVALID_REQUEST, 'Request params must be an Array or an Object, but was "x".', 1)],
    ),
    (
        "JSON that is not an object or array",
        b'42 "x" null true\n',
        [error(INVALID_REQUEST, "Request must be an Array or an Object.")] * 4,
    ),
    (
        "empty batch",
        b"[]\n",
        [error(INVALID_REQUEST, "A batch must contain at least one request.")],
    ),
    (
        "batch of garbage",
        b'[1,"x",null,[]]\n',
        [
            [
                error(INVALID_REQUEST, f"A batch member must be an Object, but was {shown}.")
                for shown in ("1", '"x"', "null", "[]")
            ]
        ],
    ),
    (
        "batch over the limit",
        b"[" + b",".join([b'{"jsonrpc":"2.0","method":"ping","id":1}'] * 101) + b"]\n",
        [error(-32008, "A batch may contain at most 100 requests.")],
    ),
    (
        "duplicate keys: the last one counts",
        b'{"jsonrpc":"2.0","method":"publish","method":"ping","id":1,"id":2}\n',
        [{"jsonrpc": "2.0", "result": {}, "id": 2}],
    ),
    (
        "a response sent to the server",
        b'{"jsonrpc":"2.0","result":{},"id":7}\n',
        [error(INVALID_REQUEST, 'Request must contain a "method" key.', 7)],
    ),
]


@pytest.mark.parametrize(("name", "data", "expected"), SIMPLE_CASES, ids=[c[0] for c in SIMPLE_CASES])
async def test_malformed_requests_are_answered(
    served: tuple[Server, tcp.Adapter], name: str, data: bytes, expected: list[Any]
) -> None:
    _server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        await peer.send(data)
        assert await peer.read(len(expected)) == expected
        await peer.expect_nothing()
        await peer.ping()


PARSE_ERROR_CASES: list[tuple[str, bytes]] = [
    ("invalid UTF-8", b'{"jsonrpc":"2.0","method":"ping","id":1,"x":"\xff\xfe"}\n'),
    ("invalid UTF-8 in a key", b'{"\xc3\x28":1}\n'),
    ("a lone surrogate escape", b'{"jsonrpc":"2.0","method":"ping","id":1,"x":"\\ud800"}\n'),
    ("invalid JSON", b'{"jsonrpc":"2.0",,"method":"ping"}\n'),
    ("garbage", b"\x00\x01\x02hello\n"),
    ("a float beyond a double", b'{"jsonrpc":"2.0","method":"ping","id":1,"x":1e400}\n'),
    ("a negative float beyond a double", b'{"jsonrpc":"2.0","method":"ping","id":1,"x":-1e400}\n'),
    ("an integer beyond 64 bits", b'{"jsonrpc":"2.0","method":"ping","id":1,"x":18446744073709551616}\n'),
    ("an integer below -2**63", b'{"jsonrpc":"2.0","method":"ping","id":1,"x":-9223372036854775809}\n'),
    ("an id beyond 64 bits", b'{"jsonrpc":"2.0","method":"ping","id":123456789012345678901234567890}\n'),
    (
        "nesting beyond 1024 levels",
        b'{"jsonrpc":"2.0","method":"ping","id":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}\n",
    ),
]


@pytest.mark.parametrize(("name", "data"), PARSE_ERROR_CASES, ids=[c[0] for c in PARSE_ERROR_CASES])
async def test_undecodable_frames_get_a_parse_error(
    served: tuple[Server, tcp.Adapter], name: str, data: bytes
) -> None:
    _server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        await peer.send(data)
        answer = await peer.read_one()
        assert _is_parse_error(answer), answer
        await peer.expect_nothing()
        await peer.ping()


async def test_integers_at_the_edge_of_the_range_travel_exactly(served: tuple[Server, tcp.Adapter]) -> None:
    """The integers that are accepted arrive unchanged (none is rounded through a double)."""
    _server, adapter = served
    edge = [2**64 - 1, -(2**63), 2**53 + 1, 10**19, 0]
    async with witness(adapter), tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER) as sub:
        values = await sub.subscribe("edge")
        peer = await RawPeer.connect(adapter.port)
        await peer.send(request("publish", {"client_id": HOSTILE, "event_name": "edge", "value": edge}))
        assert await peer.read_one() == {
            "jsonrpc": "2.0",
            "result": {"listeners": 1, "client_id": HOSTILE},
            "id": 1,
        }
        assert await values.__anext__() == edge


# -- wrong params: every field of every method ----------------------------------------------

FIELDS = {
    "publish": ({"event_name": "e", "value": 1, "client_id": HOSTILE}, ("event_name", "client_id")),
    "subscribe": ({"event_name": "e", "client_id": HOSTILE}, ("event_name", "client_id")),
    "unsubscribe": ({"subscription_id": "s", "client_id": HOSTILE}, ("subscription_id", "client_id")),
}
BAD_VALUES: list[Any] = [5, 1.5, True, [], {}, ["x"], {"a": 1}]


def _wrong_param_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    cases = []
    for method, (good, fields) in FIELDS.items():
        for field in fields:
            values = [*BAD_VALUES, None] if field != "client_id" else BAD_VALUES
            for value in values:
                params = {**good, field: value}
                shown = orjson.dumps(value).decode()
                text = f'Parameter "{field}" for method "{method}" must be a string, but was {shown}.'
                cases.append((method, params, error(INVALID_PARAMS, text, 1)))
            params = {key: v for key, v in good.items() if key != field}
            if field != "client_id":
                text = f'Request for method "{method}" is missing required parameter "{field}".'
                cases.append((method, params, error(INVALID_PARAMS, text, 1)))
    missing_value = {"event_name": "e", "client_id": HOSTILE}
    text = 'Request for method "publish" is missing required parameter "value".'
    cases.append(("publish", missing_value, error(INVALID_PARAMS, text, 1)))
    text = 'Invalid parameters for method "ping".'
    cases.append(("ping", ["surplus"], error(INVALID_PARAMS, text, 1)))  # type: ignore[arg-type]
    return cases


WRONG_PARAMS = _wrong_param_cases()


async def test_params_of_the_wrong_type_for_every_field_of_every_method(
    served: tuple[Server, tcp.Adapter],
) -> None:
    _server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        for method, params, expected in WRONG_PARAMS:
            await peer.send(request(method, params))
            answer = await peer.read_one()
            if expected["error"]["message"].startswith("Invalid parameters"):
                answer["error"].pop("data", None)  # the library may add detail
            assert answer == expected, (method, params)
            # The same in the pub_sub dialect: the same text, as the original's failure answer.
            if isinstance(params, dict):
                await peer.send_json(
                    {"jsonrpc": "2.0", "method": method, "params": {**params, "request_id": "r"}}
                )
                failure = await peer.read_one()
                assert failure["method"] == "r"
                assert failure["params"]["status"] is False
                assert failure["params"]["error_message"] == expected["error"]["message"]
        await peer.expect_nothing()
    assert len(WRONG_PARAMS) > 40


# -- sizes and depths ------------------------------------------------------------------------


async def test_absurdly_long_strings(served: tuple[Server, tcp.Adapter]) -> None:
    server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        # Over the frame limit: skipped unparsed, never held in memory.
        huge = "x" * (2 * 1024 * 1024)
        await peer.send(request("publish", {"client_id": HOSTILE, "event_name": "e", "value": huge}))
        assert await peer.read_one() == error(-32006, "Frame too large: frame exceeds 1048576 bytes.")
        # Just under it: a valid request; its error echoes the text only to its sender.
        long_id = "i" * 900_000
        await peer.send(request("subscribe", {"client_id": long_id, "event_name": "e"}))
        assert await peer.read_one() == error(-32001, f'Unrecognized client ID "{long_id}".', 1)
        # A long value of the wrong type is cut short in the error text.
        await peer.send(request("subscribe", {"client_id": HOSTILE, "event_name": [long_id]}))
        answer = await peer.read_one()
        assert answer["error"]["code"] == INVALID_PARAMS
        assert len(answer["error"]["message"]) < 200 and answer["error"]["message"].endswith("....")
        # A long event name is a valid name.
        await peer.send(request("subscribe", {"client_id": HOSTILE, "event_name": long_id}))
        assert "subscription_id" in (await peer.read_one())["result"]
        await peer.ping()
        assert server.broker.subscription_count == 2  # the witness's and this one
        await peer.aclose()
    await wait_until(lambda: server.broker.subscription_count == 0)


@pytest.mark.parametrize("depth", [100, 254, 255, 600, 1000])
async def test_deeply_nested_values(served: tuple[Server, tcp.Adapter], depth: int) -> None:
    """No nesting a frame can carry makes an error escape: each is answered, the server lives."""
    server, adapter = served
    nested: bytes = b"[" * depth + b"]" * depth
    async with witness(adapter), tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER) as sub:
        deep = await sub.subscribe("deep")
        peer = await RawPeer.connect(adapter.port)
        publish = b'{"jsonrpc":"2.0","method":"publish","params":{"client_id":"%s","event_name":"deep","value":%s},"id":1}\n'
        await peer.send(publish % (HOSTILE.encode(), nested))
        answer = await peer.read_one()
        if depth <= 254:
            assert answer["result"] == {"listeners": 1, "client_id": HOSTILE}
            value = await deep.__anext__()
            for _ in range(depth - 1):
                value = value[0]
            assert value == []
        else:
            assert answer == error(
                INVALID_PARAMS,
                'Parameter "value" for method "publish" cannot be encoded as JSON: Recursion limit reached.',
                1,
            )
        # Deep where a string belongs: the error text shows a short prefix.
        for template in (
            b'{"jsonrpc":"2.0","method":%s,"id":2}\n',
            b'{"jsonrpc":"2.0","method":"subscribe","params":{"client_id":%s,"event_name":"e"},"id":2}\n',
            b'{"jsonrpc":"2.0","method":"ping","id":%s}\n',
            b"[%s]\n",
        ):
            await peer.send(template % nested)
            answer = await peer.read_one()
            answer = answer[0] if isinstance(answer, list) else answer
            assert answer["error"]["code"] in (INVALID_REQUEST, INVALID_PARAMS)
            assert "[[[[[[[[[[" in answer["error"]["message"]
        await peer.ping()
    for connection in list(server._connections):
        assert getattr(connection, "internal_errors", 0) == 0


# -- Content-Length that lies ----------------------------------------------------------------

PING = b'{"jsonrpc":"2.0","method":"ping","id":1}'


async def test_content_length_too_short(served: tuple[Server, tcp.Adapter]) -> None:
    _server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        # The first 10 bytes are the body, which is not JSON; the rest is read as a header
        # block, which has no Content-Length: the framing is lost, and the server says so.
        await peer.send(b"Content-Length: 10\r\n\r\n" + PING + b"Content-Length: 40\r\n\r\n" + PING)
        frames = await peer.read_until_closed()
        assert _is_parse_error(frames[0])
        assert frames[1] == error(PARSE, "missing Content-Length header")
        assert frames[2] == closing(PARSE, BROKEN_FRAMING)
        assert len(frames) == 3


async def test_content_length_too_long(served: tuple[Server, tcp.Adapter]) -> None:
    server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        # The server waits for the bytes it was promised...
        await peer.send(b"Content-Length: 100\r\n\r\n" + PING)
        await peer.expect_nothing()
        # ... which complete the body (JSON allows the trailing whitespace).
        await peer.send(b" " * (100 - len(PING)))
        assert await peer.read_one() == {"jsonrpc": "2.0", "result": {}, "id": 1}
        # Promised again and never delivered: when the peer leaves, nothing is left behind.
        await peer.send(b"Content-Length: 100\r\n\r\n" + PING)
        await peer.expect_nothing()
        await peer.aclose()
    await wait_until(lambda: server.connection_count == 0)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b"Content-Length: -5", "invalid Content-Length: b'-5'"),
        (b"Content-Length: 5x", "invalid Content-Length: b'5x'"),
        (b"Content-Length: 9999999999999999999", "Content-Length has more than 18 digits"),
        (b"Content-Length: 1\r\nContent-Length: 1", "duplicate Content-Length header"),
        (b"Content-Type: x", "missing Content-Length header"),
    ],
)
async def test_content_length_broken(served: tuple[Server, tcp.Adapter], header: bytes, problem: str) -> None:
    server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        await peer.send(header + b"\r\n\r\n" + PING)
        assert await peer.read_until_closed() == [error(PARSE, problem), closing(PARSE, BROKEN_FRAMING)]
    await wait_until(lambda: server.connection_count == 0)


async def test_content_length_huge(served: tuple[Server, tcp.Adapter]) -> None:
    """A body announced as ~1 PB is counted down, never stored."""
    server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        await peer.send(b"Content-Length: 999999999999999999\r\n\r\n")
        for _ in range(40):
            await peer.send(b"x" * 65536)
        await peer.expect_nothing()
        buffered = [getattr(c, "buffered_input", 0) for c in server._connections]
        assert max(buffered) < 65536 * 2, buffered
        peer.reset()
    await wait_until(lambda: server.connection_count == 0)


async def test_oversized_body_is_answered_and_framing_carries_on(served: tuple[Server, tcp.Adapter]) -> None:
    _server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        ping = b"Content-Length: %d\r\n\r\n%b" % (len(PING), PING)
        await peer.send(b"Content-Length: 2000000\r\n\r\n" + b" " * 2_000_000 + ping)
        assert await peer.read(2) == [
            error(-32006, "Frame too large: frame exceeds 1048576 bytes."),
            {"jsonrpc": "2.0", "result": {}, "id": 1},
        ]


# -- peers that misbehave in time --------------------------------------------------------------


@pytest.mark.parametrize("how", ["reset", "eof", "close"])
async def test_peer_disconnects_mid_frame(served: tuple[Server, tcp.Adapter], how: str) -> None:
    server, adapter = served
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        await peer.send(request("subscribe", {"client_id": HOSTILE, "event_name": "mine"}))
        assert "subscription_id" in (await peer.read_one())["result"]
        assert server.broker.listener_count("mine") == 1
        await peer.send(request("publish", {"client_id": HOSTILE, "event_name": "x", "value": 1})[:30])
        if how == "reset":
            peer.reset()
        elif how == "eof":
            await peer.stream.send_eof()
            assert await peer.read_until_closed() == []  # the fragment is dropped, unanswered
        else:
            await peer.aclose()
        await wait_until(lambda: server.broker.listener_count("mine") == 0)
    await wait_until(lambda: server.connection_count == 0)
    assert server.broker.subscription_count == 0 and server.broker.connections_held == 0


async def test_a_peer_that_sends_one_byte_at_a_time(served: tuple[Server, tcp.Adapter]) -> None:
    """A trickle (one byte every 25 ms here; a byte a second is the same, only slower) is
    answered once the frame is complete, and holds nobody else up."""
    _server, adapter = served
    async with witness(adapter) as watcher:
        peer = await RawPeer.connect(adapter.port)
        published_before = watcher.published
        for byte in PING + b"\n":
            await peer.send(bytes([byte]))
            await trio.sleep(0.025)
        assert await peer.read_one() == {"jsonrpc": "2.0", "result": {}, "id": 1}
        assert watcher.published - published_before > 20  # the witness kept going meanwhile


async def test_a_trickle_that_never_completes_a_request_is_closed_when_idle() -> None:
    server, adapter = make_server(idle_timeout=0.5)
    async with running(server), witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError):
            for byte in PING:  # 40 bytes at 50 ms: the timeout comes first
                await peer.send(bytes([byte]))
                await trio.sleep(0.05)
        assert await peer.read_until_closed() == [
            closing(ErrorCode.IDLE_TIMEOUT, "No valid request arrived within 0.5 seconds.")
        ]
    assert server.stats.idle_closed == 1


async def test_ten_thousand_requests_pipelined_without_reading(served: tuple[Server, tcp.Adapter]) -> None:
    """The server stops reading a peer that does not read its answers (back-pressure), so
    its memory stays bounded; nothing is dropped: every request is answered, in order.

    Each answer echoes a 2 KB client id: 20 MB of answers, more than the kernel's socket
    buffers hold, so the unread answers do pile up on the server's side.
    """
    server, adapter = served
    count = 10_000
    async with witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        data = b"".join(
            request("publish", {"client_id": LONG_ID, "event_name": "nobody", "value": i}, i)
            for i in range(count)
        )
        highest = 0

        async def watch_backlog() -> None:
            nonlocal highest
            while True:
                backlog = [getattr(c, "outbound_bytes", 0) for c in server._connections]
                highest = max(highest, *backlog)
                await trio.sleep(0.002)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_backlog)
            nursery.start_soon(peer.send, data)
            # Not one answer read for a while: the answers pile up to the limit, no further.
            await wait_until(lambda: highest > 512 * 1024)
            await trio.sleep(0.3)
            answers = await peer.read(count)
            nursery.cancel_scope.cancel()
        assert highest < 1024 * 1024 + 64 * 1024 * 2
        assert [answer["id"] for answer in answers] == list(range(count))
        assert all(answer["result"] == {"listeners": 0, "client_id": LONG_ID} for answer in answers)
        await peer.ping()
