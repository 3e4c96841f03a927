"""Golden tests: the fast path and the jsonrpcserver path must answer every request identically.

Each comparison runs the same request on two identically prepared brokers, one
through ``ServerConnection._handle_message`` (with the library path forbidden,
so the fast path really answered) and one through ``_handle_general`` (with
``dispatch_general`` counted, so jsonrpcserver really dispatched).  Subscription
and ad-hoc ids are random, so they are normalised before comparing.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import make_broker

import pubsub_rpc._server
from pubsub_rpc import ServerConnection

_RANDOM_IDS = re.compile(rb"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|pub_sub::adhoc_client::[0-9a-f]+")


def prepared(trusted: bool) -> tuple[ServerConnection, ServerConnection, dict[str, str]]:
    """A broker where alice listens to "e" on another connection and bob has a subscription on ours."""
    broker = make_broker()
    conn, other = ServerConnection(broker, trusted=trusted), ServerConnection(broker)
    ids = {
        "$theirs": broker.subscribe(other, "alice", "e")["subscription_id"],
        "$mine": broker.subscribe(conn, "bob", "e")["subscription_id"],
    }
    return conn, other, ids


def substitute(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [substitute(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, ids) for k, v in value.items()}
    return value


def normalised(value: Any) -> bytes:
    found = dict.fromkeys(_RANDOM_IDS.findall(orjson.dumps(value)))
    text = orjson.dumps(value)
    for n, random_id in enumerate(found):
        text = text.replace(random_id, b"<id%d>" % n)
    return text


def fast_path(message: dict[str, Any], trusted: bool) -> tuple[bytes, bytes, int]:
    conn, other, ids = prepared(trusted)

    def forbidden(_: Any) -> None:
        raise AssertionError("the fast path declined a well-formed request")

    conn._handle_general = forbidden  # type: ignore[method-assign]
    answer = conn._handle_message(substitute(message, ids))
    return normalised(answer), normalised(other.data_to_send().decode()), conn.broker.subscription_count


def library_path(
    message: dict[str, Any], trusted: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, bytes, int]:
    conn, other, ids = prepared(trusted)
    calls = []
    real = pubsub_rpc._server.dispatch_general
    with monkeypatch.context() as patch:
        patch.setattr(pubsub_rpc._server, "dispatch_general", lambda *a: calls.append(a) or real(*a))
        answer = conn._handle_general(substitute(message, ids))
    assert len(calls) == 1, "jsonrpcserver did not dispatch"
    return normalised(answer), normalised(other.data_to_send().decode()), conn.broker.subscription_count


def rpc(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}


CASES = [
    ("ping", {}, False),
    ("ping", {"extra": 1}, False),
    ("publish", {"event_name": "e", "value": {"a": [1]}, "client_id": "bob"}, False),
    ("publish", {"event_name": "e", "value": None, "client_id": "bob", "extra": 1}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": "alice"}, False),
    ("publish", {"value": 1, "client_id": "bob"}, False),
    ("publish", {"event_name": 5, "value": 1, "client_id": "bob"}, False),
    ("publish", {"event_name": "e", "client_id": "bob"}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": 5}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": "mallory"}, True),
    ("publish", {"event_name": "e", "value": 1, "client_id": "nopub"}, False),
    ("publish", {"event_name": "e", "value": 1}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": ""}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": None}, True),
    ("subscribe", {"event_name": "e", "client_id": "bob"}, False),
    ("subscribe", {"client_id": "bob"}, False),
    ("subscribe", {"event_name": [], "client_id": "bob"}, False),
    ("subscribe", {"event_name": "e", "client_id": {}}, False),
    ("subscribe", {"event_name": "e", "client_id": "nosub"}, False),
    ("subscribe", {"event_name": "e", "client_id": "mallory"}, False),
    ("subscribe", {"event_name": "e"}, True),
    ("unsubscribe", {"subscription_id": "$mine", "client_id": "bob"}, False),
    ("unsubscribe", {"subscription_id": "nope", "client_id": "bob"}, False),
    ("unsubscribe", {"subscription_id": "$theirs", "client_id": "bob"}, False),
    ("unsubscribe", {"subscription_id": "$theirs"}, True),
    ("unsubscribe", {"client_id": "bob"}, False),
    ("unsubscribe", {"subscription_id": 5, "client_id": "bob"}, False),
    ("unsubscribe", {"subscription_id": "$mine", "client_id": 5}, False),
    # Pattern subscriptions and publish options (spec 4.4, 4.5).
    ("subscribe", {"pattern": "e.*", "client_id": "bob"}, False),
    ("subscribe", {"pattern": "*", "event_name": "e", "client_id": "bob"}, False),
    ("subscribe", {"pattern": None, "event_name": "e", "client_id": "bob"}, False),
    ("subscribe", {"pattern": 5, "client_id": "bob"}, False),
    ("subscribe", {"pattern": "e*", "client_id": "bob"}, False),
    ("subscribe", {"pattern": ">", "client_id": "nosub"}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": "alice", "exclude_self": False}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": "bob", "report": True}, False),
    ("publish", {"event_name": "e", "value": 1, "client_id": "bob", "report": 1}, False),
    ("publish", {"event_name": "e", "value": 1, "exclude_self": "no"}, True),
]


@pytest.mark.parametrize(("method", "params", "trusted"), CASES)
def test_both_paths_answer_alike(
    method: str, params: dict[str, Any], trusted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = rpc(method, params)
    assert fast_path(message, trusted) == library_path(message, trusted, monkeypatch)


@pytest.mark.parametrize("method", ["ping", "publish"])
def test_params_named_ctx_answer_alike(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    message = rpc(method, {"event_name": "e", "value": 1, "client_id": "bob", "ctx": 1})
    assert fast_path(message, False) == library_path(message, False, monkeypatch)


POSITIONAL = [
    ("ping", [], {}),
    ("publish", ["e", "v", "bob"], {"event_name": "e", "value": "v", "client_id": "bob"}),
    ("publish", ["e", "v", "bob", "R"], {"event_name": "e", "value": "v", "client_id": "bob"}),
    ("publish", ["e"], {"event_name": "e"}),
    ("publish", [5, 1, "bob"], {"event_name": 5, "value": 1, "client_id": "bob"}),
    ("subscribe", ["e", "bob"], {"event_name": "e", "client_id": "bob"}),
    ("subscribe", ["e", "nosub"], {"event_name": "e", "client_id": "nosub"}),
    ("unsubscribe", ["$mine", "bob"], {"subscription_id": "$mine", "client_id": "bob"}),
    ("unsubscribe", ["$theirs", "bob"], {"subscription_id": "$theirs", "client_id": "bob"}),
]


@pytest.mark.parametrize(("method", "positional", "named"), POSITIONAL)
def test_positional_params_mean_the_same_as_named_ones(
    method: str, positional: list[Any], named: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert library_path(rpc(method, positional), False, monkeypatch) == fast_path(rpc(method, named), False)


# -- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
names = st.sampled_from(["e", "alice", "bob", "nopub", "nosub", "", "$mine", "$theirs", "*", ">", "e.*"])
PARAM_KEYS = (
    "event_name",
    "value",
    "client_id",
    "subscription_id",
    "request_id",
    "extra",
    "pattern",
    "exclude_self",
    "report",
)
known_params = st.fixed_dictionaries({}, optional={key: names | json_values for key in PARAM_KEYS})
methods = st.sampled_from(["publish", "subscribe", "unsubscribe", "ping", "nope"])
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | json_values,
        "method": methods | json_values,
        "params": known_params | st.lists(names | json_values, max_size=5) | json_values,
        "id": st.integers(-5, 5) | json_values,
        "x": json_values,
    },
)
messages = st.dictionaries(st.text(max_size=8), json_values, max_size=5) | envelopes


def assert_valid_answer(answer: Any, message: dict[str, Any]) -> None:
    assert type(answer) is dict and answer.get("jsonrpc") == "2.0"
    if "method" in answer:  # a pub_sub answer notification
        assert answer.keys() == {"jsonrpc", "method", "params"} and "id" not in message
        params = answer["params"]
        assert params["request_id"] == answer["method"] == message["params"]["request_id"]
        if params["status"] is True:
            assert type(params["result"]) is dict
        else:
            assert params["status"] is False
            assert type(params["error_message"]) is str and type(params["error_code"]) is int
        return
    assert answer.keys() in ({"jsonrpc", "result", "id"}, {"jsonrpc", "error", "id"})
    if "error" in answer:
        assert type(answer["error"]["code"]) is int and type(answer["error"]["message"]) is str
    request_id = message.get("id")
    if type(request_id) in (str, int, float):
        assert answer["id"] == request_id
    else:
        assert answer["id"] is None


@settings(max_examples=400, deadline=None)
@given(message=messages, trusted=st.booleans())
def test_any_json_object_gets_at_most_one_valid_answer(message: dict[str, Any], trusted: bool) -> None:
    conn, _, ids = prepared(trusted)
    message = substitute(message, ids)
    conn.receive_data(orjson.dumps(message))
    conn.receive_eof()  # completes nothing here, but proves the object was a complete frame
    frames = [orjson.loads(line) for line in conn.data_to_send().splitlines()]
    # Bob's subscription lives on this connection, so a publish may queue an event here first.
    events = [f for f in frames if f.get("method") == "event" and "request_id" not in f["params"]]
    assert all(e["params"]["subscription_id"] == ids["$mine"] for e in events)
    answers = frames[len(events) :]
    assert len(answers) <= 1
    for answer in answers:
        assert_valid_answer(answer, message)


@settings(max_examples=200, deadline=None)
@given(method=methods, params=known_params, trusted=st.booleans())
def test_any_well_formed_request_answers_alike_on_both_paths(
    method: str, params: dict[str, Any], trusted: bool
) -> None:
    message = rpc(method, params)
    with pytest.MonkeyPatch.context() as monkeypatch:
        library = library_path(message, trusted, monkeypatch)
    if method == "nope":
        return  # only the library path knows unknown methods
    assert fast_path(message, trusted) == library


@pytest.mark.parametrize(
    "message",
    [
        {"method": []},
        {"jsonrpc": "2.0", "method": {}, "id": 1},
        {"jsonrpc": "2.0", "method": ["publish"], "params": {}},
    ],
)
def test_unhashable_method_is_answered_not_raised(message: dict[str, Any]) -> None:
    conn, _, _ = prepared(False)
    conn.receive_data(orjson.dumps(message) + b"\n")
    [answer] = [orjson.loads(line) for line in conn.data_to_send().splitlines()]
    assert answer["error"]["code"] == -32600
