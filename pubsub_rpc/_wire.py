"""Exact shapes of what a server writes: answers in both dialects, events, closings.

Key order matters to people diffing captures against the original, so every
builder here writes keys in the original's order.  Events are the hot path:
``EncodedEvent`` serialises the published value once and each subscription
adds only a precomputed tail (its ``subscription_id``), so a publish to N
subscribers costs one ``orjson.dumps`` plus N list appends.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ._errors import ErrorCode
from ._frames import Framing, frame_header, frame_trailer
from ._messages import CLOSING, EVENT, NO_ID, RequestId

_JSONRPC: Final = "2.0"

#: Everything of an event frame before the event name.
_EVENT_PREFIX: Final = b'{"jsonrpc":"2.0","method":"' + EVENT.encode() + b'","params":{"event_name":'
_HEAD_END: Final = b',"subscription_id":'


def success_response(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC 2.0 success response."""
    return {"jsonrpc": _JSONRPC, "result": result, "id": None if request_id is NO_ID else request_id}


def error_response(
    request_id: RequestId, code: ErrorCode | int, message: str, data: Any = NO_ID
) -> dict[str, Any]:
    """A JSON-RPC 2.0 error response (``id`` null when the request's id is unknown)."""
    error: dict[str, Any] = {"code": int(code), "message": message}
    if data is not NO_ID:
        error["data"] = data
    return {"jsonrpc": _JSONRPC, "error": error, "id": None if request_id is NO_ID else request_id}


def pub_sub_answer(request_id: str, method: str, result: dict[str, Any]) -> dict[str, Any]:
    """The original's success answer: a notification named after ``request_id``.

    Besides the seed README's ``result`` object it repeats the fields the
    original Dart client reads: flat ``subscription_id``/``client_id`` on a
    subscribe answer (the original sent only those), ``result.client_id`` on
    publish (already inside ``result``).
    """
    params: dict[str, Any] = {"status": True, "request_id": request_id, "result": result}
    if method == "subscribe":
        params["subscription_id"] = result["subscription_id"]
        params["client_id"] = result["client_id"]
    return {"jsonrpc": _JSONRPC, "method": request_id, "params": params}


def pub_sub_failure(request_id: str, code: ErrorCode | int, message: str) -> dict[str, Any]:
    """The original's failure answer, plus a machine-readable ``error_code``."""
    return {
        "jsonrpc": _JSONRPC,
        "method": request_id,
        "params": {
            "status": False,
            "request_id": request_id,
            "error_message": message,
            "error_code": int(code),
        },
    }


def closing_notification(code: ErrorCode | int, message: str) -> dict[str, Any]:
    """The last notification before the server closes a connection on purpose."""
    return {"jsonrpc": _JSONRPC, "method": CLOSING, "params": {"code": int(code), "message": message}}


def subscription_tail(subscription_id: str) -> bytes:
    """The per-subscription end of an event body: its id and the closing braces."""
    return orjson.dumps(subscription_id) + b"}}"


def event_head_start(event_name_json: bytes) -> bytes:
    """The start of every event body for one event name, up to its value (brokers cache it)."""
    return _EVENT_PREFIX + event_name_json + b',"value":'


class EncodedEvent:
    """One published event, serialised once and shared by every delivery."""

    __slots__ = ("_cl_headers", "event_name", "head", "value")

    def __init__(self, head_start: bytes, event_name: str, value: Any) -> None:
        """``head_start`` is ``event_head_start(<event_name as JSON>)``."""
        self.event_name = event_name
        self.value = value
        #: The event body up to the subscription id; every subscriber shares it.
        # Hot path (once per publish): the name's part comes cached, and the
        # Content-Length headers are made only if a subscriber uses them.
        self.head = head_start + orjson.dumps(value) + _HEAD_END
        self._cl_headers: dict[int, bytes] | None = None

    def content_length_header(self, tail_length: int) -> bytes:
        """The ``Content-Length`` header of this event for a tail of that length."""
        # Subscription ids have one length in practice, so this dict holds one entry.
        headers = self._cl_headers
        if headers is None:
            headers = self._cl_headers = {}
        header = headers.get(tail_length)
        if header is None:
            header = frame_header(len(self.head) + tail_length, Framing.CONTENT_LENGTH)
            headers[tail_length] = header
        return header

    def frame(self, tail: bytes, framing: Framing) -> bytes:
        """The whole frame for one subscription; the slow but simple form, for tests."""
        body_tail = tail[:-1] if framing is Framing.NEWLINE else tail
        return (
            frame_header(len(self.head) + len(body_tail), framing)
            + self.head
            + body_tail
            + frame_trailer(framing)
        )
