"""The broker alone: registration, identities, permissions, fan-out, unsubscribe, cleanup.

No wire format here: connections are tiny fakes that record what the broker
pushes to them.  Rejection texts are the original ``pub_sub``'s, to the character.
"""

from __future__ import annotations

import pytest
import server_helpers
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pubsub_rpc import ADHOC_PREFIX, Broker, ClientInfo, ErrorCode, LocalProtocolError, RequestError


class FakeConnection:
    """A ``Subscriber`` that records every delivery as (event_name, value, subscription_id)."""

    def __init__(self, *, trusted: bool = False) -> None:
        self.trusted = trusted
        self.deliveries: list[tuple[str, object, str]] = []

    def push_event(self, event, subscription) -> bool:
        self.deliveries.append((event.event_name, event.value, subscription.id))
        return True


def make_broker() -> Broker:
    """The usual started broker, with carol, a third client who may do anything."""
    return server_helpers.make_broker(ClientInfo("carol"))


def subscribe(broker: Broker, conn: FakeConnection, client_id: str | None, event_name: str) -> str:
    return broker.subscribe(conn, client_id, event_name)["subscription_id"]


def rejected(call, *args) -> RequestError:
    with pytest.raises(RequestError) as info:
        call(*args)
    return info.value


def event_buckets(broker: Broker) -> dict[str, dict]:
    # White-box: the per-event-name index must not keep empty buckets around.
    return broker._by_event


# -- registration -------------------------------------------------------------


def test_registration_rules() -> None:
    broker = Broker()
    broker.register_client(ClientInfo("alice"))
    with pytest.raises(LocalProtocolError) as duplicate:
        broker.register_client(ClientInfo("alice", can_publish=False))
    assert duplicate.value.message == "A client with the same ID is already registered."
    with pytest.raises(LocalProtocolError) as empty:
        broker.register_client(ClientInfo(""))
    assert empty.value.message == "A client ID must be a non-empty string."
    assert not broker.started
    broker.start()
    assert broker.started
    with pytest.raises(LocalProtocolError) as info:
        broker.register_client(ClientInfo("bob"))
    assert info.value.message == "You cannot register new clients after the server has started listening."


def test_first_registration_keeps_its_permissions_after_a_rejected_duplicate() -> None:
    broker = Broker()
    broker.register_client(ClientInfo("alice"))
    with pytest.raises(LocalProtocolError):
        broker.register_client(ClientInfo("alice", can_publish=False))
    broker.start()
    assert broker.publish(FakeConnection(), "alice", "e", 1)["client_id"] == "alice"


# -- identity -----------------------------------------------------------------


def test_registered_client_acts_as_itself() -> None:
    broker, conn = make_broker(), FakeConnection()
    assert broker.publish(conn, "alice", "e", 1) == {"listeners": 0, "client_id": "alice"}
    assert broker.subscribe(conn, "bob", "e")["client_id"] == "bob"


@pytest.mark.parametrize("operation", ["publish", "subscribe"])
@pytest.mark.parametrize("trusted", [False, True])
def test_unknown_client_id_is_rejected_even_on_trusted_connections(operation: str, trusted: bool) -> None:
    broker = make_broker()
    args = ("e", 1) if operation == "publish" else ("e",)
    error = rejected(getattr(broker, operation), FakeConnection(trusted=trusted), "x", *args)
    assert error.message == 'Unrecognized client ID "x".'
    assert error.code == ErrorCode.UNKNOWN_CLIENT


@pytest.mark.parametrize("operation", ["publish", "subscribe"])
@pytest.mark.parametrize("client_id", [None, ""])
def test_missing_client_id_on_untrusted_connection_is_rejected(operation: str, client_id: str | None) -> None:
    broker = make_broker()
    args = ("e", 1) if operation == "publish" else ("e",)
    error = rejected(getattr(broker, operation), FakeConnection(), client_id, *args)
    assert error.message == 'Unrecognized client ID "<missing>".'
    assert error.code == ErrorCode.UNKNOWN_CLIENT


def test_trusted_connection_gets_one_adhoc_identity_reused_across_requests() -> None:
    broker, conn = make_broker(), FakeConnection(trusted=True)
    first = broker.publish(conn, None, "e", 1)["client_id"]
    assert first.startswith(ADHOC_PREFIX)
    assert broker.subscribe(conn, "", "e")["client_id"] == first
    assert broker.publish(conn, None, "e", 2)["client_id"] == first
    # The minted id also works when the connection sends it back explicitly.
    assert broker.publish(conn, first, "e", 3)["client_id"] == first


