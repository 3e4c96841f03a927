"""Client ids are secrets; permissions hold; the socket file and TLS do their part.

* no log line, at any level, ever contains a client id (registered, digest-registered,
  ad-hoc, or a wrong guess);
* ids reach no connection but the one that presented them (or was given them);
* a client may be registered by the SHA-256 of its id (``id_sha256``);
* Unix socket files are 0600 unless configured otherwise;
* TLS works end to end, and a client refuses a certificate it should not trust;
* an untrusted adapter never mints an ad-hoc identity; nobody can unsubscribe, or be
  delivered, another client's subscription.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
import trio
import trustme
from hardening_helpers import (
    HOSTILE,
    PUBSUB_RPC,
    WITNESS_PUBLISHER,
    WITNESS_SUBSCRIBER,
    RawPeer,
    child_env,
    clients_toml,
    error,
    make_server,
    read_line,
    request,
    running,
    wait_until,
    witness,
)

from pubsub_rpc import (
    Broker,
    ClientInfo,
    ConnectionClosedError,
    LocalProtocolError,
    RequestError,
    ServerConnection,
)
from transports import Server, tcp, unix
from transports._clients_file import ClientsFileError, load_clients


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- logs ------------------------------------------------------------------------------------


async def test_no_client_id_appears_in_any_log_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full session that touches every code path that logs, captured at DEBUG."""
    caplog.set_level(logging.DEBUG)
    plain, digested, guessed = "plain-s3cret-id", "digest-s3cret-id", "guessed-s3cret-id"
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    unix_adapter = unix.Adapter(tmp_path / "s.sock", trusted=True)
    server = Server(
        [tcp_adapter, unix_adapter],
        max_outbound=32 * 1024,
        max_subscriptions=2,
        max_connections=4,
        idle_timeout=0.3,
        close_timeout=0.3,
    )
    server.register_client(ClientInfo(plain))
    server.register_client(ClientInfo.from_sha256(sha256_hex(digested)))
    secrets = [plain, digested, guessed]
    async with running(server):
        async with (
            tcp.connect("127.0.0.1", tcp_adapter.port, client_id=plain, keepalive=0.2) as a,
            tcp.connect("127.0.0.1", tcp_adapter.port, client_id=digested) as b,
            unix.connect(unix_adapter.path) as adhoc,
        ):
            values = await b.subscribe("e")
            await adhoc.subscribe("e")
            assert await a.publish("e", 1) == 2
            assert await values.__anext__() == 1
            assert adhoc.client_id is not None
            secrets.append(adhoc.client_id)
            await b.subscribe("second")
            with pytest.raises(RequestError, match="at most 2 subscriptions"):
                await b.subscribe("one too many")
            async with tcp.connect("127.0.0.1", tcp_adapter.port, client_id=guessed) as intruder:
                with pytest.raises(RequestError, match="Unrecognized"):
                    await intruder.publish("e", 1)
            await values.unsubscribe()
            # A slow consumer, an idle peer, a broken one, one too many connections.
            stalled = await RawPeer.connect(tcp_adapter.port)
            await stalled.send(request("subscribe", {"client_id": plain, "event_name": "big"}))
            await stalled.read_one()
            while await b.publish("big", "x" * 8000) == 1:
                pass
            idle = await RawPeer.connect(tcp_adapter.port)
            await idle.read_until_closed()
            broken = await RawPeer.connect(tcp_adapter.port)
            await broken.send(b"Content-Length: x\r\n\r\n" + plain.encode())
            await broken.read_until_closed()
            await trio.sleep(0.4)
            stalled.reset()
        await wait_until(lambda: server.connection_count == 0)
        assert server.stats.slow_consumers == 1 and server.stats.idle_closed == 1
    logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert len(caplog.records) > 10  # the session did log
    for secret in secrets:
        assert secret not in logged


