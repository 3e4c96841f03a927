"""The broker's hooks for the layers above: a backplane to other servers, and live counters.

Connections are fakes; the backplane is a recorder.  What is checked: the
backplane hears of every subscription that appears or goes (including those
alive when it is attached and those of a closed connection), a publish adds
the backplane's remote count to ``listeners``, a remote event is delivered
here without reaching the publisher's own subscriptions, and ``stats`` is
gated by ``can_inspect`` and counts requests, refusals, bytes and pattern
subscriptions.
"""

from __future__ import annotations

import orjson
import pytest
from server_helpers import started_broker
from test_broker import FakeConnection, make_broker, subscribe

from pubsub_rpc import (
    Broker,
    ClientInfo,
    ErrorCode,
    LocalProtocolError,
    Pattern,
    RequestError,
    ServerConnection,
)


class RecordingBackplane:
    """Records what the broker tells it; ``remote`` is the count ``forward`` reports."""

    def __init__(self, remote: int | None = 0) -> None:
        self.remote = remote
        self.live: dict[str, tuple[str, str]] = {}  # subscription id -> (event name, client id)
        self.forwarded: list[tuple[str, object, str]] = []

    def subscription_added(self, subscription) -> None:
        assert subscription.id not in self.live
        self.live[subscription.id] = (subscription.event_name, subscription.client_id)

    def subscription_removed(self, subscription) -> None:
        del self.live[subscription.id]

    def forward(self, event, exclude_client_id: str | None) -> int | None:
        self.forwarded.append((event.event_name, event.value, exclude_client_id))
        return self.remote


class ClosingConnection(FakeConnection):
    """A connection that refuses every event, as a slow consumer being cut off does."""

    def push_event(self, event, subscription) -> bool:
        return False


def test_backplane_hears_of_existing_new_and_removed_subscriptions() -> None:
    broker = make_broker()
    a, b = FakeConnection(), FakeConnection()
    early = subscribe(broker, a, "alice", "news")
    backplane = RecordingBackplane()
    broker.attach_backplane(backplane)
    assert backplane.live == {early: ("news", "alice")}
    late = subscribe(broker, b, "bob", "news")
    other = subscribe(broker, b, "bob", "sport")
    assert set(backplane.live) == {early, late, other}
    broker.unsubscribe(b, "bob", late)
    assert set(backplane.live) == {early, other}
    broker.drop_connection(b)
    assert set(backplane.live) == {early}
    with pytest.raises(LocalProtocolError):
        broker.attach_backplane(RecordingBackplane())
    broker.detach_backplane()
    subscribe(broker, b, "bob", "news")
    assert set(backplane.live) == {early}


def test_publish_forwards_once_and_adds_the_remote_listeners() -> None:
    broker = make_broker()
    a = FakeConnection()
    subscribe(broker, a, "alice", "news")
    backplane = RecordingBackplane(remote=5)
    broker.attach_backplane(backplane)
    assert broker.publish(FakeConnection(), "bob", "news", {"n": 1})["listeners"] == 6
    assert broker.publish(FakeConnection(), "bob", "quiet", 2)["listeners"] == 5
    assert backplane.forwarded == [("news", {"n": 1}, "bob"), ("quiet", 2, "bob")]
    # A refused publish is not forwarded.
    with pytest.raises(RequestError):
        broker.publish(FakeConnection(), "nopub", "news", 3)
    assert len(backplane.forwarded) == 2
    # Other servers out of reach: local delivery still happens, and the answer says so.
    backplane.remote = None
    answer = broker.publish(FakeConnection(), "bob", "news", 4)
    assert answer == {"listeners": 1, "client_id": "bob", "forwarded": False}
    assert a.deliveries[-1][1] == 4


def test_remote_events_skip_the_publishers_own_subscriptions() -> None:
    broker = make_broker()
    a, b = FakeConnection(), FakeConnection()
    sa = subscribe(broker, a, "alice", "news")
    sb = subscribe(broker, b, "bob", "news")
    assert broker.deliver_remote("news", [1], exclude_client_id="alice") == 1
    assert a.deliveries == [] and b.deliveries == [("news", [1], sb)]
    assert broker.deliver_remote("news", [2], exclude_client_id=None) == 2
    assert a.deliveries == [("news", [2], sa)]
    assert broker.deliver_remote("nobody-listens", 3, exclude_client_id=None) == 0
    # Remote deliveries are counted as deliveries, not as publishes of this server.
    assert (broker.events_published, broker.events_delivered) == (0, 3)


