"""ServerConnection end to end on bytes: both dialects, every rejection, batches, framing.

Slow consumers, fatal errors, closing and output signalling are in test_server_fanout.py.

Output is parsed with a small strict parser written here (not the package's
decoder), so a framing mistake in what the server writes cannot cancel out.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from server_helpers import (
    CL,
    NL,
    answer,
    error,
    failure,
    frame,
    make_broker,
    note,
    ok,
    publish,
    read_frames,
    rpc,
    send,
    subscribe,
    values,
)

from pubsub_rpc import ClientInfo, Framing, ServerConnection

# -- the two dialects ------------------------------------------------------------


def test_pub_sub_dialect_exact_frames() -> None:
    broker = make_broker()
    sub, pub = ServerConnection(broker), ServerConnection(broker)
    sub.receive_data(frame(note("subscribe", request_id="R1", client_id="alice", event_name="foo")))
    raw = sub.data_to_send()
    sid = orjson.loads(raw)["params"]["subscription_id"]
    # Key order is the original's: flat subscription_id/client_id after the result object.
    assert raw == frame(
        answer("R1", {"subscription_id": sid, "client_id": "alice"}, subscription_id=sid, client_id="alice")
    )
    pub.receive_data(frame(note("publish", request_id="R2", client_id="bob", event_name="foo", value="bar")))
    assert pub.data_to_send() == frame(answer("R2", {"listeners": 1, "client_id": "bob"}))
    assert sub.data_to_send() == frame(note("event", event_name="foo", value="bar", subscription_id=sid))
    sub.receive_data(frame(note("unsubscribe", request_id="R3", client_id="alice", subscription_id=sid)))
    assert sub.data_to_send() == frame(answer("R3", {}))
    sub.receive_data(frame(note("subscribe", request_id="R4", client_id="nosub", event_name="foo")))
    assert sub.data_to_send() == frame(failure("R4", -32003, "You are not allowed to subscribe to events."))


def test_standard_dialect_exact_frames() -> None:
    broker = make_broker()
    sub, pub = ServerConnection(broker), ServerConnection(broker)
    [response] = send(sub, rpc("subscribe", "s-1", client_id="alice", event_name="foo"))
    sid = response["result"]["subscription_id"]
    assert response == ok({"subscription_id": sid, "client_id": "alice"}, "s-1")
    assert send(pub, rpc("publish", 7, client_id="bob", event_name="foo", value=[1, {}])) == [
        ok({"listeners": 1, "client_id": "bob"}, 7)
    ]
    event = note("event", event_name="foo", value=[1, {}], subscription_id=sid)
    assert read_frames(sub.data_to_send()) == [event]
    assert send(sub, rpc("unsubscribe", None, client_id="alice", subscription_id=sid)) == [ok({}, None)]
    assert send(pub, rpc("publish", 2.5, client_id="nopub", event_name="foo", value=1)) == [
        error(-32002, "You are not allowed to publish events.", 2.5)
    ]


def test_ping_in_both_dialects() -> None:
    conn = ServerConnection(make_broker())
    assert send(conn, rpc("ping", 3), note("ping", request_id="P")) == [ok({}, 3), answer("P", {})]
    assert send(conn, rpc("ping", 9, request_id="R")) == [ok({}, 9)]  # an id wins over request_id


def test_plain_notifications_act_but_are_never_answered() -> None:
    broker = make_broker()
    sub, pub = ServerConnection(broker), ServerConnection(broker)
    subscribe(sub)
    assert send(pub, note("publish", client_id="bob", event_name="e", value=1)) == []
    assert send(pub, note("publish", client_id="nopub", event_name="e", value=2)) == []  # refused silently
    assert send(pub, note("publish", event_name="e")) == []
    assert values(sub) == [1]


def test_plain_notification_publishes_take_every_check_of_answered_ones() -> None:
    # Plain notification publishes skip building a result (Broker.publish_unanswered);
    # identity, permissions, rules, self-exclusion, options and counters must not differ.
    broker = make_broker(ClientInfo("ruled", publish_deny=["e"]))
    sub, pub = ServerConnection(broker), ServerConnection(broker)
    trusted = ServerConnection(broker, trusted=True)
    subscribe(sub)
    subscribe(pub, client_id="bob")  # the publisher's own subscription: excluded by default
    sent = [
        note("publish", client_id="bob", event_name="e", value="sent"),
        note("publish", client_id="ruled", event_name="e", value="denied by a rule"),
        note("publish", client_id="nobody", event_name="e", value="unknown client"),
        note("publish", client_id=5, event_name="e", value="client_id not a string"),
        note("publish", client_id="bob", event_name=["e"], value="event_name not a string"),
        note("publish", client_id="bob", event_name="e", value="to self too", exclude_self=False),
        note("publish", client_id="bob", event_name="e", value="bad option", exclude_self=1),
    ]
    # No answers; the publisher's only frame is the event it asked to get itself.
    assert [(f["method"], f["params"]["value"]) for f in send(pub, *sent)] == [("event", "to self too")]
    assert send(trusted, note("publish", event_name="e", value="ad hoc")) == []
    assert values(sub) == ["sent", "to self too", "ad hoc"]
    assert values(pub) == ["ad hoc"]
    assert broker.events_published == 3
    assert broker.requests_refused == 5
    broker.check_consistency()


# -- rejections --------------------------------------------------------------------


def params_text(method: str, name: str, shown: str | None) -> str:
    """json_rpc_2's texts: a missing parameter, or one that is not a string (shown as JSON)."""
    if shown is None:
        return f'Request for method "{method}" is missing required parameter "{name}".'
    return f'Parameter "{name}" for method "{method}" must be a string, but was {shown}.'


