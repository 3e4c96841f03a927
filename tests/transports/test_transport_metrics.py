"""``metrics.Adapter``: the server's counters as Prometheus text over loopback HTTP.

Scrapes are real HTTP/1.1 requests over a loopback socket; the answer is
parsed with the grammar of the text exposition format 0.0.4, and must change
after traffic.  Anything but ``GET /metrics`` is refused, and no client id
ever appears.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
from transport_helpers import running

from pubsub_rpc import ClientInfo
from transports import Server, inprocess, metrics, tcp

OPERATOR = "metrics::operator-secret"
USER = "metrics::user-secret"

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
_SAMPLE = re.compile(rf'^({_NAME})(\{{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\}})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_exposition(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples by (name, labels); fails the test on anything format 0.0.4 does not allow."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text[:-1].split("\n"):
        if match := _HELP.match(line):
            assert match[1] not in helps, f"two HELP lines for {match[1]}"
            helps.add(match[1])
        elif match := _TYPE.match(line):
            assert match[1] not in types, f"two TYPE lines for {match[1]}"
            types[match[1]] = match[2]
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match[1]
            assert name in types and name in helps, f"{name}: sample before its HELP and TYPE"
            if types[name] == "counter":
                assert name.endswith("_total")
            labels = tuple(_LABEL.findall(match[2] or ""))
            assert (name, labels) not in samples, f"duplicate series {name}{labels}"
            samples[(name, labels)] = float(match[3])
    assert set(types) == helps
    return samples


async def http(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes to the endpoint; the status line, headers and body of its answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        if request:
            await stream.send_all(request)
        answer = b""
        while data := await stream.receive_some():
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *header_lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert int(headers["Content-Length"]) == len(body)
    return status, headers, body


async def scrape(port: int) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """GET /metrics: the body and its parsed samples."""
    status, headers, body = await http(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == metrics.CONTENT_TYPE
    text = body.decode("utf-8")
    return text, parse_exposition(text)


def _server() -> tuple[Server, tcp.Adapter, inprocess.Adapter, metrics.Adapter]:
    pubsub, local, endpoint = tcp.Adapter("127.0.0.1", 0), inprocess.Adapter(), metrics.Adapter()
    server = Server([pubsub, local, endpoint])
    server.register_client(ClientInfo(OPERATOR, can_inspect=True))
    server.register_client(ClientInfo(USER))
    return server, pubsub, local, endpoint


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(f"pubsub_rpc_{name}", tuple(labels.items()))]


async def test_scrape_reflects_traffic_over_tcp_and_in_process() -> None:
    server, pubsub, local, endpoint = _server()
    async with running(server):
        assert endpoint.url == f"http://127.0.0.1:{endpoint.port}/metrics"
        _, before = await scrape(endpoint.port)
        assert _value(before, "events_published_total") == 0
        assert _value(before, "connections") == 0
        assert _value(before, "pattern_subscriptions") == 0
        async with (
            tcp.connect("127.0.0.1", pubsub.port, client_id=USER) as subscriber,
            inprocess.connect(local) as publisher,
            await subscriber.subscribe("metrics.ping") as subscription,
        ):
            assert await publisher.publish("metrics.ping", {"n": 1}) == 1
            async for value in subscription:
                assert value == {"n": 1}
                break
            async with await subscriber.psubscribe("metrics.*"):
                text, during = await scrape(endpoint.port)
    assert _value(during, "pattern_subscriptions") == 1
    assert "# TYPE pubsub_rpc_pattern_subscriptions gauge\n" in text
    assert "# HELP pubsub_rpc_pattern_subscriptions Live pattern subscriptions" in text
    assert _value(during, "events_published_total") == 1
    assert _value(during, "events_delivered_total") == 1
    assert _value(during, "subscriptions") == 2  # the pattern subscription too
    assert _value(during, "connections") == 2
    assert _value(during, "requests_total") == 3  # the subscribe, the publish and the psubscribe
    assert _value(during, "bytes_received_total") > 0 and _value(during, "bytes_sent_total") > 0
    tcp_labels = {"adapter": pubsub.url, "kind": "tcp"}
    local_labels = {"adapter": "inprocess", "kind": "inprocess"}
    assert _value(during, "adapter_connections", **tcp_labels) == 1
    assert _value(during, "adapter_connections", **local_labels) == 1
    assert _value(during, "adapter_connections_accepted_total", **tcp_labels) == 1
    assert _value(during, "adapter_connections_refused_total", **tcp_labels) == 0
    # The endpoint itself serves no pub/sub peers: no series of its own.
    assert not any(dict(labels).get("kind") == "metrics" for _, labels in during)
    assert _value(during, "uptime_seconds") >= 0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"GET /metrics/../secret HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        (b"hello\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b'{"jsonrpc":"2.0","method":"stats","id":1}\n\n', "HTTP/1.1 400 Bad Request"),
        (
            b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ],
)
async def test_only_get_metrics_is_served(request_bytes: bytes, status: str) -> None:
    server, _, _, endpoint = _server()
    async with running(server):
        got, headers, body = await http(endpoint.port, request_bytes)
        assert got == status
        assert headers["Connection"] == "close"
        assert b"pubsub_rpc_" not in body
        if "405" in status:
            assert headers["Allow"] == "GET"
        # A bad request costs nothing: the next scrape is answered.
        await scrape(endpoint.port)


async def test_a_silent_scraper_is_cut_off_after_the_timeout() -> None:
    endpoint = metrics.Adapter(request_timeout=0.2)
    server = Server([endpoint])
    async with running(server):
        stream = await trio.open_tcp_stream("127.0.0.1", endpoint.port)
        async with stream:
            await stream.send_all(b"GET /metr")  # and then nothing
            assert await stream.receive_some() == b""  # closed unanswered
        await scrape(endpoint.port)


async def test_connections_beyond_the_limit_are_closed_unanswered() -> None:
    endpoint = metrics.Adapter(max_connections=1, request_timeout=30)
    server = Server([endpoint])
    async with running(server):
        holder = await trio.open_tcp_stream("127.0.0.1", endpoint.port)
        async with holder:
            await holder.send_all(b"GET ")  # holds the only slot
            assert await _first_bytes(endpoint.port) == b""
            await holder.send_all(b"/metrics HTTP/1.1\r\n\r\n")
            answer = b""
            while data := await holder.receive_some():
                answer += data
            assert answer.startswith(b"HTTP/1.1 200 OK")


async def _first_bytes(port: int) -> bytes:
    """What a scrape gets first: b"" when it was closed unanswered (or reset)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        try:
            return await stream.receive_some()
        except trio.BrokenResourceError:
            return b""


