"""A hypothesis fuzzer for the server side of the core (``Broker`` + ``ServerConnection``).

It opens connections (trusted or not, either framing, some with a tiny outbound limit) and
throws at them arbitrary bytes, hand-made hostile frames, and random sequences of valid and
invalid requests and batches in both dialects, split at random.  After every step:

* ``receive_data`` raised nothing, ``receive_eof`` at most ``RemoteProtocolError`` (the
  project's own, documented, error); no message was answered with INTERNAL_ERROR;
* everything the server wrote decodes as JSON frames;
* the broker's indexes agree, no closed or closing connection holds a subscription, and the
  subscriptions of the open connections add up to the broker's count (no orphans);
* listeners equals deliveries: the broker's delivery counter moved by exactly the number of
  event frames written, and a single publish's ``listeners`` is the number of events it caused;
* another connection's ``ping`` is answered, exactly.

The normal suite runs a bounded number of examples; a longer run::

    HARDENING_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/hardening/test_hardening_fuzz.py
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import orjson
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

from pubsub_rpc import (
    BadFrame,
    Broker,
    ClientInfo,
    FrameDecoder,
    RemoteProtocolError,
    ServerConnection,
)

EXAMPLES = int(os.environ.get("HARDENING_FUZZ_EXAMPLES", "1000"))

CLIENTS = {
    "pub": ClientInfo("pub"),
    "sub": ClientInfo("sub"),
    "read-only": ClientInfo("read-only", can_publish=False),
    "write-only": ClientInfo("write-only", can_subscribe=False),
}
METHODS = ["publish", "subscribe", "unsubscribe", "ping"]
EVENT_NAMES = ["a", "b", ""]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
junk = st.one_of(json_values, st.just(None))

HOSTILE_FRAMES = [
    b"[" * 2000 + b"]" * 2000,
    b'{"jsonrpc":"2.0","method":"publish","params":{"client_id":"pub","event_name":"a","value":'
    + b"[" * 300
    + b"]" * 300
    + b"},"
    + b'"id":1}',
    b'{"jsonrpc":"2.0","method":"ping","id":18446744073709551616}',
    b'{"jsonrpc":"2.0","method":"ping","id":1,"x":-9223372036854775809}',
    b'{"jsonrpc":"2.0","method":"ping","id":1e400}',
    b'{"jsonrpc":"2.0","method":"ping","id":"\xff"}',
    b'{"jsonrpc":"2.0","method":"ping","method":"publish","id":1}',
    b"[]",
    b"[1,2,3]",
    b'"\\ud800"',
    b"Content-Length: -1\r\n\r\n",
    b"Content-Length: 99999999999999999999\r\n\r\n",
    b"Content-Length: 3\r\n\r\n{}}",
]


class Conn:
    """A fuzzed connection and what the fuzzer knows about it."""

    def __init__(self, connection: ServerConnection, content_length: bool) -> None:
        self.connection = connection
        self.content_length = content_length
        self.eof = False


class ServerMachine(RuleBasedStateMachine):
    connections = Bundle("connections")

    @initialize(target=connections)
    def start(self) -> Any:
        self.broker = Broker(max_subscriptions=3)
        for info in CLIENTS.values():
            self.broker.register_client(info)
        self.broker.start()
        self.conns: list[Conn] = []
        self.subscription_ids: list[str] = ["not-a-subscription"]
        self.adhoc_ids: list[str] = []
        self.probe = ServerConnection(self.broker)
        # Two connections from the start: one trusted and slow to read, one plain.
        return multiple(self.connect(True, True, False), self.connect(False, False, False))

    # -- building requests -------------------------------------------------------------

    def _client_id(self, data: st.DataObject) -> Any:
        return data.draw(
            st.one_of(
                st.sampled_from([*CLIENTS, "unknown", "", None, *self.adhoc_ids]),
                junk,
            )
        )

    def _request(self, data: st.DataObject) -> Any:
        method = data.draw(st.one_of(st.sampled_from(METHODS), st.text(max_size=10), junk))
        params: dict[str, Any] = {}
        for name, values in (
            ("client_id", None),
            ("event_name", st.sampled_from(EVENT_NAMES)),
            ("value", json_values),
            ("subscription_id", st.sampled_from(self.subscription_ids)),
        ):
            if data.draw(st.booleans()):
                if name == "client_id":
                    params[name] = self._client_id(data)
                else:
                    assert values is not None
                    params[name] = data.draw(st.one_of(values, junk) if data.draw(st.booleans()) else values)
        message: dict[str, Any] = {}
        envelope = data.draw(st.sampled_from(["jsonrpc", "pub_sub", "notification", "broken"]))
        if envelope != "broken" or data.draw(st.booleans()):
            message["jsonrpc"] = "2.0" if envelope != "broken" else data.draw(junk)
        if envelope != "broken" or data.draw(st.booleans()):
            message["method"] = method
        shape = data.draw(st.sampled_from(["object", "array", "absent", "junk"]))
        if shape == "object":
            message["params"] = params
        elif shape == "array":
            message["params"] = list(params.values())
        elif shape == "junk":
            message["params"] = data.draw(junk)
        if envelope == "jsonrpc":
            message["id"] = data.draw(st.one_of(st.integers(-5, 2**40), st.text(max_size=5), st.none(), junk))
        elif envelope == "pub_sub" and isinstance(message.get("params"), dict):
            message["params"]["request_id"] = data.draw(st.one_of(st.text(max_size=5), junk))
        if data.draw(st.integers(0, 9)) == 0:
            message[data.draw(st.text(max_size=5))] = data.draw(junk)
        return message

    def _valid_request(self, data: st.DataObject) -> dict[str, Any]:
        """A well-formed request (its params may still be refused), so that subscriptions,
        events, unsubscribes and slow consumers happen often."""
        method = data.draw(st.sampled_from(METHODS))
        params: dict[str, Any] = {}
        client_id = data.draw(st.sampled_from([*CLIENTS, None, *self.adhoc_ids[-2:]]))
        if client_id is not None or data.draw(st.booleans()):
            params["client_id"] = client_id
        if method in ("publish", "subscribe"):
            params["event_name"] = data.draw(st.sampled_from(EVENT_NAMES))
        if method == "publish":
            params["value"] = data.draw(st.one_of(st.integers(0, 9), st.text(max_size=200)))
        if method == "unsubscribe":
            params["subscription_id"] = data.draw(st.sampled_from(self.subscription_ids[-4:]))
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if data.draw(st.booleans()):
            message["id"] = data.draw(st.integers(0, 100))
        else:
            params["request_id"] = "r"
        return message

    def _frame(self, conn: Conn, body: bytes) -> bytes:
        if conn.content_length:
            return b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        return body + b"\n"

    # -- rules -------------------------------------------------------------------------

    @rule(
        target=connections, trusted=st.booleans(), tiny_outbound=st.booleans(), content_length=st.booleans()
    )
    def connect(self, trusted: bool, tiny_outbound: bool, content_length: bool) -> Conn:
        connection = ServerConnection(
            self.broker, trusted=trusted, max_outbound=300 if tiny_outbound else 1 << 20
        )
        conn = Conn(connection, content_length)
        self.conns.append(conn)
        return conn

    @rule(conn=connections, data=st.data())
    def send_request(self, conn: Conn, data: st.DataObject) -> None:
        message = self._request(data)
        body = orjson.dumps(message)
        single_publish = message.get("method") == "publish" and "id" in message
        self._step(conn, self._frame(conn, body), data, single_publish=single_publish)

    @rule(conn=connections, data=st.data())
    def send_valid_request(self, conn: Conn, data: st.DataObject) -> None:
        message = self._valid_request(data)
        single_publish = message["method"] == "publish" and "id" in message
        self._step(conn, self._frame(conn, orjson.dumps(message)), data, single_publish=single_publish)

    @rule(subscriber=connections, publisher=connections, data=st.data())
    def fan_out(self, subscriber: Conn, publisher: Conn, data: st.DataObject) -> None:
        """A subscription, then a publish to it from another client: events (and, for the
        connections with a tiny outbound limit, slow consumers) on most runs."""
        name = data.draw(st.sampled_from(EVENT_NAMES))
        subscribe = {"jsonrpc": "2.0", "method": "subscribe", "params": {"event_name": name}, "id": 1}
        if not subscriber.connection.trusted or data.draw(st.booleans()):
            subscribe["params"]["client_id"] = "sub"
        self._step(subscriber, self._frame(subscriber, orjson.dumps(subscribe)), data)
        value = "v" * data.draw(st.integers(0, 400))
        publish = {"event_name": name, "value": value, "client_id": "pub"}
        message = {"jsonrpc": "2.0", "method": "publish", "params": publish, "id": 2}
        self._step(publisher, self._frame(publisher, orjson.dumps(message)), data, single_publish=True)

    @rule(conn=connections, data=st.data())
    def send_batch(self, conn: Conn, data: st.DataObject) -> None:
        members = data.draw(st.lists(st.one_of(st.builds(lambda: None), junk), max_size=3))
        batch = [self._request(data) if member is None else member for member in members]
        self._step(conn, self._frame(conn, orjson.dumps(batch)), data)

    @rule(conn=connections, data=st.data())
    def send_several(self, conn: Conn, data: st.DataObject) -> None:
        """Several requests in one write, concatenated or pretty-printed."""
        count = data.draw(st.integers(1, 4))
        bodies = [
            orjson.dumps(self._request(data), option=data.draw(st.sampled_from([0, orjson.OPT_INDENT_2])))
            for _ in range(count)
        ]
        self._step(conn, b"".join(self._frame(conn, body) for body in bodies), data)

    @rule(
        conn=connections,
        data=st.data(),
        raw=st.one_of(st.binary(max_size=64), st.integers(0, len(HOSTILE_FRAMES) - 1)),
    )
    def send_bytes(self, conn: Conn, data: st.DataObject, raw: bytes | int) -> None:
        if isinstance(raw, int):
            raw = HOSTILE_FRAMES[raw]
        framed = data.draw(st.booleans())
        self._step(conn, self._frame(conn, raw) if framed else raw, data)

    @rule(conn=connections)
    def eof(self, conn: Conn) -> None:
        before = self.broker.events_delivered
        if not conn.eof:
            conn.eof = True
            # A fragment was pending: documented, and the only error allowed.
            with contextlib.suppress(RemoteProtocolError):
                conn.connection.receive_eof()
        self._drain(before)

    @rule(conn=connections)
    def close(self, conn: Conn) -> None:
        before = self.broker.events_delivered
        conn.connection.close()
        self._drain(before)

    # -- a step and its accounting -----------------------------------------------------

    def _step(self, conn: Conn, payload: bytes, data: st.DataObject, *, single_publish: bool = False) -> None:
        before = self.broker.events_delivered
        cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for piece in pieces:
            conn.connection.receive_data(piece)  # must never raise
        outputs = self._drain(before)
        if single_publish and not conn.connection.closing:
            answers = [f for f in outputs.get(id(conn), []) if "result" in f or "error" in f]
            events = sum(
                1
                for frames in outputs.values()
                for f in frames
                if f.get("method") == "event" and "status" not in f["params"]
            )
            for answer in answers:
                if (
                    "result" in answer
                    and isinstance(answer["result"], dict)
                    and "listeners" in answer["result"]
                ):
                    assert answer["result"]["listeners"] == events

    def _drain(self, delivered_before: int) -> dict[int, list[Any]]:
        """Take every connection's output; check it decodes and counts the events."""
        outputs: dict[int, list[Any]] = {}
        events = 0
        for conn in self.conns:
            data = conn.connection.data_to_send()
            if not data:
                continue
            frames = FrameDecoder(max_frame_size=1 << 30).feed(data)
            assert not any(isinstance(frame, BadFrame) for frame in frames), data[:200]
            frames = [f for frame in frames for f in (frame if isinstance(frame, list) else [frame])]
            outputs[id(conn)] = frames
            for frame in frames:
                assert isinstance(frame, dict)
                # An event, not a pub_sub answer to a request_id of "event" (which the
                # spec forbids clients to use, and the fuzzer may still send).
                if frame.get("method") == "event" and "status" not in frame["params"]:
                    events += 1
                elif frame.get("method") == "closing" and "status" not in frame["params"]:
                    event(f"closing {frame['params']['code']}")
                result = frame.get("result") or (frame.get("params") or {}).get("result")
                if isinstance(result, dict):
                    if isinstance(result.get("subscription_id"), str):
                        self.subscription_ids.append(result["subscription_id"])
                    client_id = result.get("client_id")
                    if (
                        isinstance(client_id, str)
                        and client_id not in CLIENTS
                        and client_id not in self.adhoc_ids
                    ):
                        self.adhoc_ids.append(client_id)
        assert self.broker.events_delivered - delivered_before == events
        if events:
            event("events delivered")
        return outputs

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def broker_is_consistent(self) -> None:
        if not hasattr(self, "broker"):
            return
        self.broker.check_consistency()
        live = 0
        for conn in self.conns:
            held = self.broker.subscriptions_of(conn.connection)
            if conn.connection.closing:
                assert held == 0, "a closing or closed connection still holds subscriptions"
            live += held
            assert conn.connection.internal_errors == 0
        assert live == self.broker.subscription_count, "orphan subscriptions"

    @invariant()
    def another_connection_is_answered(self) -> None:
        if not hasattr(self, "probe"):
            return
        self.probe.receive_data(b'{"jsonrpc":"2.0","method":"ping","id":"probe"}\n')
        assert self.probe.data_to_send() == b'{"jsonrpc":"2.0","result":{},"id":"probe"}\n'


ServerMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestServerFuzz = ServerMachine.TestCase