def test_the_command_line_server_logs_no_client_id(tmp_path: Path) -> None:
    secret = "cli-s3cret-id"
    clients = tmp_path / "clients.toml"
    clients.write_text(f'[[client]]\nid = "{secret}"\n', encoding="utf-8")
    process = subprocess.Popen(
        [PUBSUB_RPC, "-vv", "serve", "--clients", str(clients), "--tcp", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert process.stdout is not None
    url = process.stdout.readline().split()[-1]
    published = subprocess.run(
        [PUBSUB_RPC, "-vv", "publish", url, "e", "1"],
        env={**child_env(), "PUBSUB_RPC_CLIENT_ID": secret},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    refused = subprocess.run(
        [PUBSUB_RPC, "-vv", "publish", url, "e", "1", "--client-id", secret + "-wrong"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    process.send_signal(signal.SIGTERM)
    _out, server_log = process.communicate(timeout=30)
    assert published.returncode == 0 and published.stdout.strip() == "0"
    assert refused.returncode == 1
    assert "DEBUG" in server_log and "INFO" in server_log
    assert secret not in server_log and secret not in published.stderr
    # The refusal names the id to the one who sent it, on its own terminal, and nowhere else.
    assert secret + "-wrong" in refused.stderr and secret + "-wrong" not in server_log


# -- ids reach their owner only ------------------------------------------------------------


async def test_ids_are_never_sent_to_another_connection(tmp_path: Path) -> None:
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    unix_adapter = unix.Adapter(tmp_path / "s.sock", trusted=True)
    server = Server([tcp_adapter, unix_adapter])
    for client_id in (WITNESS_PUBLISHER, WITNESS_SUBSCRIBER, HOSTILE):
        server.register_client(ClientInfo(client_id))
    async with running(server):
        sniffer = await RawPeer.connect(tcp_adapter.port)
        await sniffer.send(request("subscribe", {"client_id": HOSTILE, "event_name": "e"}))
        await sniffer.read_one()
        async with (
            tcp.connect("127.0.0.1", tcp_adapter.port, client_id=WITNESS_PUBLISHER) as publisher,
            unix.connect(unix_adapter.path) as adhoc,
        ):
            assert await publisher.publish("e", "from a registered client") == 1
            assert await adhoc.publish("e", "from an ad-hoc identity") == 1
            assert adhoc.client_id is not None
            # A failure that names an id goes to the sender only.
            intruder = await RawPeer.connect(tcp_adapter.port)
            await intruder.send(
                request("publish", {"client_id": "guess-s3cret", "event_name": "e", "value": 1})
            )
            assert await intruder.read_one() == error(-32001, 'Unrecognized client ID "guess-s3cret".', 1)
            events = await sniffer.read(2)
            raw = repr(events).encode()
            assert [event["params"]["value"] for event in events] == [
                "from a registered client",
                "from an ad-hoc identity",
            ]
            assert set(events[0]["params"]) == {"event_name", "value", "subscription_id"}
            for secret in (WITNESS_PUBLISHER, adhoc.client_id, "guess-s3cret"):
                assert secret.encode() not in raw
            await sniffer.expect_nothing()


# -- id_sha256 -------------------------------------------------------------------------------


def test_a_client_registered_by_digest() -> None:
    secret = "digest-s3cret"
    broker = Broker()
    broker.register_client(ClientInfo.from_sha256(sha256_hex(secret).upper(), can_publish=False))
    broker.register_client(ClientInfo("plain-s3cret"))
    broker.start()
    connection = ServerConnection(broker)

    def ask(method: str, **params: object) -> object:
        connection.receive_data(request(method, params))
        import orjson

        return orjson.loads(connection.data_to_send())

    answer = ask("subscribe", client_id=secret, event_name="e")
    assert answer["result"]["client_id"] == secret  # type: ignore[index]
    subscription_id = answer["result"]["subscription_id"]  # type: ignore[index]
    assert ask("publish", client_id=secret, event_name="e", value=1) == error(
        -32002, "You are not allowed to publish events.", 1
    )
    for wrong in (secret.upper(), secret[:-1], secret + " ", sha256_hex(secret)):
        assert ask("subscribe", client_id=wrong, event_name="e") == error(
            -32001, f'Unrecognized client ID "{wrong}".', 1
        )
    assert (
        ask("unsubscribe", client_id="plain-s3cret", subscription_id=subscription_id)["error"]["code"]
        == -32005
    )  # type: ignore[index]
    assert ask("unsubscribe", client_id=secret, subscription_id=subscription_id) == {
        "jsonrpc": "2.0",
        "result": {},
        "id": 1,
    }


def test_digest_registration_rules() -> None:
    digest = sha256_hex("s3cret")
    with pytest.raises(ValueError, match="64 hexadecimal"):
        ClientInfo.from_sha256("not a digest")
    info = ClientInfo.from_sha256(digest)
    assert digest not in repr(info) and "redacted" in repr(info)
    broker = Broker()
    broker.register_client(ClientInfo("s3cret"))
    with pytest.raises(LocalProtocolError, match="already registered"):
        broker.register_client(ClientInfo.from_sha256(digest))
    with pytest.raises(LocalProtocolError, match="not both"):
        broker.register_client(ClientInfo("x", id_sha256=digest))
    with pytest.raises(LocalProtocolError, match="64 hexadecimal"):
        broker.register_client(ClientInfo("", id_sha256="abc"))
    other = Broker()
    other.register_client(ClientInfo.from_sha256(digest))
    with pytest.raises(LocalProtocolError, match="already registered"):
        other.register_client(ClientInfo("s3cret"))


def test_clients_file_with_digests(tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    digest = sha256_hex("s3cret")
    path.write_text(f'[[client]]\nid_sha256 = "{digest}"\ncan_subscribe = false\n', encoding="utf-8")
    assert load_clients(path) == [ClientInfo.from_sha256(digest, can_subscribe=False)]
    path.write_text(f'[[client]]\nid_sha256 = "{digest}"\n[[client]]\nid = "s3cret"\n', encoding="utf-8")
    with pytest.raises(ClientsFileError, match="repeats the id") as repeated:
        load_clients(path)
    assert "s3cret" not in str(repeated.value).replace(str(path), "")
    path.write_text('[[client]]\nid_sha256 = "s3cret"\n', encoding="utf-8")
    with pytest.raises(ClientsFileError, match="64 hexadecimal digits"):
        load_clients(path)


# -- Unix socket files -------------------------------------------------------------------------


async def test_unix_socket_file_modes_from_the_command_line(tmp_path: Path) -> None:
    clients = clients_toml(tmp_path / "clients.toml", "a")
    for flags, expected in (([], 0o600), (["--unix-mode", "660"], 0o660)):
        path = tmp_path / f"s{expected:o}.sock"
        process = subprocess.Popen(
            [PUBSUB_RPC, "serve", "--clients", str(clients), "--unix", str(path), *flags],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        try:
            assert (await read_line(process)).startswith("listening on unix://")
            mode = os.lstat(path).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == expected
        finally:
            process.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(process.wait) == 0
            assert process.stdout is not None
            process.stdout.close()
        assert not path.exists()


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


async def test_tls_end_to_end(authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)  # trusts another authority only

    adapter = tcp.Adapter("127.0.0.1", 0, ssl_context=server_context)
    server = Server([adapter])
    for client_id in (WITNESS_PUBLISHER, WITNESS_SUBSCRIBER, HOSTILE):
        server.register_client(ClientInfo(client_id))
    async with running(server):
        async with (
            tcp.connect(
                "127.0.0.1", adapter.port, client_id=WITNESS_PUBLISHER, ssl_context=trusting
            ) as publisher,
            tcp.connect(
                "127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER, ssl_context=trusting
            ) as subscriber,
        ):
            values = await subscriber.subscribe("secure")
            # Refused: a certificate from an authority the client does not trust...
            with pytest.raises(ConnectionClosedError, match="CERTIFICATE_VERIFY_FAILED"):
                async with tcp.connect("127.0.0.1", adapter.port, client_id=HOSTILE, ssl_context=stranger):
                    pass
            # ... a certificate for another name ...
            with pytest.raises(ConnectionClosedError, match="CERTIFICATE_VERIFY_FAILED"):
                async with tcp.connect(
                    "127.0.0.1", adapter.port, ssl_context=trusting, server_hostname="example.org"
                ):
                    pass
            # ... and plaintext to a TLS port gets nowhere.
            with pytest.raises(ConnectionClosedError):
                async with tcp.connect(
                    "127.0.0.1", adapter.port, client_id=HOSTILE, request_timeout=2
                ) as plain:
                    await plain.ping()
            # The trusted session never noticed.
            assert await publisher.publish("secure", {"ok": True}) == 1
            assert await values.__anext__() == {"ok": True}
        # localhost works as a name, too.
        async with tcp.connect("localhost", adapter.port, client_id=HOSTILE, ssl_context=trusting) as by_name:
            await by_name.ping()


# -- identities and permissions ----------------------------------------------------------------


async def test_an_untrusted_adapter_never_mints_identities(tmp_path: Path) -> None:
    server, adapter = make_server()
    trusted = unix.Adapter(tmp_path / "t.sock", trusted=True)
    server.add_adapter(trusted)
    missing = 'Unrecognized client ID "<missing>".'
    async with running(server), witness(adapter):
        peer = await RawPeer.connect(adapter.port)
        for method, params in (
            ("subscribe", {"event_name": "e"}),
            ("publish", {"event_name": "e", "value": 1}),
        ):
            for client_id in (None, ""):
                await peer.send(request(method, {**params, "client_id": client_id}))
                assert await peer.read_one() == error(-32001, missing, 1)
            await peer.send(request(method, params))
            assert await peer.read_one() == error(-32001, missing, 1)
        assert server.broker.connections_held == 1  # the witness's subscription, no identity
        # An ad-hoc id minted on the trusted socket is a stranger on TCP.
        async with unix.connect(trusted.path) as local:
            await local.ping()
            await local.subscribe("mine")
            adhoc = local.client_id
            assert adhoc is not None
            await peer.send(request("publish", {"event_name": "mine", "value": 1, "client_id": adhoc}))
            assert await peer.read_one() == error(-32001, f'Unrecognized client ID "{adhoc}".', 1)


async def test_nobody_unsubscribes_or_receives_another_clients_subscription(tmp_path: Path) -> None:
    server, adapter = make_server()
    trusted = unix.Adapter(tmp_path / "t.sock", trusted=True)
    server.add_adapter(trusted)
    not_yours = "That is not your subscription to cancel."
    async with (
        running(server),
        witness(adapter),
        tcp.connect("127.0.0.1", adapter.port, client_id=WITNESS_SUBSCRIBER) as owner,
    ):
        subscription = await owner.subscribe("private")
        other = await RawPeer.connect(adapter.port)
        for client_id in (HOSTILE, None):
            params = {"subscription_id": subscription.id, "client_id": client_id}
            await other.send(request("unsubscribe", params))
            assert await other.read_one() == error(-32005, not_yours, 1)
        async with await trio.open_unix_socket(str(trusted.path)) as local_stream:
            local = RawPeer(local_stream)  # type: ignore[arg-type]
            await local.send(request("subscribe", {"event_name": "private"}))
            await local.read_one()
            await local.send(request("unsubscribe", {"subscription_id": subscription.id}))
            assert await local.read_one() == error(-32005, not_yours, 1)
            # Its own subscription to the same name gets its own copies, never the owner's.
            await other.send(request("publish", {"client_id": HOSTILE, "event_name": "private", "value": 7}))
            assert (await other.read_one())["result"]["listeners"] == 2
            event = await local.read_one()
            assert event["params"]["subscription_id"] != subscription.id
            assert await subscription.__anext__() == 7
        # The owner's subscription is intact.
        await other.send(request("publish", {"client_id": HOSTILE, "event_name": "private", "value": 8}))
        assert (await other.read_one())["result"]["listeners"] == 1
        assert await subscription.__anext__() == 8
        await other.expect_nothing()