async def test_a_failing_stats_source_costs_one_scrape(caplog: pytest.LogCaptureFixture) -> None:
    server, pubsub, _, endpoint = _server()
    failing = [True]

    def source() -> dict[str, Any]:
        if failing[0]:
            raise RuntimeError("the application's bug")
        return {"queue_depth": 4}

    server.broker.add_stats_source(source)
    async with running(server):
        status, _, body = await http(endpoint.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 500 Internal Server Error"
        assert b"pubsub_rpc_" not in body
        assert "reading the counters failed: RuntimeError" in caplog.text
        failing[0] = False
        _, samples = await scrape(endpoint.port)
        assert _value(samples, "queue_depth") == 4
        # The pub/sub side never noticed.
        async with tcp.connect("127.0.0.1", pubsub.port, client_id=USER) as client:
            await client.ping()


async def test_metrics_never_contain_a_client_id() -> None:
    pubsub = tcp.Adapter("127.0.0.1", 0, trusted=True)
    endpoint = metrics.Adapter()
    server = Server([pubsub, endpoint])
    server.register_client(ClientInfo(USER))
    async with running(server), tcp.connect("127.0.0.1", pubsub.port) as adhoc:
        await adhoc.subscribe("metrics.secret")
        async with tcp.connect("127.0.0.1", pubsub.port, client_id=USER) as user:
            await user.publish("metrics.secret", 1)
            text, _ = await scrape(endpoint.port)
            adhoc_id = adhoc.client_id
    assert adhoc_id is not None
    for secret in (USER, adhoc_id, "adhoc", "metrics::"):
        assert secret not in text


def test_render_escapes_labels_and_keeps_only_numbers() -> None:
    stats: dict[str, Any] = {
        "requests": 3,
        "subscriptions": 2,
        "uptime_seconds": 1.5,
        "bridge.lag-ms": 7,
        "flag": True,
        "note": "text",
        "adapters": [
            {"name": 'unix:///tmp/a"b\\c\nd', "kind": "unix", "connections": 1, "accepted": 2, "refused": 0}
        ],
    }
    text = metrics.render(stats)
    samples = parse_exposition(text)
    assert samples[("pubsub_rpc_requests_total", ())] == 3
    assert samples[("pubsub_rpc_subscriptions", ())] == 2
    assert samples[("pubsub_rpc_uptime_seconds", ())] == 1.5
    assert samples[("pubsub_rpc_bridge_lag_ms", ())] == 7
    assert "flag" not in text and "note" not in text
    assert 'adapter="unix:///tmp/a\\"b\\\\c\\nd"' in text
    assert "# TYPE pubsub_rpc_requests_total counter" in text
    assert "# TYPE pubsub_rpc_subscriptions gauge" in text
