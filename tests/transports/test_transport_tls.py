"""TLS over loopback with a certificate made for the test (trustme)."""

from __future__ import annotations

import ssl

import pytest
import trio
from transport_helpers import collect, running, tls_contexts

from pubsub_rpc import ClientInfo, ConnectionClosedError
from transports import Server, tcp


async def test_tls_round_trip() -> None:
    server_context, client_context = tls_contexts()
    adapter = tcp.Adapter("127.0.0.1", 0, ssl_context=server_context)
    server = Server([adapter])
    server.register_client(ClientInfo("alice"))
    server.register_client(ClientInfo("bob"))
    async with running(server):
        assert adapter.url == f"tls://127.0.0.1:{adapter.port}"
        async with (
            tcp.connect("127.0.0.1", adapter.port, client_id="alice", ssl_context=client_context) as alice,
            tcp.connect("127.0.0.1", adapter.port, client_id="bob", ssl_context=client_context) as bob,
        ):
            news = await bob.subscribe("news")
            assert await alice.publish("news", {"secure": True}) == 1
            assert await collect(news, 1) == [{"secure": True}]

        # A client that does not trust the certificate is refused at connect time.
        with pytest.raises(ConnectionClosedError, match="CERTIFICATE_VERIFY_FAILED"):
            async with tcp.connect("127.0.0.1", adapter.port, ssl_context=ssl.create_default_context()):
                pass
        # A plaintext client gets nowhere either, and the server carries on.
        with pytest.raises(ConnectionClosedError):
            async with tcp.connect("127.0.0.1", adapter.port, client_id="alice", request_timeout=2) as plain:
                await plain.ping()
        async with tcp.connect(
            "127.0.0.1", adapter.port, client_id="alice", ssl_context=client_context
        ) as again:
            await again.ping()
    await trio.lowlevel.checkpoint()
