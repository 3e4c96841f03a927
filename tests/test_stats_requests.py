"""The ``stats`` request through both sans-IO client state machines, with no I/O.

``ClientConnection`` (every dialect and framing) and ``InProcessClientConnection``
build the request, and turn the answer into ``StatsResult`` or the refusal into
``RequestError``; the in-process server answers ``stats`` and counts requests
as byte-stream connections do.
"""

from __future__ import annotations

import orjson
import pytest
from server_helpers import started_broker
from test_client_connection import MODES, Link

from pubsub_rpc import (
    Broker,
    ClientConnection,
    ClientInfo,
    Dialect,
    ErrorCode,
    Framing,
    InProcessClientConnection,
    InProcessConnection,
    RemoteProtocolError,
    RequestError,
    RequestFailed,
    RequestSucceeded,
    StatsResult,
)

NOT_ALLOWED = "You are not allowed to read server statistics."


def make_broker() -> Broker:
    return started_broker(ClientInfo("ops", can_inspect=True), ClientInfo("alice"))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m[0].value}-{m[1].value}")
def test_stats_round_trips_in_every_mode(mode: tuple[Dialect, Framing]) -> None:
    broker = make_broker()
    alice, ops = Link(broker, mode, "alice"), Link(broker, mode, "ops")
    alice.result(alice.client.subscribe("news"))
    result = ops.result(ops.client.stats())
    assert isinstance(result, StatsResult)
    assert result.counters["subscriptions"] == 1
    assert result.counters["clients_registered"] == 2
    assert result.counters["requests"] == 2  # the subscribe, and this request
    refused = alice.call(alice.client.stats())
    assert isinstance(refused, RequestFailed)
    assert isinstance(refused.error, RequestError)
    assert (refused.error.code, refused.error.message) == (ErrorCode.INSPECT_FORBIDDEN, NOT_ALLOWED)
    assert ops.client.pending == alice.client.pending == 0


def test_stats_request_shapes() -> None:
    jsonrpc = ClientConnection(client_id="ops")
    key, data = jsonrpc.stats()
    assert orjson.loads(data) == {
        "jsonrpc": "2.0",
        "method": "stats",
        "params": {"client_id": "ops"},
        "id": key,
    }
    pub_sub = ClientConnection(client_id="ops", dialect=Dialect.PUB_SUB)
    key, data = pub_sub.stats()
    assert orjson.loads(data) == {
        "jsonrpc": "2.0",
        "method": "stats",
        "params": {"client_id": "ops", "request_id": str(key)},
    }


def test_a_stats_answer_without_a_result_object_is_malformed() -> None:
    client = ClientConnection(client_id="ops")
    key, _ = client.stats()
    (outcome,) = client.receive_data(orjson.dumps({"jsonrpc": "2.0", "result": [1], "id": key}) + b"\n")
    assert isinstance(outcome, RequestFailed) and isinstance(outcome.error, RemoteProtocolError)


def _in_process(
    broker: Broker, client_id: str | None
) -> tuple[InProcessConnection, InProcessClientConnection]:
    server = InProcessConnection(broker)
    client = InProcessClientConnection(client_id=client_id)
    client.receive_handshake(server.data_to_send()[0])
    return server, client


def _ask(server: InProcessConnection, client: InProcessClientConnection) -> object:
    key, message = client.stats()
    server.receive_data([message])
    (outcome,) = client.receive_data(server.data_to_send())
    assert getattr(outcome, "key", None) == key
    return outcome


def test_in_process_stats_permission_and_counting() -> None:
    broker = make_broker()
    server, ops = _in_process(broker, "ops")
    outcome = _ask(server, ops)
    assert isinstance(outcome, RequestSucceeded) and isinstance(outcome.result, StatsResult)
    assert outcome.result.counters["requests"] == 1
    other, alice = _in_process(broker, "alice")
    refused = _ask(other, alice)
    assert isinstance(refused, RequestFailed) and isinstance(refused.error, RequestError)
    assert refused.error.code == ErrorCode.INSPECT_FORBIDDEN
    # In-process peers are trusted: with no id, the ad-hoc identity may inspect.
    third, adhoc = _in_process(broker, None)
    counted = _ask(third, adhoc)
    assert isinstance(counted, RequestSucceeded) and isinstance(counted.result, StatsResult)
    assert counted.result.counters["requests"] == 3
    assert counted.result.counters["requests_refused"] == 1
    # A bad client_id is refused as a malformed request, and counted as refused.
    server.receive_data(
        [{"id": server.connection_id, "request_id": "9", "method": "stats", "params": {"client_id": 5}}]
    )
    (answer,) = server.data_to_send()
    assert answer == {
        "status": False,
        "request_id": "9",
        "error_message": "Expected client_id.",
        "error_code": ErrorCode.INVALID_PARAMS,
    }
    assert broker.requests_refused == 2
