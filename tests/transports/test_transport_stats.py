"""The ``stats`` request over every transport: counters, per-adapter connections, the permission.

``Client.stats()`` asks the server for its live counters; only a client
registered with ``can_inspect`` (or a trusted connection's ad-hoc identity)
gets them.  Client ids never appear in the answer.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from transport_helpers import REPO_ROOT, TRANSPORTS, Harness, collect, make_adapter, running, wait_until

from pubsub_rpc import ClientInfo, ErrorCode, RequestError
from transports import Server, tcp, unix

OPERATOR = "stats::operator-secret"
USER = "stats::user-secret"
OTHER = "stats::other-secret"
NOT_ALLOWED = "You are not allowed to read server statistics."

#: Members every stats answer from a transports Server has: those the schema requires of
#: every server (spec/schemas/stats.result.json, the normative list) and those it adds.
REQUIRED = set(orjson.loads((REPO_ROOT / "spec" / "schemas" / "stats.result.json").read_bytes())["required"]) | {
    "connections",
    "connections_accepted",
    "connections_refused",
    "slow_consumers",
    "idle_closed",
    "internal_errors",
    "request_faults",
    "uptime_seconds",
    "adapters",
}


def _server(kind: str, tmp_path: Path) -> Server:
    server = Server([make_adapter(kind, tmp_path, trusted=False)])
    server.register_client(ClientInfo(OPERATOR, can_inspect=True))
    server.register_client(ClientInfo(USER))
    server.register_client(ClientInfo(OTHER))
    return server


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_stats_reports_live_counters(kind: str, tmp_path: Path) -> None:
    server = _server(kind, tmp_path)
    async with running(server):
        harness = Harness(kind, server, server.adapters[0])
        async with (
            harness.connect(USER) as subscriber,
            harness.connect(OTHER) as publisher,
            harness.connect(OPERATOR) as operator,
            await subscriber.subscribe("stats.greeting") as subscription,
            await subscriber.psubscribe("stats.*") as everything,
        ):
            assert await publisher.publish("stats.greeting", "hello") == 2
            assert await collect(subscription, 1) == ["hello"]
            assert [event.event_name for event in await collect(everything, 1)] == ["stats.greeting"]
            stats = await operator.stats()
    assert set(stats) >= REQUIRED
    assert stats["clients_registered"] == 3
    # The pattern subscription is one of the two, and names no event name.
    assert stats["subscriptions"] == 2 and stats["pattern_subscriptions"] == 1 and stats["event_names"] == 1
    assert stats["events_published"] == 1 and stats["events_delivered"] == 2
    assert stats["events_dropped"] == 0
    # subscribe, psubscribe, publish, then this stats request: all answered, none refused.
    assert stats["requests"] == 4 and stats["requests_refused"] == 0
    assert stats["connections"] == 3 and stats["connections_accepted"] == 3
    assert stats["connections_refused"] == stats["slow_consumers"] == stats["idle_closed"] == 0
    assert stats["internal_errors"] == stats["request_faults"] == 0
    assert isinstance(stats["uptime_seconds"], float) and stats["uptime_seconds"] >= 0
    if kind == "inprocess":
        assert stats["bytes_received"] == stats["bytes_sent"] == 0  # objects, not bytes
    else:
        assert stats["bytes_received"] > 0 and stats["bytes_sent"] > 0
    served = [adapter for adapter in stats["adapters"] if adapter["accepted"]]
    assert len(served) == 1
    assert served[0]["connections"] == 3 and served[0]["accepted"] == 3 and served[0]["refused"] == 0
    expected_kind = {"tcp": "tcp", "tcp-pub_sub": "tcp", "unix": "unix", "inprocess": "inprocess"}
    # The pipe-pair harness serves its streams without an adapter.
    assert served[0]["kind"] == expected_kind.get(kind, "stream")


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_stats_refused_without_can_inspect(kind: str, tmp_path: Path) -> None:
    server = _server(kind, tmp_path)
    async with running(server):
        harness = Harness(kind, server, server.adapters[0])
        async with harness.connect(USER) as user, harness.connect(OPERATOR) as operator:
            with pytest.raises(RequestError) as caught:
                await user.stats()
            assert caught.value.code == ErrorCode.INSPECT_FORBIDDEN
            assert caught.value.message == NOT_ALLOWED
            # The refusal costs nothing else: the same connection carries on.
            await user.ping()
            stats = await operator.stats()
    assert stats["requests_refused"] == 1
    assert stats["connections"] == 2


async def test_inprocess_adhoc_identity_may_inspect(tmp_path: Path) -> None:
    # In-process peers are trusted; with no id they act with full rights, inspecting included.
    from transports import inprocess

    server = _server("inprocess", tmp_path)
    async with running(server), inprocess.connect(server) as client:
        stats = await client.stats()
        assert stats["connections"] == 1


async def test_stats_per_adapter_and_refusals_at_the_limit(tmp_path: Path) -> None:
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    unix_adapter = unix.Adapter(tmp_path / "s.sock")
    server = Server([tcp_adapter, unix_adapter], max_connections=1)
    server.register_client(ClientInfo(OPERATOR, can_inspect=True))
    async with running(server), tcp.connect("127.0.0.1", tcp_adapter.port, client_id=OPERATOR) as client:
        # A second TCP connection is over the limit: refused with closing.
        async with tcp.connect("127.0.0.1", tcp_adapter.port, client_id=OPERATOR) as refused:
            await wait_until(lambda: refused.closed)
        async with unix.connect(unix_adapter.path, client_id=OPERATOR) as other:
            await other.ping()
            stats = await client.stats()
    assert stats["connections"] == 2
    assert stats["connections_refused"] == 1 and stats["connections_accepted"] == 2
    assert stats["adapters"] == [
        {"name": tcp_adapter.url, "kind": "tcp", "connections": 1, "accepted": 1, "refused": 1},
        {"name": unix_adapter.url, "kind": "unix", "connections": 1, "accepted": 1, "refused": 0},
    ]


@pytest.mark.parametrize("kind", ["tcp", "inprocess"])
async def test_stats_never_contain_a_client_id(kind: str, tmp_path: Path) -> None:
    adapter = make_adapter(kind, tmp_path, trusted=True)
    server = Server([adapter])
    server.register_client(ClientInfo(OPERATOR, can_inspect=True))
    server.register_client(ClientInfo(USER))
    async with running(server):
        harness = Harness(kind, server, adapter)
        async with harness.connect(None) as adhoc, harness.connect(OPERATOR) as operator:
            await adhoc.subscribe("stats.secret")  # lives until the connection closes
            await adhoc.publish("stats.secret", 1)
            stats = await operator.stats()
            adhoc_id = adhoc.client_id
    assert adhoc_id is not None
    text = orjson.dumps(stats).decode()
    for secret in (OPERATOR, USER, adhoc_id, "stats::", "adhoc"):
        assert secret not in text


async def test_counters_grow_between_requests(tmp_path: Path) -> None:
    # Live values: each request is counted before the next answer is built.
    server = _server("tcp", tmp_path)
    async with running(server):
        adapter = server.adapters[0]
        assert isinstance(adapter, tcp.Adapter)
        async with tcp.connect("127.0.0.1", adapter.port, client_id=OPERATOR) as operator:
            first = await operator.stats()
            second = await operator.stats()
    assert second["uptime_seconds"] >= first["uptime_seconds"]
    assert second["requests"] == first["requests"] + 1
    assert second["bytes_received"] > first["bytes_received"]
