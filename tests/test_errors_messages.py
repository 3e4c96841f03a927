"""The error vocabulary and the message types: codes, exception tree, dataclass shapes, NO_ID."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

import pubsub_rpc
from pubsub_rpc import (
    NO_ID,
    ClientInfo,
    ConnectionClosedError,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    PubSubError,
    RemoteProtocolError,
    RequestError,
    RequestTimeoutError,
)
from pubsub_rpc._errors import error_code_from_int

JSONRPC_RESERVED = {-32700, -32600, -32601, -32602, -32603}


def test_error_codes_are_unique_and_in_their_ranges() -> None:
    values = [int(code) for code in ErrorCode]
    assert len(values) == len(set(values))
    for code in ErrorCode:
        assert int(code) in JSONRPC_RESERVED or -32099 <= code <= -32000, code
    assert {int(c) for c in ErrorCode} >= JSONRPC_RESERVED


def test_error_code_from_int_keeps_unknown_codes() -> None:
    assert error_code_from_int(-32001) is ErrorCode.UNKNOWN_CLIENT
    assert error_code_from_int(42) == 42 and type(error_code_from_int(42)) is int


def test_protocol_error_cannot_be_raised_directly() -> None:
    with pytest.raises(TypeError):
        ProtocolError("who broke it?")
    for cls in (LocalProtocolError, RemoteProtocolError):
        error = cls("broken")
        assert isinstance(error, ProtocolError) and isinstance(error, PubSubError)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (LocalProtocolError("m"), ErrorCode.INVALID_REQUEST),
        (RemoteProtocolError("m"), ErrorCode.PARSE_ERROR),
        (ConnectionClosedError("m"), ErrorCode.SERVER_CLOSING),
        (RequestTimeoutError("m"), ErrorCode.INTERNAL_ERROR),
        (RequestError("m", code=ErrorCode.UNKNOWN_CLIENT), ErrorCode.UNKNOWN_CLIENT),
        (RemoteProtocolError("m", code=ErrorCode.FRAME_TOO_LARGE), ErrorCode.FRAME_TOO_LARGE),
    ],
)
def test_every_error_carries_a_code_and_its_message(error: PubSubError, code: ErrorCode) -> None:
    assert error.code == code and error.message == "m"
    assert isinstance(error, PubSubError)
    assert repr(error) == f"{type(error).__name__}('m', code={int(code)})"


def test_request_error_prints_like_the_original() -> None:
    error = RequestError("You are not allowed to publish events.", code=ErrorCode.PUBLISH_FORBIDDEN)
    assert str(error) == "`pub_sub` exception: You are not allowed to publish events."
    assert error.message == "You are not allowed to publish events."
    with pytest.raises(TypeError):
        RequestError("a code is required")  # type: ignore[call-arg]


def test_client_info_repr_never_shows_the_secret_id() -> None:
    info = ClientInfo("s3cret-publisher", can_subscribe=False)
    for text in (repr(info), str(info), f"{info!r}", repr([info]), repr({"client": info})):
        assert "s3cret-publisher" not in text
    assert repr(info) == "ClientInfo(id=<redacted>, can_publish=True, can_subscribe=False, can_inspect=False)"
    assert info == ClientInfo("s3cret-publisher", can_publish=True, can_subscribe=False)


MESSAGE_TYPES = [
    pubsub_rpc.Publish,
    pubsub_rpc.Subscribe,
    pubsub_rpc.Unsubscribe,
    pubsub_rpc.Ping,
    pubsub_rpc.PublishResult,
    pubsub_rpc.SubscribeResult,
    pubsub_rpc.UnsubscribeResult,
    pubsub_rpc.PingResult,
    pubsub_rpc.Event,
    pubsub_rpc.Closing,
    pubsub_rpc.RequestSucceeded,
    pubsub_rpc.RequestFailed,
    pubsub_rpc.EventReceived,
    pubsub_rpc.ServerClosing,
    pubsub_rpc.BadFrame,
]


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
def test_messages_are_frozen_slotted_keyword_only_dataclasses(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert "__slots__" in cls.__dict__
    assert all(field.kw_only for field in dataclasses.fields(cls))


def test_messages_reject_mutation_and_positional_arguments() -> None:
    event = pubsub_rpc.Event(event_name="e", value=[1], subscription_id=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.value = 2  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        event.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        pubsub_rpc.Publish("e", 1)  # type: ignore[misc]
    assert pubsub_rpc.Publish(event_name="e", value=None).client_id is None


def test_client_info_is_frozen_and_slotted_but_positional() -> None:
    # Positional by design: DESIGN.md writes ClientInfo("s3cret-publisher", can_subscribe=False).
    assert ClientInfo.__dataclass_params__.frozen and "__slots__" in ClientInfo.__dict__
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClientInfo("a").can_publish = False  # type: ignore[misc]


def test_no_id_is_a_sentinel_distinct_from_none() -> None:
    assert NO_ID is not None and NO_ID != None  # noqa: E711
    assert repr(NO_ID) == "NO_ID"
    assert pubsub_rpc.NO_ID is pubsub_rpc._messages.NO_ID
    assert copy.copy(NO_ID) is NO_ID and copy.deepcopy(NO_ID) is NO_ID
    assert pickle.loads(pickle.dumps(NO_ID)) is NO_ID


def test_no_id_becomes_null_on_the_wire_only_where_json_rpc_says_so() -> None:
    from pubsub_rpc._wire import error_response, success_response

    assert success_response(NO_ID, {})["id"] is None
    assert error_response(NO_ID, ErrorCode.PARSE_ERROR, "m") == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "m"},
        "id": None,
    }
    assert error_response(None, 1, "m", data=None)["error"] == {"code": 1, "message": "m", "data": None}


def test_public_names_are_all_exported() -> None:
    assert sorted(pubsub_rpc.__all__) == sorted(set(pubsub_rpc.__all__))
    for name in pubsub_rpc.__all__:
        assert hasattr(pubsub_rpc, name), name