def test_dropped_deliveries_are_counted_apart_from_delivered_ones() -> None:
    broker = make_broker()
    subscribe(broker, FakeConnection(), "alice", "news")
    subscribe(broker, ClosingConnection(), "carol", "news")
    assert broker.publish(FakeConnection(), "bob", "news", 1)["listeners"] == 1
    assert (broker.events_delivered, broker.events_dropped) == (1, 1)


def test_stats_needs_can_inspect_and_merges_sources() -> None:
    broker = Broker()
    broker.register_client(ClientInfo("operator", can_inspect=True))
    broker.register_client(ClientInfo("alice"))
    broker.add_stats_source(lambda: {"connections": 7})
    broker.start()
    conn = FakeConnection()
    subscribe(broker, conn, "alice", "news")
    with pytest.raises(RequestError) as refused:
        broker.inspect(conn, "alice")
    assert refused.value.code == ErrorCode.INSPECT_FORBIDDEN
    assert refused.value.message == "You are not allowed to read server statistics."
    stats = broker.inspect(conn, "operator")
    assert stats["clients_registered"] == 2
    assert stats["subscriptions"] == 1 and stats["event_names"] == 1
    assert stats["connections"] == 7
    # A trusted connection's ad-hoc identity may inspect, as it may do anything.
    assert broker.inspect(FakeConnection(trusted=True), None)["subscriptions"] == 1


def test_stats_count_pattern_subscriptions_as_they_come_and_go() -> None:
    broker = started_broker(ClientInfo("operator", can_inspect=True), ClientInfo("alice"))
    first, second = FakeConnection(), FakeConnection()
    operator = FakeConnection()
    assert broker.inspect(operator, "operator")["pattern_subscriptions"] == 0
    subscribe(broker, first, "alice", "user.login")
    made = broker.subscribe_pattern(first, "alice", Pattern.parse("user.>"))["subscription_id"]
    broker.subscribe_pattern(first, "alice", Pattern.parse("user.*"))
    broker.subscribe_pattern(second, "alice", Pattern.parse("user.>"))  # the same text counts again
    stats = broker.inspect(operator, "operator")
    # Pattern subscriptions are subscriptions too, and name no event name.
    assert (stats["subscriptions"], stats["pattern_subscriptions"], stats["event_names"]) == (4, 3, 1)
    broker.unsubscribe(first, "alice", made)
    assert broker.stats()["pattern_subscriptions"] == 2
    assert broker.drop_connection(first) == 2  # its exact one and its remaining pattern
    assert (broker.stats()["subscriptions"], broker.stats()["pattern_subscriptions"]) == (1, 1)
    broker.drop_connection(second)
    assert broker.stats()["pattern_subscriptions"] == 0
    broker.check_consistency()


def test_connections_count_requests_refusals_and_bytes() -> None:
    broker = started_broker(ClientInfo("operator", can_inspect=True))
    conn = ServerConnection(broker)
    requests = [
        {"jsonrpc": "2.0", "method": "ping", "id": 1},
        {"jsonrpc": "2.0", "method": "publish", "params": {"event_name": "x", "value": 1}, "id": 2},
        {"jsonrpc": "2.0", "method": "nope", "id": 3},
    ]
    data = b"".join(orjson.dumps(r) + b"\n" for r in requests) + b"{not json}\n"
    conn.receive_data(data)
    sent = conn.data_to_send()
    conn.receive_data(b'{"jsonrpc":"2.0","method":"stats","params":{"client_id":"operator"},"id":4}\n')
    answer = orjson.loads(conn.data_to_send())
    stats = answer["result"]
    assert stats["requests"] == 4  # three, then this stats request; the bad frame never became one
    assert stats["requests_refused"] == 3  # unknown client, unknown method, bad JSON
    assert stats["bytes_received"] == len(data) + len(
        b'{"jsonrpc":"2.0","method":"stats","params":{"client_id":"operator"},"id":4}\n'
    )
    assert stats["bytes_sent"] == len(sent)
    # And the id-less trip through the pub_sub dialect gives the same object.
    conn.receive_data(
        b'{"jsonrpc":"2.0","method":"stats","params":{"client_id":"operator","request_id":"r"}}\n'
    )
    answer = orjson.loads(conn.data_to_send())
    assert answer["method"] == "r" and answer["params"]["status"] is True
    assert answer["params"]["result"]["requests"] == 5  # counted before it runs, as the first was