def test_invalid_params_texts_are_json_rpc_2s() -> None:
    conn = ServerConnection(make_broker())
    [missing, wrong] = send(conn, rpc("publish", value=1), rpc("publish", event_name=5, value=1))
    assert (
        missing["error"]["message"]
        == 'Request for method "publish" is missing required parameter "event_name".'
    )
    assert (
        wrong["error"]["message"]
        == 'Parameter "event_name" for method "publish" must be a string, but was 5.'
    )


INVALID_PARAMS = [  # method, params, the offending parameter, how it is shown (None: missing)
    ("publish", {"value": 1}, "event_name", None),
    ("publish", {"event_name": 5, "value": 1}, "event_name", "5"),
    ("publish", {"event_name": "e"}, "value", None),
    ("publish", {"event_name": "e", "value": 1, "client_id": 5}, "client_id", "5"),
    ("publish", {"event_name": ["x" * 100], "value": None}, "event_name", '["' + "x" * 75 + "..."),
    ("subscribe", {}, "event_name", None),
    ("subscribe", {"event_name": None}, "event_name", "null"),
    ("subscribe", {"event_name": "e", "client_id": ["x"]}, "client_id", '["x"]'),
    ("unsubscribe", {}, "subscription_id", None),
    ("unsubscribe", {"subscription_id": {"a": 1}}, "subscription_id", '{"a":1}'),
    ("unsubscribe", {"subscription_id": "s", "client_id": True}, "client_id", "true"),
]


@pytest.mark.parametrize(("method", "params", "name", "shown"), INVALID_PARAMS)
def test_invalid_params_in_both_dialects(
    method: str, params: dict[str, Any], name: str, shown: str | None
) -> None:
    broker, message = make_broker(), params_text(method, name, shown)
    conn = ServerConnection(broker, trusted=True)
    assert send(conn, rpc(method, 4, **params)) == [error(-32602, message, 4)]
    assert send(conn, note(method, request_id="R", **params)) == [failure("R", -32602, message)]
    assert broker.subscription_count == 0


