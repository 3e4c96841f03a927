"""ServerConnection under pressure and at its end: slow consumers, fatal framing, EOF, close,
output signalling, ordering of events and answers, and encoding each event once.

Split from test_server_connection.py to keep both readable; the helpers are the same.
"""

from __future__ import annotations

import types
from typing import Any

import orjson
import pytest
from server_helpers import (
    CL,
    NL,
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

import pubsub_rpc._wire
from pubsub_rpc import Broker, ErrorCode, RemoteProtocolError, ServerConnection

# -- slow consumers, fatal errors, closing -----------------------------------------


def push_until_closing(max_outbound: int) -> tuple[Broker, ServerConnection, pubsub_rpc.Subscription]:
    """Subscribe on a connection with a small bound, then push 100-byte events to it until it gives up."""
    broker = make_broker()
    slow = ServerConnection(broker, max_outbound=max_outbound)
    subscription = pubsub_rpc.Subscription(subscribe(slow), "e", "alice", slow)
    event = pubsub_rpc.EncodedEvent("e", "x" * 100)
    pushed = 0
    while not slow.closing and pushed < 100:
        slow.push_event(event, subscription)
        pushed += 1
    assert slow.closing and pushed > 1  # the bound was enforced, and not before the first event
    return broker, slow, subscription


def test_push_event_beyond_max_outbound_closes_the_connection() -> None:
    broker, slow, _ = push_until_closing(300)
    *events, closing = read_frames(slow.data_to_send())
    assert {e["method"] for e in events} == {"event"}
    text = "Slow consumer: more than 300 bytes of events were waiting to be read."
    assert closing == note("closing", code=-32007, message=text)
    assert slow.closing and slow.close_reason == ErrorCode.SLOW_CONSUMER
    assert broker.subscriptions_of(slow) == 0
    assert send(slow, rpc("ping", 2)) == []  # nothing more is accepted


def test_closing_notification_is_the_last_frame() -> None:
    _, slow, subscription = push_until_closing(300)
    slow.push_event(pubsub_rpc.EncodedEvent("e", 1), subscription)
    assert read_frames(slow.data_to_send())[-1]["method"] == "closing"


def test_slow_consumer_is_dropped_and_everyone_else_gets_every_event() -> None:
    broker = make_broker()
    slow = ServerConnection(broker, max_outbound=400)
    first, last, pub = ServerConnection(broker), ServerConnection(broker), ServerConnection(broker)
    for conn in (first, slow, last):
        subscribe(conn)
    listeners = [publish(pub, "x" * 100) for _ in range(6)]
    assert listeners[0] == 3 and listeners[-1] == 2
    for conn in (first, last):
        assert values(conn) == ["x" * 100] * 6
    assert read_frames(slow.data_to_send())[-1]["params"]["code"] == -32007
    assert slow.closing and broker.subscriptions_of(slow) == 0


def test_listeners_count_only_deliveries_when_a_slow_consumer_is_dropped_mid_fan_out() -> None:
    broker = make_broker()
    slow, healthy, pub = (
        ServerConnection(broker, max_outbound=100),
        ServerConnection(broker),
        ServerConnection(broker),
    )
    subscribe(slow), subscribe(slow), subscribe(healthy)
    # The first copy overflows `slow`: it is queued, then the connection closes and its second
    # subscription is gone before its turn.
    assert publish(pub, "x" * 200) == 2
    assert len(read_frames(slow.data_to_send())) == 2  # one event, then the closing notification
    assert values(healthy) == ["x" * 200]


def test_fatal_framing_error_answers_then_closes() -> None:
    conn = ServerConnection(make_broker())
    conn.receive_data(b"Content-Length: -5\r\n\r\n")
    response, closing = read_frames(conn.data_to_send(), CL)
    assert response["error"]["code"] == -32700 and response["id"] is None
    assert closing == note(
        "closing", code=-32700, message="The connection's framing is broken beyond recovery."
    )
    assert conn.closing
    conn.receive_data(frame(rpc("ping"), CL))
    assert conn.data_to_send() == b""


def test_frames_before_a_fatal_error_in_the_same_chunk_are_answered() -> None:
    data = frame(rpc("ping", 1), CL) + b"Content-Length: -5\r\n\r\n"
    outputs = []
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        conn = ServerConnection(make_broker())
        for chunk in chunks:
            conn.receive_data(chunk)
        outputs.append(conn.data_to_send())
    assert read_frames(outputs[0], CL)[0] == ok({})
    assert outputs[0] == outputs[1]


def test_receive_eof() -> None:
    clean = ServerConnection(make_broker())
    clean.receive_data(frame(rpc("ping")) + b"  \n")
    clean.receive_eof()
    assert clean.closing
    torn = ServerConnection(make_broker())
    torn.receive_data(b'{"jsonrpc": "2.0", "meth')
    with pytest.raises(RemoteProtocolError):
        torn.receive_eof()
    assert torn.closing


def test_close_drops_subscriptions_and_adhoc_identity() -> None:
    broker = make_broker()
    conn, pub = ServerConnection(broker, trusted=True), ServerConnection(broker)
    adhoc = send(conn, rpc("subscribe", client_id="alice", event_name="e"), rpc("subscribe", event_name="e"))
    assert broker.subscription_count == 2
    conn.close()
    conn.close()
    assert conn.closing and broker.subscription_count == 0 and publish(pub, 1) == 0
    stolen = rpc("publish", client_id=adhoc[1]["result"]["client_id"], event_name="e", value=1)
    assert (
        send(ServerConnection(broker, trusted=True), stolen)[0]["error"]["code"] == ErrorCode.UNKNOWN_CLIENT
    )


# -- output signalling, ordering, encoding once ------------------------------------


def test_on_output_fires_only_when_the_queue_becomes_non_empty() -> None:
    broker, calls = make_broker(), []
    sub = ServerConnection(broker, on_output=lambda: calls.append("sub"))
    pub = ServerConnection(broker, on_output=lambda: calls.append("pub"))
    subscribe(sub)
    assert calls == ["sub"]
    pub.receive_data(frame(rpc("publish", 2, client_id="bob", event_name="e", value=1)) * 2)
    assert calls == ["sub", "sub", "pub"]  # events reach subscribers before the publisher's answer
    pub.receive_data(frame(rpc("ping", 3)))
    assert calls == ["sub", "sub", "pub"]  # still not drained: no new signal
    pub.data_to_send()
    assert pub.data_to_send() == b""
    pub.receive_data(frame(rpc("ping", 4)))
    assert calls[-1] == "pub" and len(calls) == 4


def test_on_output_is_called_once_the_output_is_queued() -> None:
    seen: list[int] = []
    conn = ServerConnection(make_broker(), on_output=lambda: seen.append(conn.outbound_bytes))
    conn.receive_data(frame(rpc("ping")))
    assert seen and seen[0] > 0


def test_subscription_is_stored_before_its_answer_and_events_precede_the_publish_answer() -> None:
    conn = ServerConnection(make_broker())
    # One chunk: alice subscribes, then bob publishes on the same connection.
    subscribed, event, published = send(
        conn,
        rpc("subscribe", 1, client_id="alice", event_name="e"),
        rpc("publish", 2, client_id="bob", event_name="e", value=1),
    )
    assert subscribed["id"] == 1 and published == ok({"listeners": 1, "client_id": "bob"}, 2)
    assert event["params"]["subscription_id"] == subscribed["result"]["subscription_id"]


def test_each_published_value_is_serialised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    broker, value = make_broker(), {"marker": "serialise me once"}
    conns = [ServerConnection(broker) for _ in range(3)]
    for n, conn in enumerate(conns):
        subscribe(conn, framing=CL if n else NL)
    calls = []

    def counting_dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        calls.append(obj)
        return orjson.dumps(obj, *args, **kwargs)

    monkeypatch.setattr(pubsub_rpc._wire, "orjson", types.SimpleNamespace(dumps=counting_dumps))
    pub = ServerConnection(broker)
    assert publish(pub, value) == 3
    assert calls.count(value) == 1
    for n, conn in enumerate(conns):
        assert read_frames(conn.data_to_send(), CL if n else NL)[0]["params"]["value"] == value


def test_the_encoder_builds_the_same_event_as_the_constructor() -> None:
    # EventEncoder fills EncodedEvent's slots itself (a hot-path shortcut):
    # every slot must match what __init__ would have made.
    value = {"a": [1, "é"], "b": None}
    made = pubsub_rpc._wire.EventEncoder().encode("e.f", value)
    expected = pubsub_rpc.EncodedEvent("e.f", value)
    for slot in pubsub_rpc.EncodedEvent.__slots__:
        assert getattr(made, slot) == getattr(expected, slot), slot
    body = made.head + pubsub_rpc._wire.subscription_tail("s-1")
    assert orjson.loads(body) == note("event", event_name="e.f", value=value, subscription_id="s-1")
    assert made.content_length_header(len(body) - len(made.head)) == b"Content-Length: %d\r\n\r\n" % len(body)


def test_the_encoder_caches_names_within_bounds_and_refuses_unencodable_values() -> None:
    encoder = pubsub_rpc._wire.EventEncoder()
    first = encoder.encode("e", 1)
    assert encoder.encode("e", 2).head.startswith(first.head[:-1])
    long_name = "n" * 257  # beyond the cached length: encoded every time, never kept
    assert orjson.loads(encoder.encode(long_name, 1).head + b',"subscription_id":"s"}}')["params"] == {
        "event_name": long_name,
        "value": 1,
        "subscription_id": "s",
    }
    assert list(encoder._head_starts) == ["e"]
    with pytest.raises(pubsub_rpc.RequestError, match="cannot be encoded as JSON") as caught:
        encoder.encode("e", {1, 2})
    assert caught.value.code == ErrorCode.INVALID_PARAMS


def test_fan_out_follows_every_change_of_a_names_subscriptions() -> None:
    # The broker keeps a per-name tuple for fan-out; each change must replace it.
    broker = make_broker()
    pub, first, second = ServerConnection(broker), ServerConnection(broker), ServerConnection(broker)
    counts = [publish(pub, 0)]
    first_id = subscribe(first)
    counts.append(publish(pub, 1))
    subscribe(second)
    counts.append(publish(pub, 2))
    assert send(first, rpc("unsubscribe", 9, client_id="alice", subscription_id=first_id)) == [
        *[note("event", event_name="e", value=n, subscription_id=first_id) for n in (1, 2)],
        ok({}, 9),
    ]
    counts.append(publish(pub, 3))
    broker.check_consistency()
    second.close()
    counts.append(publish(pub, 4))
    assert counts == [0, 1, 2, 1, 0]
    assert values(first) == [] and values(second) == [2, 3]
    broker.check_consistency()
