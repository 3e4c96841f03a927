"""Server lifecycle rules (the original's exact texts) and orderly shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from transport_helpers import Harness, collect, prefix, running

from pubsub_rpc import ClientInfo, ConnectionClosedError, ErrorCode, FrameDecoder, LocalProtocolError
from transports import Server, inprocess, tcp, unix


async def test_start_without_adapters() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        await Server().serve()
    assert caught.value.message == "Cannot start a SyncServer that has no adapters attached."


async def test_second_start_and_late_additions() -> None:
    server = Server([inprocess.Adapter()])
    async with running(server), trio.open_nursery() as nursery:
        with pytest.raises(LocalProtocolError) as caught:
            await nursery.start(server.serve)
        assert caught.value.message == "A SyncServer may only be started once."
        with pytest.raises(LocalProtocolError) as caught:
            server.add_adapter(tcp.Adapter("127.0.0.1", 0))
        assert caught.value.message == "You cannot add new adapters after the server has started listening."
        with pytest.raises(LocalProtocolError) as caught:
            server.register_client(ClientInfo("late"))
        assert (
            caught.value.message == "You cannot register new clients after the server has started listening."
        )


async def test_no_adapters_is_checked_before_started_twice() -> None:
    server = Server()
    await server.aclose()  # marks it used
    with pytest.raises(LocalProtocolError, match="no adapters attached"):
        await server.serve()


async def test_serve_stream_needs_a_running_server() -> None:
    left, _right = trio.testing.memory_stream_pair()
    with pytest.raises(LocalProtocolError, match="not serving"):
        await Server([inprocess.Adapter()]).serve_stream(left)


async def test_orderly_shutdown_raw_peer_gets_closing_then_eof(tmp_path: Path) -> None:
    adapter = unix.Adapter(tmp_path / "s.sock")
    server = Server([adapter])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        stream = await trio.open_unix_socket(adapter.path)
        await stream.send_all(b'{"jsonrpc":"2.0","method":"ping","id":1}\n')
        decoder = FrameDecoder()
        assert decoder.feed(await stream.receive_some(65536)) == [{"jsonrpc": "2.0", "result": {}, "id": 1}]
        await server.aclose()
        received = b""
        while data := await stream.receive_some(65536):
            received += data
        assert decoder.feed(received) == [
            {
                "jsonrpc": "2.0",
                "method": "closing",
                "params": {"code": int(ErrorCode.SERVER_CLOSING), "message": "The server is shutting down."},
            }
        ]
        await stream.aclose()
    assert not Path(adapter.path).exists()


async def test_orderly_shutdown_clients_see_it(harness: Harness) -> None:
    p = prefix(harness.kind)
    async with harness.connect(p + "secret") as client, harness.connect(p + "secret2") as other:
        subscription = await client.subscribe("foo")
        assert await other.publish("foo", "last") == 1
        await client.ping()
        await harness.server.aclose()
        assert await collect(subscription, 1) == ["last"]
        with pytest.raises(ConnectionClosedError) as caught:
            await collect(subscription, 1)
        assert caught.value.message == "The server is shutting down."
        with pytest.raises(ConnectionClosedError):
            await client.publish("foo", "too late")
        assert client.server_closing is not None
        assert client.server_closing.code == ErrorCode.SERVER_CLOSING
    assert harness.server.connection_count == 0
    # Nobody can connect any more (the pipe harness has nobody to serve its end).
    expected = LocalProtocolError if harness.kind == "stdio" else ConnectionClosedError
    with pytest.raises(expected):
        async with harness.connect(p + "secret"):
            pass
