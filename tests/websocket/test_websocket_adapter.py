"""The WebSocket adapter on the wire: messages, limits, origins, TLS, HTTP, shutdown."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import orjson
import pytest
import trio
from transport_helpers import collect, running, tls_contexts, wait_until
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket
from websocket_helpers import http_get, next_message, raw_websocket, request

import transports
from pubsub_rpc import ClientInfo, ConnectionClosedError, ErrorCode
from transports import Server, tcp, websocket

CLIENT_JS = (Path(transports.__file__).parent / "static" / "client.js").read_bytes()


def make_server(adapter: websocket.Adapter, *more: object, **options: object) -> Server:
    server = Server([adapter, *more], **options)  # type: ignore[list-item, arg-type]
    for name in ("alice", "bob"):
        server.register_client(ClientInfo(name))
    return server


async def test_client_js_and_other_files_over_plain_http() -> None:
    adapter = websocket.Adapter("127.0.0.1", 0, files={"/page.html": b"<p>hi</p>"})
    async with running(make_server(adapter)):
        port = adapter.port
        assert adapter.http_url == f"http://127.0.0.1:{port}/"
        status, headers, body = await http_get(port, b"GET /client.js HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, CLIENT_JS)
        assert headers["content-type"] == "text/javascript; charset=utf-8"
        assert headers["content-length"] == str(len(CLIENT_JS))
        assert (
            headers["access-control-allow-origin"] == "*"
        )  # a module script from another origin may load it

        status, headers, body = await http_get(port, b"HEAD /client.js HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body, headers["content-length"]) == (200, b"", str(len(CLIENT_JS)))
        status, headers, body = await http_get(port, b"GET /page.html?v=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, headers["content-type"], body) == (200, "text/html; charset=utf-8", b"<p>hi</p>")

        status, _, _ = await http_get(port, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
        status, headers, _ = await http_get(port, b"POST /client.js HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        status, _, _ = await http_get(port, b"nonsense\r\n\r\n")
        assert status == 400
        # Upgrade requests that cannot be WebSocket handshakes are refused in plain HTTP.
        upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        status, _, _ = await http_get(port, upgrade + b"\r\n")
        assert status == 400  # no Sec-WebSocket-Key
        old = upgrade + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        status, headers, _ = await http_get(port, old)
        assert (status, headers["sec-websocket-version"]) == (426, "13")


async def test_each_text_message_is_one_message_or_batch() -> None:
    adapter = websocket.Adapter("127.0.0.1", 0)
    async with running(make_server(adapter)), raw_websocket(adapter.url) as ws:
        ping = {"jsonrpc": "2.0", "method": "ping", "params": {"client_id": "alice"}, "id": 1}
        # Pretty-printed JSON (raw newlines between tokens) is one message all the same.
        await ws.send_message(orjson.dumps(ping, option=orjson.OPT_INDENT_2).decode())
        assert await next_message(ws) == {"jsonrpc": "2.0", "result": {}, "id": 1}

        # A message that is not one complete JSON text gets a parse error, and
        # does not swallow the next message: the boundaries are the messages'.
        for broken in ['{"jsonrpc": "2.0", "method": ', "Content-Length: 2\r\n\r\n{}", '"unterminated']:
            await ws.send_message(broken)
            answer = await next_message(ws)
            assert answer["id"] is None and answer["error"]["code"] == ErrorCode.PARSE_ERROR, broken
            await ws.send_message(request("ping", 2, client_id="alice"))
            assert await next_message(ws) == {"jsonrpc": "2.0", "result": {}, "id": 2}, broken

        # Complete but invalid JSON gets the parser's own explanation.
        await ws.send_message('{"jsonrpc": tru}')
        answer = await next_message(ws)
        assert answer["error"]["code"] == ErrorCode.PARSE_ERROR
        assert answer["error"]["message"].startswith("Invalid JSON: ")
        await ws.send_message("42")
        assert (await next_message(ws))["error"] == {
            "code": ErrorCode.INVALID_REQUEST,
            "message": "Request must be an Array or an Object.",
        }

        # A batch is one message in and one message out.
        publish = request("publish", 4, event_name="e", value=1)  # untrusted: the client id is required
        await ws.send_message(f"[{request('ping', 3, client_id='alice')},{publish}]")
        batch = await next_message(ws)
        assert [member["id"] for member in batch] == [3, 4]
        assert batch[1]["error"]["code"] == ErrorCode.UNKNOWN_CLIENT

        # The original's dialect works too: the answer is a notification named after request_id.
        notification = {
            "jsonrpc": "2.0",
            "method": "ping",
            "params": {"client_id": "alice", "request_id": "r1"},
        }
        await ws.send_message(orjson.dumps(notification).decode())
        answer = await next_message(ws)
        assert answer["method"] == "r1" and answer["params"]["status"] is True


async def test_events_and_answers_are_one_per_message_across_transports() -> None:
    adapter, tcp_adapter = websocket.Adapter("127.0.0.1", 0), tcp.Adapter("127.0.0.1", 0)
    async with (
        running(make_server(adapter, tcp_adapter)),
        raw_websocket(adapter.url) as ws,
        tcp.connect("127.0.0.1", tcp_adapter.port, client_id="bob") as bob,
    ):
        await ws.send_message(request("subscribe", 1, client_id="alice", event_name="news"))
        subscription_id = (await next_message(ws))["result"]["subscription_id"]
        for number in range(3):
            assert await bob.publish("news", number) == 1
        for number in range(3):
            assert await next_message(ws) == {
                "jsonrpc": "2.0",
                "method": "event",
                "params": {"event_name": "news", "value": number, "subscription_id": subscription_id},
            }
        # A large event is still one message: output is never cut into pieces.
        big = {"blob": "y" * 600_000}
        assert await bob.publish("news", big) == 1
        assert (await next_message(ws))["params"]["value"] == big
        # And the other way round, with the Python WebSocket client.
        from_tcp = await bob.subscribe("reply")
        async with websocket.connect(adapter.url, client_id="alice") as alice:
            assert await alice.publish("reply", {"from": "websocket"}) == 1
        assert await collect(from_tcp, 1) == [{"from": "websocket"}]


async def test_binary_messages_are_refused_with_a_close_reason() -> None:
    adapter = websocket.Adapter("127.0.0.1", 0)
    server = make_server(adapter)
    async with running(server), raw_websocket(adapter.url) as ws:
        await ws.send_message(request("ping", 1, client_id="alice"))
        await ws.send_message(b'{"jsonrpc": "2.0", "method": "ping", "id": 2}')
        assert await next_message(ws) == {"jsonrpc": "2.0", "result": {}, "id": 1}  # what came first
        with pytest.raises(ConnectionClosed) as caught:
            await ws.get_message()
        assert caught.value.reason is not None
        assert caught.value.reason.code == 1003
        assert caught.value.reason.reason == (
            "Binary messages are not accepted: send each JSON-RPC message or batch as a text message."
        )
        await wait_until(lambda: server.connection_count == 0)


async def test_message_size_limit() -> None:
    adapter = websocket.Adapter("127.0.0.1", 0)
    async with running(make_server(adapter, max_frame_size=1000)), raw_websocket(adapter.url) as ws:
        # Under the limit in characters, over it in bytes: answered as on every transport.
        await ws.send_message(request("publish", 1, client_id="alice", event_name="e", value="€" * 400))
        assert (await next_message(ws))["error"] == {
            "code": ErrorCode.FRAME_TOO_LARGE,
            "message": "Frame too large: frame exceeds 1000 bytes.",
        }
        await ws.send_message(request("ping", 2, client_id="alice"))
        assert (await next_message(ws))["id"] == 2
        # Longer than the limit: refused before it is buffered, the WebSocket way.
        await ws.send_message(request("publish", 3, client_id="alice", event_name="e", value="x" * 1000))
        with pytest.raises(ConnectionClosed) as caught:
            await ws.get_message()
        assert caught.value.reason is not None and caught.value.reason.code == 1009


async def test_allowed_origins() -> None:
    adapter = websocket.Adapter("127.0.0.1", 0, allowed_origins=["http://app.example"])
    async with running(make_server(adapter)):
        for origin in ("http://app.example", "HTTP://App.Example/", None):  # None: not a browser
            async with websocket.connect(adapter.url, client_id="alice", origin=origin) as client:
                await client.ping()
        with pytest.raises(ConnectionClosedError) as caught:
            async with websocket.connect(adapter.url, client_id="alice", origin="http://evil.example"):
                pass
        assert caught.value.message == (
            f"The server refused the WebSocket connection to {adapter.url}: HTTP 403, This origin may not connect."
        )
        # The JavaScript client is shared with the allowed origins only.
        get = b"GET /client.js HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\n\r\n"
        _, headers, _ = await http_get(adapter.port, get % b"http://app.example")
        assert headers["access-control-allow-origin"] == "http://app.example"
        _, headers, _ = await http_get(adapter.port, get % b"http://evil.example")
        assert "access-control-allow-origin" not in headers
        # The list can change while serving.
        adapter.allowed_origins = None
        async with websocket.connect(adapter.url, client_id="alice", origin="http://evil.example") as client:
            await client.ping()


async def test_wss_round_trip() -> None:
    server_context, client_context = tls_contexts()
    adapter = websocket.Adapter("127.0.0.1", 0, ssl_context=server_context)
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    async with running(make_server(adapter, tcp_adapter)):
        assert adapter.url == f"wss://127.0.0.1:{adapter.port}/"
        async with (
            websocket.connect(adapter.url, client_id="alice", ssl_context=client_context) as alice,
            tcp.connect("127.0.0.1", tcp_adapter.port, client_id="bob") as bob,
        ):
            news = await alice.subscribe("news")
            assert await bob.publish("news", {"secure": True}) == 1
            assert await collect(news, 1) == [{"secure": True}]
        # Not trusted by default (a self-signed certificate): refused at connect time.
        with pytest.raises(ConnectionClosedError, match="CERTIFICATE_VERIFY_FAILED"):
            async with websocket.connect(adapter.url, client_id="alice"):
                pass
        # Plain ws:// to the TLS port gets nowhere, and the server carries on.
        with pytest.raises(ConnectionClosedError):
            async with websocket.connect(f"ws://127.0.0.1:{adapter.port}/", request_timeout=1):
                pass
        async with websocket.connect(adapter.url, client_id="alice", ssl_context=client_context) as again:
            await again.ping()


async def test_shutdown_sends_closing_then_going_away() -> None:
    adapter = websocket.Adapter("127.0.0.1", 0)
    server = make_server(adapter)
    async with running(server), raw_websocket(adapter.url) as ws, trio.open_nursery() as nursery:
        await ws.send_message(request("ping", 1, client_id="alice"))
        assert (await next_message(ws))["id"] == 1
        nursery.start_soon(server.aclose)
        assert await next_message(ws) == {
            "jsonrpc": "2.0",
            "method": "closing",
            "params": {"code": ErrorCode.SERVER_CLOSING, "message": "The server is shutting down."},
        }
        with pytest.raises(ConnectionClosed) as caught:
            await ws.get_message()
        assert caught.value.reason is not None
        assert (caught.value.reason.code, caught.value.reason.reason) == (
            1001,
            "The server is shutting down.",
        )


async def test_slow_consumer_is_cut_off_and_the_rest_continue() -> None:
    adapter, tcp_adapter = websocket.Adapter("127.0.0.1", 0), tcp.Adapter("127.0.0.1", 0)
    server = make_server(adapter, tcp_adapter, max_outbound=64 * 1024, close_timeout=0.2)
    async with (
        running(server),
        tcp.connect("127.0.0.1", tcp_adapter.port, client_id="bob") as publisher,
        websocket.connect(adapter.url, client_id="alice") as healthy,
        raw_websocket(adapter.url) as stalled,
    ):
        await stalled.send_message(request("subscribe", 1, client_id="alice", event_name="big"))
        assert (await next_message(stalled))["id"] == 1
        values = await healthy.subscribe("big")
        # From here on the stalled peer reads nothing; socket buffers fill, then its queue passes 64 KiB.
        chunk = "x" * 10_000
        while (listeners := await publisher.publish("big", chunk)) == 2:
            assert await collect(values, 1) == [chunk]
        assert listeners == 1  # the stalled subscription was dropped at once
        await wait_until(lambda: server.connection_count == 2)  # and its connection closed after the grace
        assert await publisher.publish("big", "still flowing") == 1
        assert await collect(values, 2) == [chunk, "still flowing"]


async def test_silent_and_half_sent_requests_time_out() -> None:
    adapter = websocket.Adapter("127.0.0.1", 0, handshake_timeout=0.2)
    async with running(make_server(adapter)):
        for opening in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):
            stream = await trio.open_tcp_stream("127.0.0.1", adapter.port)
            async with stream:
                await stream.send_all(opening)
                assert await stream.receive_some() == b""  # closed by the server


def test_split_url() -> None:
    assert websocket.split_url("ws://127.0.0.1:7701") == ("127.0.0.1", 7701, "/", False)
    assert websocket.split_url("wss://example.org/pubsub?x=1") == ("example.org", 443, "/pubsub?x=1", True)
    assert websocket.split_url("ws://[::1]/") == ("::1", 80, "/", False)
    for bad, why in (
        ("tcp://127.0.0.1:7700", "starts with ws:// or wss://"),
        ("ws://host:99999/", "the port must be a number"),
        ("ws:///path", "expected ws://HOST"),
    ):
        with pytest.raises(ValueError, match=why):
            websocket.split_url(bad)


async def test_connect_errors() -> None:
    with pytest.raises(ValueError, match="plaintext"):
        async with websocket.connect(
            "ws://127.0.0.1:1/", ssl_context=__import__("ssl").create_default_context()
        ):
            pass
    adapter = websocket.Adapter("127.0.0.1", 0)
    async with running(make_server(adapter)):
        port = adapter.port
    with pytest.raises(ConnectionClosedError, match=r"^Connecting to tcp://127\.0\.0\.1:\d+ failed"):
        async with websocket.connect(f"ws://127.0.0.1:{port}/"):
            pass


async def test_keepalive_notices_a_websocket_server_that_stops_answering(nursery: trio.Nursery) -> None:
    async def silent(request: WebSocketRequest) -> None:
        # Completes the handshake and reads every message, answering none.
        ws = await request.accept()
        with suppress(ConnectionClosed):
            while True:
                await ws.get_message()

    fake = await nursery.start(serve_websocket, silent, "127.0.0.1", 0, None)
    with trio.fail_after(10):
        url = f"ws://127.0.0.1:{fake.port}/"
        async with websocket.connect(url, client_id="alice", keepalive=0.2, request_timeout=60) as client:
            assert client.keepalive == 0.2
            with pytest.raises(ConnectionClosedError, match=r"keep-alive ping within 0\.1 seconds"):
                await client.ping()  # no answer will come; the request timeout is a minute
            assert client.closed
