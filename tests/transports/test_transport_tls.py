"""TLS over loopback with a certificate made for the test by the openssl command."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import trio
from transport_helpers import collect, running

from pubsub_rpc import ClientInfo, ConnectionClosedError
from transports import Server, tcp

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made once per module: key generation is slow)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=pubsub-rpc test",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_round_trip(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
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
