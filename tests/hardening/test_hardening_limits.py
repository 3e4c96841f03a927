"""Every limit: its documented default, its configuration, and what happens at it.

At each limit the offending request (or connection) gets the documented error, and the
connection and everybody else stay up; a slow consumer or an idle connection is closed
with the documented ``closing`` reason, and nobody else notices.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import trio
from hardening_helpers import (
    HOSTILE,
    LONG_ID,
    WITNESS_PUBLISHER,
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

from pubsub_rpc import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_OUTBOUND,
    DEFAULT_MAX_SUBSCRIPTIONS,
    ClientConnection,
    ClientInfo,
    ConnectionClosedError,
    ErrorCode,
    PingRequested,
)
from transports import Server, tcp, unix
from transports._cli import _build_server, build_parser
from transports._server import DEFAULT_CLOSE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS

LIMIT = int(ErrorCode.LIMIT_EXCEEDED)


def test_defaults_are_the_documented_ones() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == 1024 * 1024
    assert DEFAULT_MAX_BATCH == 100
    assert DEFAULT_MAX_SUBSCRIPTIONS == 1000
    assert DEFAULT_MAX_CONNECTIONS == 10_000
    assert DEFAULT_MAX_OUTBOUND == 8 * 1024 * 1024
    assert DEFAULT_IDLE_TIMEOUT == 30.0
    server = Server()
    assert (server.max_frame_size, server.max_batch, server.max_subscriptions) == (1024 * 1024, 100, 1000)
    assert (server.max_connections, server.max_outbound, server.idle_timeout) == (
        10_000,
        8 * 1024 * 1024,
        30.0,
    )
    spec = (Path(__file__).parents[2] / "spec" / "README.md").read_text(encoding="utf-8")
    limits = spec[spec.index("## 15. Limits") :]
    for row in ("| frame size | 1 MiB", "| batch size | 100 members", "| subscriptions per connection | 1 000",
                "| connections per endpoint (adapter) | 10 000", "| outbound buffer per connection | 8 MiB",
                "| idle timeout | 30 s"):  # fmt: skip
        assert row in limits


def test_every_limit_is_a_serve_option(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text('[[client]]\nid = "a"\n', encoding="utf-8")
    args = build_parser().parse_args(
        [
            "serve",
            "--clients",
            str(clients),
            "--tcp",
            "127.0.0.1:0",
            "--unix",
            str(tmp_path / "s"),
            "--max-frame-size",
            "1000",
            "--max-batch",
            "7",
            "--max-outbound",
            "5000",
            "--max-subscriptions",
            "9",
            "--max-connections",
            "11",
            "--idle-timeout",
            "2.5",
            "--close-timeout",
            "0.5",
            "--unix-mode",
            "660",
        ]
    )
    server = _build_server(args)
    assert (server.max_frame_size, server.max_batch, server.max_outbound) == (1000, 7, 5000)
    assert (server.max_subscriptions, server.max_connections) == (9, 11)
    assert (server.idle_timeout, server.close_timeout) == (2.5, 0.5)
    unix_adapter = next(a for a in server.adapters if isinstance(a, unix.Adapter))
    assert unix_adapter.mode == 0o660
    defaults = _build_server(
        build_parser().parse_args(["serve", "--clients", str(clients), "--tcp", "127.0.0.1:0"])
    )
    assert (defaults.idle_timeout, defaults.close_timeout) == (DEFAULT_IDLE_TIMEOUT, DEFAULT_CLOSE_TIMEOUT)
    no_idle = ["serve", "--clients", str(clients), "--tcp", "127.0.0.1:0", "--idle-timeout", "0"]
    assert _build_server(build_parser().parse_args(no_idle)).idle_timeout is None


@pytest.mark.parametrize(
    "bad", [["--max-batch", "0"], ["--max-connections", "-1"], ["--idle-timeout", "-1"], ["--unix-mode", "9"]]
)
def test_bad_limits_are_usage_errors(
    tmp_path: Path, bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from transports._cli import main

    clients = tmp_path / "clients.toml"
    clients.write_text('[[client]]\nid = "a"\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--clients", str(clients), "--tcp", "127.0.0.1:0", *bad])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


async def test_frame_size_limit_is_configurable() -> None:
    server, adapter = make_server(max_frame_size=1000)
    async with running(server), witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        frame = request("publish", {"client_id": HOSTILE, "event_name": "e", "value": "x" * 1000})
        await peer.send(frame)
        assert await peer.read_one() == error(-32006, "Frame too large: frame exceeds 1000 bytes.")
        await peer.ping()


async def test_batch_limit_is_configurable() -> None:
    server, adapter = make_server(max_batch=3)
    async with running(server), witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        ping = {"jsonrpc": "2.0", "method": "ping", "id": 1}
        await peer.send_json([ping] * 4)
        assert await peer.read_one() == error(LIMIT, "A batch may contain at most 3 requests.")
        await peer.send_json([ping] * 3)
        assert await peer.read_one() == [{"jsonrpc": "2.0", "result": {}, "id": 1}] * 3


async def test_subscriptions_per_connection() -> None:
    server, adapter = make_server(max_subscriptions=5)
    async with running(server), witness(adapter, event_name="w"):
        # The witness holds one subscription on its own connection: limits are per connection.
        async with (
            tcp.connect("127.0.0.1", adapter.port, client_id=HOSTILE) as greedy,
            tcp.connect("127.0.0.1", adapter.port, client_id=LONG_ID) as other,
        ):
            subscriptions = [await greedy.subscribe(f"e{i}") for i in range(5)]
            with pytest.raises(Exception) as refused:
                await greedy.subscribe("one too many")
            assert getattr(refused.value, "code", None) == ErrorCode.LIMIT_EXCEEDED
            assert refused.value.message == "A connection may hold at most 5 subscriptions."  # type: ignore[attr-defined]
            # The connection is fine, and so is everyone else.
            await greedy.ping()
            assert await other.publish("e0", "still delivered") == 1
            assert await subscriptions[0].__anext__() == "still delivered"
            for i in range(5):
                await other.subscribe(f"other{i}")
            # Room again after an unsubscribe.
            await subscriptions[4].unsubscribe()
            await greedy.subscribe("room again")
        peer = await RawPeer.connect(adapter.port)
        for i in range(5):
            await peer.send(request("subscribe", {"client_id": HOSTILE, "event_name": f"p{i}"}, i))
        await peer.read(5)
        await peer.send_json(
            {
                "jsonrpc": "2.0",
                "method": "subscribe",
                "params": {"client_id": HOSTILE, "event_name": "x", "request_id": "r"},
            }
        )
        assert (await peer.read_one())["params"] == {
            "status": False,
            "request_id": "r",
            "error_message": "A connection may hold at most 5 subscriptions.",
            "error_code": LIMIT,
        }


async def test_connections_per_adapter(tmp_path: Path) -> None:
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    unix_adapter = unix.Adapter(tmp_path / "s.sock")
    server = Server([tcp_adapter, unix_adapter], max_connections=3)
    for client_id in (WITNESS_PUBLISHER, WITNESS_SUBSCRIBER, HOSTILE):
        server.register_client(ClientInfo(client_id))
    async with running(server), witness(tcp_adapter):  # two of the three TCP connections
        third = await RawPeer.connect(tcp_adapter.port)
        await third.ping()
        fourth = await RawPeer.connect(tcp_adapter.port)
        assert await fourth.read_until_closed() == [
            closing(LIMIT, "Too many connections: this endpoint serves at most 3 at a time.")
        ]
        # Another adapter has its own count.
        async with unix.connect(unix_adapter.path, client_id=HOSTILE) as over_unix:
            await over_unix.ping()
        await third.ping()
        assert server.stats.connections_refused == 1
        # A place frees up when a connection goes.
        await third.aclose()
        await wait_until(lambda: server.connection_count == 2)
        fifth = await RawPeer.connect(tcp_adapter.port)
        await fifth.ping()
        await fifth.aclose()


async def test_slow_consumer_is_cut_off_and_nobody_else_misses_anything() -> None:
    # A generous flush time: the stalled peer reads its last frames only at the end.
    server, adapter = make_server(max_outbound=64 * 1024, close_timeout=30)
    healthy_count, total = 3, 600
    chunk = "x" * 10_000
    async with running(server), witness(adapter):
        stalled = await RawPeer.connect(adapter.port)
        await stalled.send(request("subscribe", {"client_id": HOSTILE, "event_name": "big"}))
        stalled_subscription = (await stalled.read_one())["result"]["subscription_id"]
        async with (
            tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_PUBLISHER) as publisher,
            tcp.connect(
                "127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER, subscription_buffer=total + 1
            ) as healthy,
        ):
            subscriptions = [await healthy.subscribe("big") for _ in range(healthy_count)]
            listeners = []
            # The stalled peer reads nothing from here on: 6 MB of events are far more than
            # its socket buffers plus 64 KiB.
            for seq in range(total):
                listeners.append(await publisher.publish("big", [seq, chunk]))
            assert listeners[0] == healthy_count + 1 and listeners[-1] == healthy_count
            cut = listeners.index(healthy_count)
            assert listeners == [healthy_count + 1] * cut + [healthy_count] * (total - cut)
            for subscription in subscriptions:
                received = [(await subscription.__anext__())[0] for _ in range(total)]
                assert received == list(range(total))
        # The stalled peer, reading at last, finds a prefix of the events, in order, then the
        # closing notification, then the end.
        frames = await stalled.read_until_closed()
        assert frames[-1] == closing(
            int(ErrorCode.SLOW_CONSUMER),
            f"Slow consumer: more than {64 * 1024} bytes of events were waiting to be read.",
        )
        events = frames[:-1]
        assert all(frame["params"]["subscription_id"] == stalled_subscription for frame in events)
        assert [frame["params"]["value"][0] for frame in events] == list(range(len(events)))
        assert len(events) <= cut
        assert server.stats.slow_consumers == 1


async def test_idle_connections_are_closed() -> None:
    server, adapter = make_server(idle_timeout=0.3)
    idle_closing = closing(int(ErrorCode.IDLE_TIMEOUT), "No valid request arrived within 0.3 seconds.")
    async with running(server), witness(adapter):
        silent = await RawPeer.connect(adapter.port)
        garbage = await RawPeer.connect(adapter.port)
        await garbage.send(b"nonsense {]\n")
        working = await RawPeer.connect(adapter.port)
        await working.ping()
        assert await silent.read_until_closed() == [idle_closing]
        garbage_frames = await garbage.read_until_closed()
        assert garbage_frames[-1] == idle_closing and len(garbage_frames) == 3  # two parse errors
        await trio.sleep(0.4)
        await working.ping()  # a connection that made a valid request stays
    assert server.stats.idle_closed == 2


async def test_idle_timeout_can_be_turned_off() -> None:
    server, adapter = make_server(idle_timeout=None)
    async with running(server):
        silent = await RawPeer.connect(adapter.port)
        await silent.expect_nothing(0.5)
        await silent.ping()


# -- keep-alive --------------------------------------------------------------------------------


async def test_keepalive_notices_a_server_that_hangs() -> None:
    """A server that accepts and then never answers (hung, or its host gone without a reset)
    is noticed within the keep-alive interval, by waiting requests and subscriptions alike."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    interval = 1.0
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def black_hole() -> None:
            while True:
                accepted.append(await listeners[0].accept())  # type: ignore[arg-type]

        nursery.start_soon(black_hole)
        async with tcp.connect(
            "127.0.0.1", port, client_id="x", keepalive=interval, request_timeout=60
        ) as client:
            started = time.monotonic()
            with pytest.raises(ConnectionClosedError, match="keep-alive"):
                await client.ping()  # no answer will come; the request timeout is a minute
            assert time.monotonic() - started < interval + 0.5
            assert client.closed
        nursery.cancel_scope.cancel()
    for stream in accepted:
        await stream.aclose()
    await listeners[0].aclose()