def test_adhoc_identities_differ_per_connection_and_do_not_travel() -> None:
    broker = make_broker()
    one, two = FakeConnection(trusted=True), FakeConnection(trusted=True)
    id_one = broker.publish(one, None, "e", 1)["client_id"]
    id_two = broker.publish(two, None, "e", 1)["client_id"]
    assert id_one != id_two
    for operation, args in (("publish", ("e", 1)), ("subscribe", ("e",))):
        error = rejected(getattr(broker, operation), two, id_one, *args)
        assert error.message == f'Unrecognized client ID "{id_one}".'


def test_adhoc_identity_has_full_rights() -> None:
    broker, conn, other = make_broker(), FakeConnection(trusted=True), FakeConnection()
    subscribe(broker, other, "bob", "e")
    assert broker.publish(conn, None, "e", 1)["listeners"] == 1
    subscribe(broker, conn, None, "e")
    assert broker.publish(other, "bob", "e", 2)["listeners"] == 1


def test_adhoc_identity_dies_with_its_connection() -> None:
    broker, conn = make_broker(), FakeConnection(trusted=True)
    old = broker.publish(conn, None, "e", 1)["client_id"]
    broker.drop_connection(conn)
    error = rejected(broker.publish, FakeConnection(trusted=True), old, "e", 1)
    assert error.message == f'Unrecognized client ID "{old}".'
    assert rejected(broker.publish, conn, old, "e", 1).code == ErrorCode.UNKNOWN_CLIENT
    assert broker.publish(conn, None, "e", 1)["client_id"] not in (old, None)


# -- permissions --------------------------------------------------------------


def test_publish_permission() -> None:
    broker, conn, listener = make_broker(), FakeConnection(), FakeConnection()
    subscribe(broker, listener, "bob", "e")
    error = rejected(broker.publish, conn, "nopub", "e", 1)
    assert (error.message, error.code) == (
        "You are not allowed to publish events.",
        ErrorCode.PUBLISH_FORBIDDEN,
    )
    assert listener.deliveries == []
    assert broker.events_published == 0
    subscribe(broker, conn, "nopub", "e")  # may still subscribe


def test_subscribe_permission() -> None:
    broker, conn = make_broker(), FakeConnection()
    error = rejected(broker.subscribe, conn, "nosub", "e")
    assert error.message == "You are not allowed to subscribe to events."
    assert error.code == ErrorCode.SUBSCRIBE_FORBIDDEN
    assert broker.subscription_count == 0
    assert broker.publish(conn, "nosub", "e", 1)["listeners"] == 0  # may still publish


# -- fan-out and listeners ----------------------------------------------------


def test_listeners_count_subscriptions_not_clients() -> None:
    broker, sub, pub = make_broker(), FakeConnection(), FakeConnection()
    first = subscribe(broker, sub, "bob", "e")
    second = subscribe(broker, sub, "bob", "e")
    assert broker.listener_count("e") == 2
    assert broker.publish(pub, "alice", "e", {"v": 1}) == {"listeners": 2, "client_id": "alice"}
    assert sub.deliveries == [("e", {"v": 1}, first), ("e", {"v": 1}, second)]
    assert (broker.events_published, broker.events_delivered) == (1, 2)


def test_publisher_is_excluded_on_all_its_connections() -> None:
    broker = make_broker()
    a1, a2, b, pub = FakeConnection(), FakeConnection(), FakeConnection(), FakeConnection()
    subscribe(broker, a1, "alice", "e")
    subscribe(broker, a2, "alice", "e")
    bob_sub = subscribe(broker, b, "bob", "e")
    assert broker.listener_count("e") == 3  # before publisher exclusion
    assert broker.publish(pub, "alice", "e", "x")["listeners"] == 1
    assert (a1.deliveries, a2.deliveries) == ([], [])
    assert b.deliveries == [("e", "x", bob_sub)]


def test_events_cross_connections_and_only_reach_their_event_name() -> None:
    broker, sub_a, sub_b, pub = (
        make_broker(),
        FakeConnection(),
        FakeConnection(trusted=True),
        FakeConnection(),
    )
    sid_a = subscribe(broker, sub_a, "bob", "e")
    sid_b = subscribe(broker, sub_b, None, "e")
    subscribe(broker, sub_a, "bob", "other")
    assert broker.publish(pub, "alice", "e", None)["listeners"] == 2
    assert sub_a.deliveries == [("e", None, sid_a)]
    assert sub_b.deliveries == [("e", None, sid_b)]
    assert broker.publish(pub, "alice", "nobody-listens", 1)["listeners"] == 0


# -- unsubscribe --------------------------------------------------------------


