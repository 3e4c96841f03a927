"""Pattern subscriptions, per-name rules and publish options in the broker and the dispatcher.

No I/O: connections are the recording fakes of test_broker, and the wire is
exercised through ``ServerConnection`` bytes in, bytes out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from server_helpers import started_broker
from test_broker import FakeConnection, make_broker, rejected, subscribe
from test_broker_hooks import ClosingConnection, RecordingBackplane

from pubsub_rpc import (
    Broker,
    ClientInfo,
    ErrorCode,
    InProcessConnection,
    Pattern,
    PatternError,
    ServerConnection,
)
from pubsub_rpc._rules import ClientRules, Rule


def psubscribe(broker: Broker, conn: FakeConnection, client_id: str | None, pattern: str) -> str:
    return broker.subscribe_pattern(conn, client_id, Pattern.parse(pattern))["subscription_id"]


# -- fan-out ------------------------------------------------------------------------


def test_pattern_subscription_receives_the_real_name_under_its_own_id() -> None:
    broker = make_broker()
    sub = FakeConnection()
    sid = psubscribe(broker, sub, "bob", "user.*")
    assert broker.publish(FakeConnection(), "alice", "user::logged_in", 1)["listeners"] == 1
    assert broker.publish(FakeConnection(), "alice", "user.left", 2)["listeners"] == 1
    assert broker.publish(FakeConnection(), "alice", "user.a.b", 3)["listeners"] == 0
    assert sub.deliveries == [("user::logged_in", 1, sid), ("user.left", 2, sid)]
    broker.check_consistency()


def test_one_event_per_matching_subscription_exact_first_then_patterns_in_order() -> None:
    broker = make_broker()
    sub = FakeConnection()
    wide = psubscribe(broker, sub, "bob", "a.>")
    exact = subscribe(broker, sub, "bob", "a.b")
    narrow = psubscribe(broker, sub, "bob", "*.b")
    assert broker.listener_count("a.b") == 3
    assert broker.publish(FakeConnection(), "alice", "a.b", None)["listeners"] == 3
    assert [d[2] for d in sub.deliveries] == [exact, wide, narrow]


def test_publisher_exclusion_applies_to_patterns_and_exclude_self_lifts_it() -> None:
    broker = make_broker()
    own, other = FakeConnection(), FakeConnection()
    mine = psubscribe(broker, own, "alice", "news.>")
    mine_exact = subscribe(broker, own, "alice", "news.x")
    psubscribe(broker, other, "bob", "news.*")
    assert broker.publish(own, "alice", "news.x", 1)["listeners"] == 1
    assert own.deliveries == []
    result = broker.publish(own, "alice", "news.x", 2, exclude_self=False)
    assert result == {"listeners": 3, "client_id": "alice"}
    assert [d[2] for d in own.deliveries] == [mine_exact, mine]


def test_report_counts_deliveries_and_drops_here() -> None:
    broker = make_broker()
    live, closing = FakeConnection(), ClosingConnection()
    subscribe(broker, live, "bob", "e")
    psubscribe(broker, closing, "carol", "*")
    result = broker.publish(FakeConnection(), "alice", "e", 1, report=True)
    assert result == {"listeners": 1, "client_id": "alice", "delivered": 1, "dropped": 1}
    # Without the option the answer keeps the original's shape.
    assert broker.publish(FakeConnection(), "alice", "e", 1) == {"listeners": 1, "client_id": "alice"}


def test_report_with_a_backplane_separates_local_from_remote() -> None:
    broker = make_broker()
    backplane = RecordingBackplane(remote=5)
    broker.attach_backplane(backplane)
    subscribe(broker, FakeConnection(), "bob", "e")
    result = broker.publish(FakeConnection(), "alice", "e", 1, report=True, exclude_self=False)
    assert result == {"listeners": 6, "client_id": "alice", "delivered": 1, "dropped": 0}
    assert backplane.forwarded[-1] == ("e", 1, None)  # exclude_self false: nobody excluded remotely
    backplane.remote = None
    result = broker.publish(FakeConnection(), "alice", "e", 1, report=True)
    assert result == {"listeners": 1, "client_id": "alice", "forwarded": False, "delivered": 1, "dropped": 0}


def test_backplane_sees_pattern_subscriptions_and_remote_events_reach_them() -> None:
    broker = make_broker()
    backplane = RecordingBackplane()
    broker.attach_backplane(backplane)
    sub = FakeConnection()
    sid = psubscribe(broker, sub, "bob", "orders.>")
    assert backplane.live == {sid: ("orders.>", "bob")}
    assert broker._by_id[sid].pattern == Pattern.parse("orders.>")
    assert broker.deliver_remote("orders.eu.new", {"n": 1}, exclude_client_id=None) == 1
    assert broker.deliver_remote("orders.eu.new", {"n": 2}, exclude_client_id="bob") == 0
    broker.drop_connection(sub)
    assert backplane.live == {}
    broker.check_consistency()


def test_patterns_count_against_the_subscription_limit_and_are_removed_with_their_connection() -> None:
    broker = started_broker(ClientInfo("alice"), max_subscriptions=2)
    conn = FakeConnection()
    psubscribe(broker, conn, "alice", "a.*")
    subscribe(broker, conn, "alice", "b")
    error = rejected(broker.subscribe_pattern, conn, "alice", Pattern.parse(">"))
    assert error.code == ErrorCode.LIMIT_EXCEEDED
    assert broker.drop_connection(conn) == 2
    assert broker.subscription_count == 0 and broker._patterns.count == 0
    broker.check_consistency()


def test_unsubscribe_of_a_pattern_subscription() -> None:
    broker = make_broker()
    conn = FakeConnection()
    sid = psubscribe(broker, conn, "bob", "x.*")
    assert rejected(broker.unsubscribe, conn, "alice", sid).code == ErrorCode.NOT_YOUR_SUBSCRIPTION
    broker.unsubscribe(conn, "bob", sid)
    assert broker.publish(FakeConnection(), "alice", "x.y", 1)["listeners"] == 0
    broker.check_consistency()


# -- rules ----------------------------------------------------------------------------


def ruled_broker(**rules: tuple[str, ...] | None) -> Broker:
    return started_broker(ClientInfo("ruled", **rules), ClientInfo("alice"))


def test_publish_rules_deny_wins_over_allow() -> None:
    broker = ruled_broker(publish_allow=("orders.>",), publish_deny=("orders.secret",))
    conn = FakeConnection()
    assert broker.publish(conn, "ruled", "orders.eu", 1)["listeners"] == 0
    assert broker.publish(conn, "ruled", "orders::eu::new", 1)["listeners"] == 0
    for name in ("orders.secret", "orders::secret", "other", "orders"):
        error = rejected(broker.publish, conn, "ruled", name, 1)
        assert error.code == ErrorCode.PUBLISH_FORBIDDEN
        assert error.message == f'You are not allowed to publish events named "{name}".'


def test_subscribe_rules_for_exact_names() -> None:
    broker = ruled_broker(subscribe_allow=("public.*",), subscribe_deny=("public.internal",))
    conn = FakeConnection()
    subscribe(broker, conn, "ruled", "public.news")
    error = rejected(broker.subscribe, conn, "ruled", "public.internal")
    assert error.code == ErrorCode.SUBSCRIBE_FORBIDDEN
    assert error.message == 'You are not allowed to subscribe to events named "public.internal".'


def test_pattern_subscriptions_refused_only_when_no_permitted_name_is_reachable() -> None:
    broker = ruled_broker(subscribe_allow=("public.>",), subscribe_deny=("public.secret.>",))
    conn = FakeConnection()
    for refused in ("private.*", "public.secret.>", "public.secret.*", "*.secret.x"):
        error = rejected(broker.subscribe_pattern, conn, "ruled", Pattern.parse(refused))
        assert error.code == ErrorCode.SUBSCRIBE_FORBIDDEN
        assert error.message == f'You are not allowed to subscribe to any event matching "{refused}".'
    # Partly permitted patterns are accepted, with a delivery filter.
    wide = psubscribe(broker, conn, "ruled", ">")
    assert broker._by_id[wide].filter is not None
    inner = psubscribe(broker, conn, "ruled", "public.news.*")
    assert broker._by_id[inner].filter is None  # wholly permitted: no per-delivery check
    publisher = FakeConnection()
    for name in ("public.news.x", "public.secret.x", "private.x", "public.a"):
        broker.publish(publisher, "alice", name, name)
    assert conn.deliveries == [
        ("public.news.x", "public.news.x", wide),
        ("public.news.x", "public.news.x", inner),
        ("public.a", "public.a", wide),
    ]
    # The filter applies to events from other servers too.
    assert broker.deliver_remote("public.secret.y", 1, None) == 0


def test_clients_without_rules_have_no_rules_object_and_no_filters() -> None:
    broker = make_broker()
    assert all(broker.clients.lookup(c).rules is None for c in ("alice", "bob"))
    sid = psubscribe(broker, FakeConnection(), "bob", ">")
    assert broker._by_id[sid].filter is None


def test_client_info_rules_survive_replace_and_digest_registration_and_stay_out_of_repr() -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    info = ClientInfo.from_sha256(digest, publish_allow=["a.>"], subscribe_deny=["b.*"])
    assert info.publish_allow == ("a.>",) and info.subscribe_deny == ("b.*",)
    assert "s3cret" not in repr(info) and digest not in repr(info)
    assert "publish_allow=('a.>',)" in repr(info)
    copy = dataclasses.replace(info, id="s3cret", id_sha256=None)
    assert copy.rules == info.rules and copy.rules is not None
    broker = started_broker(info)
    error = rejected(broker.publish, FakeConnection(), "s3cret", "c", 1)
    assert error.message == 'You are not allowed to publish events named "c".'
    assert "s3cret" not in repr(broker.clients.lookup("s3cret"))
    with pytest.raises(PatternError, match="must be the last segment"):
        ClientInfo("x", publish_deny=("a.>.b",))
    with pytest.raises(TypeError):
        ClientInfo("x", publish_deny="a.b")  # type: ignore[arg-type]


def test_an_empty_allow_list_permits_nothing() -> None:
    broker = ruled_broker(publish_allow=())
    assert rejected(broker.publish, FakeConnection(), "ruled", "x", 1).code == ErrorCode.PUBLISH_FORBIDDEN


SEGMENT = st.sampled_from(["a", "b", "*"])
PATTERN_TEXT = st.builds(
    lambda segs, rest: ".".join(segs + ([">"] if rest else [])) or "a",
    st.lists(SEGMENT, max_size=3),
    st.booleans(),
)
NAMES = [".".join(p) for n in range(1, 5) for p in itertools.product("abc", repeat=n)]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.none(), st.lists(PATTERN_TEXT, max_size=3)),
    st.lists(PATTERN_TEXT, max_size=3),
    PATTERN_TEXT,
)
def test_pattern_rule_decisions_agree_with_enumeration(
    allow: list[str] | None, deny: list[str], pattern_text: str
) -> None:
    rules = ClientRules.build(
        None,
        None,
        None if allow is None else tuple(map(Pattern.parse, allow)),
        tuple(map(Pattern.parse, deny)),
    )
    pattern = Pattern.parse(pattern_text)
    matched = [n for n in NAMES if pattern.matches(n)]
    rule = rules.subscribe if rules is not None else None
    permitted = [n for n in matched if rule is None or rule.permits_name(n)]
    if rule is None:
        assert allow is None and not deny
        return
    assert rule.reaches(pattern) is bool(permitted)
    assert rule.contains(pattern) is (permitted == matched)
    if permitted and permitted != matched:
        assert rules is not None and rules.pattern_filter(pattern) is rule
    assert isinstance(rule, Rule)


# -- the wire ---------------------------------------------------------------------------


def exchange(conn: ServerConnection, message: dict) -> dict:
    conn.receive_data(orjson.dumps(message) + b"\n")
    return orjson.loads(conn.data_to_send())


def jsonrpc(method: str, params: dict, id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": id}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"event_name": "a", "pattern": "a.*"},
            'Request for method "subscribe" must give either "event_name" or "pattern", not both.',
        ),
        (
            {"event_name": None, "pattern": "a.*"},
            'Request for method "subscribe" must give either "event_name" or "pattern", not both.',
        ),
        ({}, 'Request for method "subscribe" is missing required parameter "event_name".'),
        ({"pattern": None}, 'Request for method "subscribe" is missing required parameter "event_name".'),
        ({"pattern": 5}, 'Parameter "pattern" for method "subscribe" must be a string, but was 5.'),
        ({"pattern": "a*"}, 'Invalid pattern "a*": "*" and ">" must be whole segments.'),
        ({"pattern": ""}, 'Invalid pattern "": it is empty.'),
        ({"pattern": ">.a"}, 'Invalid pattern ">.a": ">" must be the last segment.'),
        (
            {"pattern": "a.*", "client_id": 5},
            'Parameter "client_id" for method "subscribe" must be a string, but was 5.',
        ),
    ],
)
def test_subscribe_param_errors(params: dict, message: str) -> None:
    conn = ServerConnection(make_broker())
    answer = exchange(conn, jsonrpc("subscribe", {"client_id": "alice", **params}))
    assert answer["error"] == {"code": ErrorCode.INVALID_PARAMS, "message": message}


@pytest.mark.parametrize("option", ["exclude_self", "report"])
def test_publish_option_must_be_a_boolean(option: str) -> None:
    conn = ServerConnection(make_broker())
    params = {"client_id": "alice", "event_name": "e", "value": 1, option: "yes"}
    answer = exchange(conn, jsonrpc("publish", params))
    assert answer["error"] == {
        "code": ErrorCode.INVALID_PARAMS,
        "message": f'Parameter "{option}" for method "publish" must be a boolean, but was "yes".',
    }
    # null means the default, for a client that always sends its options.
    params[option] = None
    assert exchange(conn, jsonrpc("publish", params))["result"] == {"listeners": 0, "client_id": "alice"}


def test_wire_pattern_subscription_and_report_in_both_dialects() -> None:
    broker = make_broker()
    sub, pub = ServerConnection(broker), ServerConnection(broker)
    answer = exchange(sub, jsonrpc("subscribe", {"client_id": "bob", "pattern": "user::*"}))
    sid = answer["result"]["subscription_id"]
    answer = exchange(
        pub,
        {
            "jsonrpc": "2.0",
            "method": "publish",
            "params": {
                "request_id": "r1",
                "client_id": "alice",
                "event_name": "user.x",
                "value": 7,
                "report": True,
            },
        },
    )
    assert answer["params"]["result"] == {"listeners": 1, "client_id": "alice", "delivered": 1, "dropped": 0}
    assert orjson.loads(sub.data_to_send()) == {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"event_name": "user.x", "value": 7, "subscription_id": sid},
    }


def test_in_process_flavour_has_the_same_params_and_texts() -> None:
    broker = make_broker()
    conn = InProcessConnection(broker, connection_id="c")
    conn.data_to_send()  # the handshake

    def ask(method: str, params: dict) -> dict:
        conn.receive_data([{"id": "c", "request_id": "r", "method": method, "params": params}])
        [answer] = conn.data_to_send()
        return answer

    assert ask("subscribe", {"client_id": "bob", "pattern": "a.b", "event_name": "a"})["error_message"] == (
        'Request for method "subscribe" must give either "event_name" or "pattern", not both.'
    )
    assert ask("subscribe", {"client_id": "bob", "pattern": "a.>.b"})["error_message"] == (
        'Invalid pattern "a.>.b": ">" must be the last segment.'
    )
    assert (
        ask("subscribe", {"client_id": 5, "pattern": "a"})["error_message"]
        == "Expected client_id, and event_name."
    )
    sid = ask("subscribe", {"client_id": "bob", "pattern": "a.*"})["result"]["subscription_id"]
    answer = ask("publish", {"client_id": "bob", "event_name": "a.b", "value": 1, "report": 1})
    assert answer["error_code"] == ErrorCode.INVALID_PARAMS
    assert answer["error_message"] == 'Parameter "report" for method "publish" must be a boolean, but was 1.'
    conn.receive_data(
        [
            {
                "id": "c",
                "request_id": "r2",
                "method": "publish",
                "params": {
                    "client_id": "bob",
                    "event_name": "a::b",
                    "value": 1,
                    "exclude_self": False,
                    "report": True,
                },
            }
        ]
    )
    event, answer = conn.data_to_send()
    assert event == ["a::b", 1, sid]
    assert answer["result"] == {"listeners": 1, "client_id": "bob", "delivered": 1, "dropped": 0}


def test_a_very_long_pattern_against_rules_is_decided_not_crashed() -> None:
    broker = ruled_broker(subscribe_allow=("public.>",), subscribe_deny=("public.secret.>",))
    conn = FakeConnection()
    long_ok = "public." + ".".join(["*"] * 5000)
    sid = psubscribe(broker, conn, "ruled", long_ok)
    assert broker._by_id[sid].filter is not None  # public.secret.* ... is in it too
    long_denied = "public.secret." + ".".join(["*"] * 5000)
    error = rejected(broker.subscribe_pattern, conn, "ruled", Pattern.parse(long_denied))
    assert error.code == ErrorCode.SUBSCRIBE_FORBIDDEN
    assert error.message.startswith('You are not allowed to subscribe to any event matching "public.secret.*')


def test_rules_are_checked_before_the_subscription_limit() -> None:
    broker = started_broker(ClientInfo("ruled", subscribe_deny=("x.>",)), max_subscriptions=1)
    conn = FakeConnection()
    subscribe(broker, conn, "ruled", "a")
    assert rejected(broker.subscribe, conn, "ruled", "x.y").code == ErrorCode.SUBSCRIBE_FORBIDDEN
    assert rejected(broker.subscribe_pattern, conn, "ruled", Pattern.parse("x.*")).code == (
        ErrorCode.SUBSCRIBE_FORBIDDEN
    )
    assert rejected(broker.subscribe, conn, "ruled", "b").code == ErrorCode.LIMIT_EXCEEDED


# -- a model of exact and pattern subscriptions under churn ---------------------------------

UNIVERSE = [".".join(p) for n in range(1, 6) for p in itertools.product("abc", repeat=n)]
SMALL_NAMES = st.sampled_from([n for n in UNIVERSE if n.count(".") < 3] + ["a::b", "a::b.c"])
RULED_RULES = {"subscribe_allow": ("a.>",), "subscribe_deny": ("a.b", "a.b.>")}


def permitted_for_ruled(name: str) -> bool:
    segments = name.replace("::", ".").split(".")
    return segments[0] == "a" and len(segments) > 1 and segments[:2] != ["a", "b"]


class PatternMachine(RuleBasedStateMachine):
    """Exact and pattern subscriptions, publishes and closed connections against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.broker = started_broker(
            ClientInfo("alice"), ClientInfo("bob"), ClientInfo("ruled", **RULED_RULES)
        )
        self.conns = [FakeConnection() for _ in range(3)]
        # sid -> (creation number, pattern or None, name or pattern text, owner, connection)
        self.model: dict[str, tuple[int, Pattern | None, str, str, FakeConnection]] = {}
        self.made = 0

    def store(
        self, result: dict, pattern: Pattern | None, text: str, owner: str, conn: FakeConnection
    ) -> None:
        self.made += 1
        self.model[result["subscription_id"]] = (self.made, pattern, text, owner, conn)

    @rule(index=st.integers(0, 2), owner=st.sampled_from(["alice", "bob", "ruled"]), name=SMALL_NAMES)
    def subscribe_exact(self, index: int, owner: str, name: str) -> None:
        conn = self.conns[index]
        if owner == "ruled" and not permitted_for_ruled(name):
            assert rejected(self.broker.subscribe, conn, owner, name).code == ErrorCode.SUBSCRIBE_FORBIDDEN
            return
        self.store(self.broker.subscribe(conn, owner, name), None, name, owner, conn)

    @rule(index=st.integers(0, 2), owner=st.sampled_from(["alice", "bob", "ruled"]), text=PATTERN_TEXT)
    def subscribe_pattern(self, index: int, owner: str, text: str) -> None:
        conn, pattern = self.conns[index], Pattern.parse(text)
        if owner == "ruled" and not any(pattern.matches(n) and permitted_for_ruled(n) for n in UNIVERSE):
            error = rejected(self.broker.subscribe_pattern, conn, owner, pattern)
            assert error.code == ErrorCode.SUBSCRIBE_FORBIDDEN
            return
        self.store(self.broker.subscribe_pattern(conn, owner, pattern), pattern, text, owner, conn)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.model, key=lambda s: self.model[s][0])))
        _, _, _, owner, conn = self.model.pop(sid)
        self.broker.unsubscribe(conn, owner, sid)

    @rule(index=st.integers(0, 2))
    def drop(self, index: int) -> None:
        conn = self.conns[index]
        owned = [sid for sid, entry in self.model.items() if entry[4] is conn]
        assert self.broker.drop_connection(conn) == len(owned)
        for sid in owned:
            del self.model[sid]
        self.conns[index] = FakeConnection()

    @rule(publisher=st.sampled_from(["alice", "bob"]), name=SMALL_NAMES, exclude_self=st.booleans())
    def publish(self, publisher: str, name: str, exclude_self: bool) -> None:
        before = {c: len(c.deliveries) for c in self.conns}
        result = self.broker.publish(
            FakeConnection(), publisher, name, 0, exclude_self=exclude_self, report=True
        )

        def receives(entry: tuple) -> bool:
            _, pattern, text, owner, _ = entry
            if exclude_self and owner == publisher:
                return False
            if owner == "ruled" and not permitted_for_ruled(name):
                return False
            return text == name if pattern is None else pattern.matches(name)

        chosen = sorted(
            (entry[1] is not None, entry[0], sid) for sid, entry in self.model.items() if receives(entry)
        )
        delivered = [d[2] for c in self.conns for d in c.deliveries[before[c] :]]
        assert sorted(delivered) == sorted(sid for *_, sid in chosen)
        # Per connection, exact subscriptions first, then patterns, each in creation order.
        for conn in self.conns:
            mine = [sid for *_, sid in chosen if self.model[sid][4] is conn]
            assert [d[2] for d in conn.deliveries[before[conn] :]] == mine
        assert result["listeners"] == result["delivered"] == len(chosen) and result["dropped"] == 0

    @invariant()
    def consistent(self) -> None:
        self.broker.check_consistency()
        assert self.broker.subscription_count == len(self.model)


PatternMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_pattern_state_machine = PatternMachine.TestCase