async def test_keepalive_is_quiet_on_a_healthy_connection() -> None:
    server, adapter = make_server(idle_timeout=0.2)
    async with (
        running(server),
        tcp.connect("127.0.0.1", adapter.port, client_id=HOSTILE, keepalive=0.2) as client,
        tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER) as watcher,
    ):
        values = await watcher.subscribe("k")
        await trio.sleep(1.0)  # five intervals; the pings also keep the idle timeout away
        assert not client.closed
        assert await client.publish("k", 1) == 1
        assert await values.__anext__() == 1


def test_a_client_answers_the_servers_ping() -> None:
    """Either side may ping; the client's protocol answers with an empty result."""
    connection = ClientConnection(client_id="x")
    events = connection.receive_data(b'{"jsonrpc":"2.0","method":"ping","id":"k1"}\n')
    assert events == [PingRequested(reply=b'{"jsonrpc":"2.0","result":{},"id":"k1"}\n')]
    # A ping notification (no id) needs no answer.
    assert connection.receive_data(b'{"jsonrpc":"2.0","method":"ping"}\n') == []


async def test_the_transport_client_answers_a_ping_from_the_server() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with tcp.connect("127.0.0.1", port, client_id="x") as _client:
        server_side = await listeners[0].accept()
        await server_side.send_all(b'{"jsonrpc":"2.0","method":"ping","id":5}\n')
        answer = await server_side.receive_some(1000)
        assert orjson.loads(answer) == {"jsonrpc": "2.0", "result": {}, "id": 5}
        await server_side.aclose()
    await listeners[0].aclose()