@pytest.mark.parametrize("request_id", [5, None, ["R"]])
def test_pub_sub_request_id_must_be_a_string(request_id: Any) -> None:
    broker = make_broker()
    conn = ServerConnection(broker)
    shown = orjson.dumps(request_id).decode()
    assert send(conn, note("subscribe", request_id=request_id, client_id="alice", event_name="e")) == [
        error(-32602, params_text("subscribe", "request_id", shown))
    ]
    assert broker.subscription_count == 0  # refused, not executed


def test_unknown_methods() -> None:
    conn = ServerConnection(make_broker())
    assert send(conn, rpc("nope", 1)) == [error(-32601, 'Unknown method "nope".', 1)]
    assert send(conn, note("nope", request_id="R")) == [failure("R", -32601, 'Unknown method "nope".')]
    assert send(conn, note("nope", x=1)) == []


PING = {"jsonrpc": "2.0", "method": "ping"}
ENVELOPE_ERRORS = [
    (PING | {"id": True}, "Request id must be a string, number, or null, but was true.", None),
    (PING | {"id": {}}, "Request id must be a string, number, or null, but was {}.", None),
    ({"method": "ping", "id": 1}, 'Request must contain a "jsonrpc" key.', 1),
    (PING | {"jsonrpc": "1.0", "id": 1}, 'Invalid JSON-RPC version "1.0", expected "2.0".', 1),
    (PING | {"jsonrpc": 2}, 'Invalid JSON-RPC version 2, expected "2.0".', None),
    ({"jsonrpc": "2.0", "id": "x"}, 'Request must contain a "method" key.', "x"),
    ({"jsonrpc": "2.0", "result": 1, "id": 2}, 'Request must contain a "method" key.', 2),
    (PING | {"method": 5, "id": 1}, "Request method must be a string, but was 5.", 1),
    (PING | {"params": "x", "id": 1}, 'Request params must be an Array or an Object, but was "x".', 1),
    (PING | {"params": None}, "Request params must be an Array or an Object, but was null.", None),
]


@pytest.mark.parametrize(("message", "text", "id"), ENVELOPE_ERRORS)
def test_envelope_errors_are_answered(message: dict[str, Any], text: str, id: Any) -> None:
    assert send(ServerConnection(make_broker()), message) == [error(-32600, text, id)]


def test_extra_envelope_members_are_ignored_in_both_dialects() -> None:
    conn = ServerConnection(make_broker())
    extra = {"x": 1}
    assert send(conn, rpc("ping", 1) | extra, note("ping", request_id="P") | extra) == [
        ok({}),
        answer("P", {}),
    ]


def test_positional_params_go_through_the_library_path() -> None:
    broker = make_broker()
    sub, pub = ServerConnection(broker), ServerConnection(broker)
    [response] = send(sub, rpc("subscribe") | {"params": ["e", "alice"]})
    sid = response["result"]["subscription_id"]
    assert send(pub, rpc("publish", 2) | {"params": ["e", "bar", "bob"]}) == [
        ok({"listeners": 1, "client_id": "bob"}, 2)
    ]
    assert send(pub, rpc("publish", 3) | {"params": ["e", 1, "bob", "R", 5]}) == [
        error(-32602, 'Invalid parameters for method "publish".', 3)
    ]
    send(pub, note("publish") | {"params": ["e", "again", "bob"]})  # acts, unanswered
    assert values(sub) == ["bar", "again"]
    assert send(sub, rpc("unsubscribe", 4) | {"params": [sid, "alice"]}) == [ok({}, 4)]


# -- frames that are not requests ---------------------------------------------------


def test_parse_errors_and_non_objects_are_answered_and_the_connection_carries_on() -> None:
    conn = ServerConnection(make_broker())
    conn.receive_data(b'{"jsonrpc": oops}\n5\n"text"\nnull\n' + frame(rpc("ping", 1)))
    parse_error, *rest = read_frames(conn.data_to_send())
    assert parse_error["error"]["code"] == -32700 and parse_error["id"] is None
    assert parse_error["error"]["message"].startswith("Invalid JSON: ")
    assert rest == [error(-32600, "Request must be an Array or an Object.")] * 3 + [ok({})]
    assert not conn.closing