def test_unsubscribe_removes_the_subscription() -> None:
    broker, sub, pub = make_broker(), FakeConnection(), FakeConnection()
    sid = subscribe(broker, sub, "bob", "e")
    assert broker.unsubscribe(sub, "bob", sid) == {}
    assert broker.publish(pub, "alice", "e", 1)["listeners"] == 0
    assert sub.deliveries == []
    assert "e" not in event_buckets(broker)
    error = rejected(broker.unsubscribe, sub, "bob", sid)
    assert error.message == "The specified subscription does not exist."
    assert error.code == ErrorCode.NO_SUCH_SUBSCRIPTION


@pytest.mark.parametrize(
    ("client_id", "trusted"), [("alice", False), (None, False), ("", True), (None, True)]
)
def test_only_the_owner_may_unsubscribe(client_id: str | None, trusted: bool) -> None:
    broker = make_broker()
    sid = subscribe(broker, FakeConnection(), "bob", "e")
    error = rejected(broker.unsubscribe, FakeConnection(trusted=trusted), client_id, sid)
    assert error.message == "That is not your subscription to cancel."
    assert error.code == ErrorCode.NOT_YOUR_SUBSCRIPTION
    assert broker.subscription_count == 1


def test_same_client_id_may_unsubscribe_from_another_connection() -> None:
    # Client ids are shared credentials, as in the original.
    broker = make_broker()
    sid = subscribe(broker, FakeConnection(), "bob", "e")
    broker.unsubscribe(FakeConnection(), "bob", sid)
    assert broker.subscription_count == 0


@pytest.mark.parametrize("client_id", [None, ""])
def test_trusted_connection_without_id_cancels_its_adhoc_subscriptions(client_id: str | None) -> None:
    broker, conn = make_broker(), FakeConnection(trusted=True)
    sid = subscribe(broker, conn, None, "e")
    broker.unsubscribe(conn, client_id, sid)
    assert broker.subscription_count == 0


def test_another_trusted_connection_cannot_cancel_adhoc_subscriptions_without_the_id() -> None:
    broker, owner, other = make_broker(), FakeConnection(trusted=True), FakeConnection(trusted=True)
    sid = subscribe(broker, owner, None, "e")
    broker.publish(other, None, "x", 1)  # give `other` an ad-hoc identity of its own
    assert rejected(broker.unsubscribe, other, None, sid).code == ErrorCode.NOT_YOUR_SUBSCRIPTION


def test_adhoc_id_is_not_usable_for_unsubscribe_from_another_connection() -> None:
    broker, owner, other = make_broker(), FakeConnection(trusted=True), FakeConnection(trusted=True)
    sid = subscribe(broker, owner, None, "e")
    adhoc = broker.publish(owner, None, "x", 1)["client_id"]
    with pytest.raises(RequestError):
        broker.unsubscribe(other, adhoc, sid)
    assert broker.subscription_count == 1


# -- dropping connections -----------------------------------------------------


def test_drop_connection_removes_everything_it_owned() -> None:
    broker, gone, stays, pub = make_broker(), FakeConnection(trusted=True), FakeConnection(), FakeConnection()
    subscribe(broker, gone, "bob", "e")
    subscribe(broker, gone, None, "only-gone")
    kept = subscribe(broker, stays, "carol", "e")
    assert broker.drop_connection(gone) == 2
    assert broker.subscription_count == 1
    assert broker.subscriptions_of(gone) == 0
    assert set(event_buckets(broker)) == {"e"}
    assert broker.publish(pub, "alice", "e", 1)["listeners"] == 1
    assert (gone.deliveries, stays.deliveries) == ([], [("e", 1, kept)])
    assert broker.drop_connection(gone) == 0
    assert broker.drop_connection(FakeConnection()) == 0


# -- model-based --------------------------------------------------------------

CLIENTS = (None, "", "alice", "bob", "nopub", "nosub", "mallory")
NAMES = ("a", "b", "c")


