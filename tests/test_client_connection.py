"""ClientConnection against a real ServerConnection in memory, and against an original server's frames.

A ``Link`` wires one client to one server connection: whatever one side wants
to send is fed straight to the other.  No sockets, no trio.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import make_broker

from pubsub_rpc import (
    ADHOC_PREFIX,
    Broker,
    ClientConnection,
    Closing,
    ConnectionClosedError,
    Dialect,
    ErrorCode,
    Event,
    EventReceived,
    Framing,
    LocalProtocolError,
    PingResult,
    PublishResult,
    PubSubError,
    RemoteProtocolError,
    RequestError,
    RequestFailed,
    RequestSucceeded,
    ServerClosing,
    ServerConnection,
    SubscribeResult,
    UnsubscribeResult,
)

MODES = [(dialect, framing) for dialect in Dialect for framing in Framing]


class Link:
    """One ClientConnection talking to one ServerConnection through memory."""

    def __init__(
        self, broker: Broker, mode: tuple[Dialect, Framing], client_id: str | None, *, trusted: bool = False
    ) -> None:
        self.server = ServerConnection(broker, trusted=trusted)
        self.client = ClientConnection(client_id=client_id, dialect=mode[0], framing=mode[1])

    def pump(self, data: bytes = b"") -> list[Any]:
        """Send ``data`` to the server, then hand everything the server queued to the client."""
        self.server.receive_data(data)
        return self.client.receive_data(self.server.data_to_send())

    def call(self, started: tuple[int, bytes]) -> Any:
        """Run one request; return its outcome (RequestSucceeded or RequestFailed)."""
        key, data = started
        outcomes = [e for e in self.pump(data) if getattr(e, "key", None) == key]
        assert len(outcomes) == 1
        return outcomes[0]

    def result(self, started: tuple[int, bytes]) -> Any:
        outcome = self.call(started)
        assert isinstance(outcome, RequestSucceeded), outcome
        return outcome.result

    def events(self) -> list[Event]:
        received = self.pump()
        assert all(isinstance(e, EventReceived) for e in received)
        return [e.event for e in received]


@pytest.fixture(params=MODES, ids=lambda m: f"{m[0].value}-{m[1].value}")
def mode(request: pytest.FixtureRequest) -> tuple[Dialect, Framing]:
    return request.param


# -- against our server -------------------------------------------------------------


def test_every_operation_round_trips(mode: tuple[Dialect, Framing]) -> None:
    broker = make_broker()
    sub, pub = Link(broker, mode, "alice"), Link(broker, mode, "bob")
    subscribed = sub.result(sub.client.subscribe("foo"))
    assert subscribed == SubscribeResult(subscription_id=subscribed.subscription_id, client_id="alice")
    assert sub.client.subscriptions == {subscribed.subscription_id: "foo"}
    assert sub.server.framing is mode[1]
    assert pub.result(pub.client.publish("foo", {"v": [1, None]})) == PublishResult(
        listeners=1, client_id="bob"
    )
    assert sub.events() == [
        Event(event_name="foo", value={"v": [1, None]}, subscription_id=subscribed.subscription_id)
    ]
    assert sub.result(sub.client.unsubscribe(subscribed.subscription_id)) == UnsubscribeResult()
    assert sub.client.subscriptions == {}
    assert pub.result(pub.client.publish("foo", 2)).listeners == 0
    assert sub.events() == []
    assert pub.result(pub.client.ping()) == PingResult()
    assert sub.client.pending == pub.client.pending == 0


def test_adopts_the_adhoc_id_of_a_trusted_server(mode: tuple[Dialect, Framing]) -> None:
    link = Link(make_broker(), mode, None, trusted=True)
    assert link.client.client_id is None
    adhoc = link.result(link.client.publish("e", 1)).client_id
    assert adhoc.startswith(ADHOC_PREFIX)
    assert link.client.client_id == adhoc
    key, data = link.client.subscribe("e")
    assert adhoc.encode() in data  # from now on the client acts as the adopted identity
    assert link.call((key, data)).result.client_id == adhoc
    configured = Link(make_broker(), mode, "alice", trusted=True)
    configured.result(configured.client.ping())
    assert configured.client.client_id == "alice"


REJECTIONS = [
    ("mallory", "publish", 'Unrecognized client ID "mallory".', ErrorCode.UNKNOWN_CLIENT),
    (None, "subscribe", 'Unrecognized client ID "<missing>".', ErrorCode.UNKNOWN_CLIENT),
    ("nopub", "publish", "You are not allowed to publish events.", ErrorCode.PUBLISH_FORBIDDEN),
    ("nosub", "subscribe", "You are not allowed to subscribe to events.", ErrorCode.SUBSCRIBE_FORBIDDEN),
]


@pytest.mark.parametrize(("client_id", "operation", "message", "code"), REJECTIONS)
def test_server_rejections_become_request_errors(
    mode: tuple[Dialect, Framing], client_id: str | None, operation: str, message: str, code: ErrorCode
) -> None:
    link = Link(make_broker(), mode, client_id)
    started = link.client.publish("e", 1) if operation == "publish" else link.client.subscribe("e")
    outcome = link.call(started)
    assert isinstance(outcome, RequestFailed) and type(outcome.error) is RequestError
    assert (outcome.error.message, outcome.error.code) == (message, code)
    assert str(outcome.error) == f"`pub_sub` exception: {message}"
    assert link.client.subscriptions == {}


def test_each_local_subscription_gets_one_copy_per_publish(mode: tuple[Dialect, Framing]) -> None:
    broker = make_broker()
    sub, pub = Link(broker, mode, "alice"), Link(broker, mode, "bob")
    first = sub.result(sub.client.subscribe("foo")).subscription_id
    second = sub.result(sub.client.subscribe("foo")).subscription_id
    for n in range(3):
        assert pub.result(pub.client.publish("foo", n)).listeners == 2
    received = sub.events()
    assert sorted((e.subscription_id, e.value) for e in received) == sorted(
        (sid, n) for sid in (first, second) for n in range(3)
    )  # 6 events, not the original's k-squared 12
    sub.result(sub.client.unsubscribe(first))
    pub.result(pub.client.publish("foo", "late"))
    assert sub.events() == [Event(event_name="foo", value="late", subscription_id=second)]


def test_events_for_subscriptions_not_open_here_are_counted_not_delivered() -> None:
    client = ClientConnection(client_id="alice")
    stray = {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"event_name": "e", "value": 1, "subscription_id": "S"},
    }
    assert client.receive_data(orjson.dumps(stray) + b"\n") == []
    anonymous = {"jsonrpc": "2.0", "method": "event", "params": {"event_name": "e", "value": 1}}
    assert client.receive_data(orjson.dumps(anonymous) + b"\n") == []
    assert client.unroutable_events == 2


# -- against an original pub_sub server (reference section 4.5) -----------------------


def feed(client: ClientConnection, *frames: str) -> list[Any]:
    """Hand-written frames, concatenated bare as the original wrote them."""
    return client.receive_data("".join(frames).encode())


def test_original_server_frames() -> None:
    cid = "json_rpc_2_test::secret2"
    client = ClientConnection(client_id=cid, dialect=Dialect.PUB_SUB)
    key, data = client.subscribe("foo")
    assert orjson.loads(data) == {
        "jsonrpc": "2.0",
        "method": "subscribe",
        "params": {"event_name": "foo", "client_id": cid, "request_id": str(key)},
    }
    # Subscribe answers are flat, with no "result" object.
    assert feed(
        client,
        '{"jsonrpc":"2.0","method":"1","params":{"status":true,"request_id":"1",'
        f'"subscription_id":"S1","client_id":"{cid}"}}}}',
    ) == [RequestSucceeded(key=1, result=SubscribeResult(subscription_id="S1", client_id=cid))]
    client.subscribe("foo")
    feed(
        client,
        '{"jsonrpc":"2.0","method":"2","params":{"status":true,"request_id":"2",'
        f'"subscription_id":"S2","client_id":"{cid}"}}}}',
    )
    # Events carry no subscription id: one copy per subscription, handed out in turn.
    event = '{"jsonrpc":"2.0","method":"event","params":{"event_name":"foo","value":"bar"}}'
    assert [e.event.subscription_id for e in feed(client, event, event)] == ["S1", "S2"]
    client.publish("foo", "bar")
    assert feed(
        client,
        '{"jsonrpc":"2.0","method":"3","params":{"status":true,"request_id":"3",'
        f'"result":{{"listeners":1,"client_id":"{cid}"}}}}}}',
    ) == [RequestSucceeded(key=3, result=PublishResult(listeners=1, client_id=cid))]
    client.unsubscribe("S1")
    # Unsubscribe answers carry no request_id.
    assert feed(client, '{"jsonrpc":"2.0","method":"4","params":{"status":true,"result":{}}}') == [
        RequestSucceeded(key=4, result=UnsubscribeResult())
    ]
    assert [e.event.subscription_id for e in feed(client, event, "\n", event)] == ["S2", "S2"]
    client.subscribe("bar")
    [failed] = feed(
        client,
        '{"jsonrpc":"2.0","method":"5","params":{"status":false,"request_id":"5",'
        '"error_message":"You are not allowed to subscribe to events."}}',
    )
    assert failed.key == 5 and type(failed.error) is RequestError
    assert failed.error.message == "You are not allowed to subscribe to events."


def test_original_trusted_server_adhoc_id_is_adopted() -> None:
    client = ClientConnection(dialect=Dialect.PUB_SUB)
    client.publish("hey", "bye")
    adhoc = "pub_sub::adhoc_client0.5398324189362498::0:842893218817.5012"
    feed(
        client,
        '{"jsonrpc":"2.0","method":"1","params":{"status":true,"request_id":"1",'
        f'"result":{{"listeners":0,"client_id":"{adhoc}"}}}}}}',
    )
    assert client.client_id == adhoc


MALFORMED = [
    (
        Dialect.PUB_SUB,
        "publish",
        {"status": "yes"},
        RemoteProtocolError,
        "The server sent an invalid response.",
    ),
    (
        Dialect.PUB_SUB,
        "publish",
        {"status": True},
        RemoteProtocolError,
        "The server sent a success response, but did not include a result.",
    ),
    (
        Dialect.PUB_SUB,
        "subscribe",
        {"status": True, "result": {}},
        RemoteProtocolError,
        "The server sent a success response, but did not include a result.",
    ),
    (
        Dialect.PUB_SUB,
        "publish",
        {"status": False},
        RequestError,
        "The server sent a failure response, but did not provide an error message.",
    ),
    (
        Dialect.JSONRPC,
        "publish",
        {"result": None},
        RemoteProtocolError,
        "The server sent a success response, but did not include a result.",
    ),
    (
        Dialect.JSONRPC,
        "publish",
        {"error": "boom"},
        RemoteProtocolError,
        "The server sent an invalid response.",
    ),
    (
        Dialect.JSONRPC,
        "subscribe",
        {"error": {"code": -32001, "message": 5}},
        RequestError,
        "The server sent a failure response, but did not provide an error message.",
    ),
]


@pytest.mark.parametrize(("dialect", "operation", "body", "error_type", "message"), MALFORMED)
def test_malformed_answers_fail_the_request(
    dialect: Dialect, operation: str, body: dict[str, Any], error_type: type, message: str
) -> None:
    client = ClientConnection(client_id="alice", dialect=dialect)
    key, _ = client.publish("e", 1) if operation == "publish" else client.subscribe("e")
    if dialect is Dialect.PUB_SUB:
        frame = {"jsonrpc": "2.0", "method": str(key), "params": {"request_id": str(key), **body}}
    else:
        frame = {"jsonrpc": "2.0", **body, "id": key}
    [outcome] = client.receive_data(orjson.dumps(frame))
    assert isinstance(outcome, RequestFailed) and outcome.key == key
    assert type(outcome.error) is error_type and outcome.error.message == message
    assert client.pending == 0 and client.subscriptions == {}


def test_unknown_error_codes_are_kept_as_integers() -> None:
    client = ClientConnection(client_id="alice")
    key, _ = client.ping()
    [outcome] = client.receive_data(b'{"jsonrpc":"2.0","error":{"code":12345,"message":"odd"},"id":1}')
    assert outcome.key == key
    assert outcome.error.code == 12345 and outcome.error.message == "odd"


# -- lifecycle -------------------------------------------------------------------------


@pytest.mark.parametrize("tail", [b"", b'{"jsonrpc":"2.0","res'])
def test_eof_fails_every_pending_request_and_later_requests(tail: bytes) -> None:
    client = ClientConnection(client_id="alice")
    keys = [client.publish("e", 1)[0], client.subscribe("e")[0], client.ping()[0]]
    client.receive_data(tail)
    outcomes = client.receive_eof()
    assert [o.key for o in outcomes] == keys
    assert all(isinstance(o, RequestFailed) and type(o.error) is ConnectionClosedError for o in outcomes)
    assert client.pending == 0
    for start in (lambda: client.publish("e", 1), lambda: client.subscribe("e"), client.ping):
        with pytest.raises(ConnectionClosedError):
            start()


@pytest.mark.parametrize("dialect", list(Dialect))
def test_forgotten_request_ignores_its_late_answer(dialect: Dialect) -> None:
    link = Link(make_broker(), (dialect, Framing.NEWLINE), "alice")
    key, data = link.client.ping()
    link.client.forget(key)
    link.client.forget(key)  # idempotent
    assert link.client.pending == 0
    assert link.pump(data) == []


def test_unsubscribe_of_an_unknown_local_subscription_is_refused() -> None:
    client = ClientConnection(client_id="alice")
    with pytest.raises(LocalProtocolError):
        client.unsubscribe("not-mine")
    assert client.pending == 0


def test_closing_notification_is_reported() -> None:
    client = ClientConnection()
    message = b'{"jsonrpc":"2.0","method":"closing","params":{"code":-32007,"message":"Slow consumer"}}\n'
    assert client.receive_data(message) == [
        ServerClosing(closing=Closing(code=-32007, message="Slow consumer"))
    ]


# -- robustness against a hostile server -----------------------------------------------


def assert_list_or_pubsub_error(client: ClientConnection, data: bytes) -> None:
    try:
        result = client.receive_data(data)
    except PubSubError:
        return
    assert isinstance(result, list)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_arbitrary_bytes_give_a_list_or_a_pubsub_error(chunks: list[bytes]) -> None:
    client = ClientConnection(dialect=Dialect.PUB_SUB)
    client.subscribe("e")
    client.publish("e", 1)
    for chunk in chunks:
        assert_list_or_pubsub_error(client, chunk)


HOSTILE = {
    "non-ascii digit method": {"method": "\u00b2", "params": {}},
    "closing code not a number": {"method": "closing", "params": {"code": "x"}},
    "closing code a list": {"method": "closing", "params": {"code": []}},
    "unhashable subscription id": {
        "method": "event",
        "params": {"event_name": "e", "value": 1, "subscription_id": []},
    },
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_server_objects_give_a_list_or_a_pubsub_error(name: str) -> None:
    client = ClientConnection(client_id="alice")
    assert_list_or_pubsub_error(client, orjson.dumps({"jsonrpc": "2.0", **HOSTILE[name]}))


def test_every_request_gets_exactly_one_outcome_even_if_a_bad_frame_follows() -> None:
    client = ClientConnection(client_id="alice")
    key, _ = client.ping()
    outcomes: list[Any] = []
    with contextlib.suppress(RemoteProtocolError):
        outcomes += client.receive_data(b'{"jsonrpc":"2.0","result":{},"id":1}\n{bad}\n')
    outcomes += client.receive_eof()
    assert [o.key for o in outcomes] == [key]