def test_frame_too_large_is_skipped_unparsed() -> None:
    conn = ServerConnection(make_broker(), max_frame_size=64)
    big = rpc("publish", 1, event_name="e", value="x" * 100, client_id="bob")
    assert send(conn, big, rpc("ping", 2)) == [
        error(-32006, "Frame too large: frame exceeds 64 bytes."),
        ok({}, 2),
    ]


def test_batches() -> None:
    broker = make_broker()
    conn, sub = ServerConnection(broker, max_batch=3), ServerConnection(broker)
    subscribe(sub)
    mixed = [
        rpc("ping", 1),
        note("publish", client_id="bob", event_name="e", value=1),
        note("ping", request_id="P"),
    ]
    # A pub_sub answer is a notification: it goes out as its own frame, never in the array.
    assert send(conn, mixed) == [answer("P", {}), [ok({})]]
    assert send(conn, [note("publish", client_id="bob", event_name="e", value=2)]) == []
    assert send(conn, [1, rpc("nope", 2)]) == [
        [
            error(-32600, "A batch member must be an Object, but was 1."),
            error(-32601, 'Unknown method "nope".', 2),
        ]
    ]
    assert send(conn, []) == [error(-32600, "A batch must contain at least one request.")]
    too_many = [note("publish", client_id="bob", event_name="e", value=3)] * 4
    assert send(conn, too_many) == [error(-32008, "A batch may contain at most 3 requests.")]
    assert values(sub) == [1, 2]  # never 3


# -- framing -----------------------------------------------------------------------


def test_content_length_in_gives_content_length_out_including_events() -> None:
    broker = make_broker()
    sub, pub = ServerConnection(broker), ServerConnection(broker)
    assert sub.framing is NL
    sid = subscribe(sub, framing=CL)
    assert sub.framing is CL
    publish(pub, {"k": "v"})
    assert read_frames(sub.data_to_send(), CL) == [
        note("event", event_name="e", value={"k": "v"}, subscription_id=sid)
    ]


SESSIONS = {
    "pub_sub": [
        note("subscribe", request_id="R1", client_id="alice", event_name="e"),
        note("publish", request_id="R2", client_id="bob", event_name="e", value={"a": [1, "}"]}),
        note("unsubscribe", request_id="R3", client_id="alice", subscription_id="nope"),
        note("ping", request_id="R4"),
    ],
    "jsonrpc": [
        rpc("subscribe", 1, client_id="alice", event_name="e"),
        [rpc("publish", 2, client_id="bob", event_name="e", value='\\"{'), rpc("nope", 3)],
        rpc("publish", 4, client_id="nopub", event_name="e", value=None),
    ],
    "garbage": [b'{"x": ]', b"12", b"[]", b'  {"jsonrpc":"2.0","method":"ping","id":"\\u00e9"}'],
}


def chunkings(data: bytes) -> list[list[bytes]]:
    cut = len(data) - 7  # the last frame arrives in two parts
    return [[data], [data[i : i + 1] for i in range(len(data))], [data[:cut], data[cut:]]]


@pytest.mark.parametrize("framing", [NL, CL])
@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_output_does_not_depend_on_how_input_is_chunked(session: str, framing: Framing) -> None:
    data = b"".join(frame(m, framing) for m in SESSIONS[session])
    outputs = []
    for chunks in chunkings(data):
        conn = ServerConnection(make_broker())
        for chunk in chunks:
            conn.receive_data(chunk)
        out = conn.data_to_send()
        # Subscription ids are random; replace them by their order of appearance.
        ids = dict.fromkeys(re.findall(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out))
        for n, found in enumerate(ids):
            out = out.replace(found, b"%036d" % n)
        outputs.append(out)
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(read_frames(outputs[0], framing)) == len(SESSIONS[session]) + (session != "garbage")