class BrokerMachine(RuleBasedStateMachine):
    """Random operations on several connections against a plain model of the subscriptions."""

    @initialize()
    def setup(self) -> None:
        self.broker = make_broker()
        self.conns = [FakeConnection(trusted=i % 2 == 0) for i in range(4)]
        self.adhoc: dict[FakeConnection, str] = {}
        self.model: dict[str, tuple[str, str, FakeConnection]] = {}  # sid -> (name, owner, conn)

    def expected_identity(self, conn: FakeConnection, client_id: str | None) -> str | None:
        if client_id:
            registered = client_id in ("alice", "bob", "nopub", "nosub")
            return client_id if registered or self.adhoc.get(conn) == client_id else None
        return self.adhoc.get(conn, "<new>") if conn.trusted else None

    def draw_subscription(self, data: st.DataObject) -> str:
        # By position, not by id: ids are random, positions replay identically.
        return list(self.model)[data.draw(st.integers(0, len(self.model) - 1))]

    def learn(self, conn: FakeConnection, resolved: str) -> None:
        if resolved.startswith(ADHOC_PREFIX):
            assert self.adhoc.setdefault(conn, resolved) == resolved

    @rule(index=st.integers(0, 3), client_id=st.sampled_from(CLIENTS), name=st.sampled_from(NAMES))
    def subscribe(self, index: int, client_id: str | None, name: str) -> None:
        conn = self.conns[index]
        identity = self.expected_identity(conn, client_id)
        if identity is None or identity == "nosub":
            with pytest.raises(RequestError):
                self.broker.subscribe(conn, client_id, name)
            return
        result = self.broker.subscribe(conn, client_id, name)
        self.learn(conn, result["client_id"])
        self.model[result["subscription_id"]] = (name, result["client_id"], conn)

    @precondition(lambda self: self.model)
    @rule(index=st.integers(0, 3), data=st.data())
    def unsubscribe_own(self, index: int, data: st.DataObject) -> None:
        sid = self.draw_subscription(data)
        _, owner, owning_conn = self.model[sid]
        if owner.startswith(ADHOC_PREFIX):
            # An ad-hoc owner can only act on its own connection, with or without its id.
            conn, client_id = owning_conn, owner if data.draw(st.booleans()) else None
        else:
            conn, client_id = self.conns[index], owner
        self.broker.unsubscribe(conn, client_id, sid)
        del self.model[sid]

    @precondition(lambda self: self.model)
    @rule(index=st.integers(0, 3), client_id=st.sampled_from(CLIENTS), data=st.data())
    def unsubscribe_foreign(self, index: int, client_id: str | None, data: st.DataObject) -> None:
        sid = self.draw_subscription(data)
        conn = self.conns[index]
        if (client_id or self.adhoc.get(conn)) == self.model[sid][1]:
            return
        with pytest.raises(RequestError) as info:
            self.broker.unsubscribe(conn, client_id, sid)
        assert info.value.code == ErrorCode.NOT_YOUR_SUBSCRIPTION

    @rule(index=st.integers(0, 3), client_id=st.sampled_from(CLIENTS))
    def unsubscribe_unknown(self, index: int, client_id: str | None) -> None:
        with pytest.raises(RequestError):
            self.broker.unsubscribe(self.conns[index], client_id, "no-such-subscription")

    @rule(index=st.integers(0, 3), client_id=st.sampled_from(CLIENTS), name=st.sampled_from(NAMES))
    def publish(self, index: int, client_id: str | None, name: str) -> None:
        conn = self.conns[index]
        identity = self.expected_identity(conn, client_id)
        before = {c: len(c.deliveries) for c in self.conns}
        value = {"n": sum(before.values())}
        if identity is None or identity == "nopub":
            with pytest.raises(RequestError):
                self.broker.publish(conn, client_id, name, value)
            assert all(len(c.deliveries) == before[c] for c in self.conns)
            return
        result = self.broker.publish(conn, client_id, name, value)
        self.learn(conn, result["client_id"])
        delivered = [(c, d) for c in self.conns for d in c.deliveries[before[c] :]]
        assert result["listeners"] == len(delivered)
        expected = {
            sid for sid, (n, owner, _) in self.model.items() if n == name and owner != result["client_id"]
        }
        assert {sid for _, (_, _, sid) in delivered} == expected
        for c, (event_name, got, sid) in delivered:
            assert (event_name, got) == (name, value)
            assert self.model[sid][2] is c  # delivered to the connection that owns it
            assert self.model[sid][1] != result["client_id"]  # never to the publisher

    @rule(index=st.integers(0, 3))
    def drop(self, index: int) -> None:
        conn = self.conns[index]
        owned = [sid for sid, (_, _, c) in self.model.items() if c is conn]
        assert self.broker.drop_connection(conn) == len(owned)
        for sid in owned:
            del self.model[sid]
        # The slot reconnects as a brand-new connection.
        self.conns[index] = FakeConnection(trusted=conn.trusted)
        self.adhoc.pop(conn, None)

    @invariant()
    def index_matches_model(self) -> None:
        assert self.broker.subscription_count == len(self.model)
        for conn in self.conns:
            assert self.broker.subscriptions_of(conn) == sum(1 for *_, c in self.model.values() if c is conn)
        live = set(map(id, self.conns))
        assert all(id(c) in live for *_, c in self.model.values())
        for name in NAMES:
            assert self.broker.listener_count(name) == sum(1 for n, *_ in self.model.values() if n == name)
        assert all(event_buckets(self.broker).values())


BrokerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_broker_state_machine = BrokerMachine.TestCase
