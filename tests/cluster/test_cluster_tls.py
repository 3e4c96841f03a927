"""``rediss://``: servers that reach Redis over TLS, the certificate and host name checked.

A private ``redis-server`` listens for TLS only (``--port 0 --tls-port``),
with a certificate from a throwaway authority (trustme) and client
certificates required; the servers are given the authority through
``ssl_ca_certs`` in the URL (coredis's parameter name; ``--redis-ca`` on the
command line) and their own certificate through ``ssl_certfile``/``ssl_keyfile``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme
from cluster_helpers import ALICE, BOB, RawClient, RedisProcess, cluster, redis_server_binary, wait_until

from pubsub_rpc import Broker
from transports._redis_bridge import RedisBridge
from transports._redis_options import tls_context
from transports._urls import BadURLError


def _tls_supported(binary: str) -> bool:
    # A build without TLS stops at the first tls-* option of its configuration.
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0"], capture_output=True, timeout=10, check=False
    )
    return b"tls-port" not in probe.stdout + probe.stderr


@pytest.fixture
async def tls_redis(tmp_path: Path) -> AsyncIterator[tuple[RedisProcess, Path, Path]]:
    """A TLS-only Redis; yields it, the CA file and a client certificate (key included)."""
    binary = redis_server_binary()
    if not _tls_supported(binary):
        message = "this redis-server was built without TLS"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; Debian's is built with it, which CI installs")
        pytest.skip(message)
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("pubsub-rpc-test-client")
    ca_file, key_file, cert_file, client_file = (tmp_path / n for n in ("ca.pem", "k.pem", "c.pem", "me.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    server_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(client_file))
    redis = RedisProcess(binary)
    redis.extra = (
        *("--port", "0", "--tls-port", str(redis.port)),
        *("--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file)),
        *("--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "yes"),
    )
    await redis.start()
    try:
        yield redis, ca_file, client_file
    finally:
        redis.stop()


async def test_a_cluster_over_tls(tls_redis: tuple[RedisProcess, Path, Path], prefix: str) -> None:
    redis, ca_file, client_file = tls_redis
    url = (
        f"rediss://127.0.0.1:{redis.port}/0?ssl_ca_certs={ca_file}"
        f"&ssl_certfile={client_file}&ssl_keyfile={client_file}"
    )
    async with (
        cluster(url, prefix, size=2) as (a, b),
        RawClient.open(a.port) as alice,
        RawClient.open(b.port) as bob,
    ):
        await bob.call("subscribe", client_id=BOB, pattern="secure.*")
        await wait_until(lambda: a.bridge.remote_listeners("secure.x") == 1)
        answer = await alice.call("publish", client_id=ALICE, event_name="secure.x", value="over TLS")
        assert answer == {"listeners": 1, "client_id": ALICE}
        assert await bob.next_event() == ("secure.x", "over TLS")


@pytest.mark.parametrize(
    ("host", "with_ca", "reason"),
    [("127.0.0.1", False, "certificate verify failed"), ("localhost", True, "match")],
)
async def test_an_unverified_redis_is_not_joined(
    tls_redis: tuple[RedisProcess, Path, Path],
    host: str,
    with_ca: bool,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis, ca_file, client_file = tls_redis
    # Without the CA the chain is unknown; with it, "localhost" is not a name on the certificate.
    ca = f"ssl_ca_certs={ca_file}&" if with_ca else ""
    url = f"rediss://{host}:{redis.port}/0?{ca}ssl_certfile={client_file}"
    bridge = RedisBridge(Broker(), url)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        await wait_until(lambda: bridge.outages == 1)
        assert not bridge.connected
        await bridge.aclose()
    [outage] = [r.getMessage() for r in caplog.records if "out of reach" in r.getMessage()]
    assert "CERTIFICATE_VERIFY_FAILED" in outage and reason in outage, outage


def test_tls_files_are_checked_before_serving(tmp_path: Path) -> None:
    with pytest.raises(BadURLError, match="TLS files"):
        tls_context("rediss://h:1/0", str(tmp_path / "missing.pem"))
    with pytest.raises(BadURLError, match="rediss"):
        tls_context("redis://h:1/0", str(tmp_path / "ca.pem"))
    context = tls_context("rediss://h:1/0?ssl_check_hostname=false")
    assert context is not None and not context.check_hostname
    default = tls_context("rediss://h:1/0")
    assert default is not None and default.check_hostname
    assert tls_context("redis://h:1/0") is None
