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

from ._errors import ErrorCode, RequestError
from ._frames import Framing, frame_header
from ._messages import CLOSING, EVENT, NO_ID, RequestId

_JSONRPC: Final = "2.0"
# Event names up to this length have their JSON cached; longer ones are rare
# and would let a hostile peer pin large strings in memory.
_NAME_CACHE_MAX_LENGTH: Final = 256
_NAME_CACHE_SIZE: Final = 10_000
_new_object: Final = object.__new__

#: Everything of an event frame before the event name.
_EVENT_PREFIX: Final = b'{"jsonrpc":"2.0","method":"' + EVENT.encode() + b'","params":{"event_name":'
_ID_MEMBER: Final = b',"subscription_id":'


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
    """The per-subscription end of an event body: the ``subscription_id`` member and the closing braces."""
    # The member's key is here rather than in the shared head: one
    # concatenation less per publish, the same bytes per delivery.
    return _ID_MEMBER + orjson.dumps(subscription_id) + b"}}"


def event_head_start(event_name_json: bytes) -> bytes:
    """The start of every event body for one event name, up to its value (brokers cache it)."""
    return _EVENT_PREFIX + event_name_json + b',"value":'


class EncodedEvent:
    """One published event, serialised once and shared by every delivery."""

    __slots__ = ("_cl_headers", "event_name", "head", "value")

    def __init__(self, event_name: str, value: Any) -> None:
        """Serialise ``value`` published as ``event_name``; raises ``orjson.JSONEncodeError``.

        Brokers make theirs with ``EventEncoder.encode``, which fills the
        same slots faster and caches each name's part.
        """
        self.event_name = event_name
        self.value = value
        #: The event body up to its value; every subscriber shares it.
        self.head = event_head_start(orjson.dumps(event_name)) + orjson.dumps(value)
        # Made only if a subscriber uses Content-Length framing.
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


class EventEncoder:
    """Serialises published events, keeping each recurring event name's part of the head."""

    __slots__ = ("_head_starts",)

    def __init__(self) -> None:
        self._head_starts: dict[str, bytes] = {}

    def encode(self, event_name: str, value: Any) -> EncodedEvent:
        """The event for ``value`` published as ``event_name``; raises ``RequestError`` if not encodable."""
        # Hot path (once per publish): the cache hit is inline, and the
        # object is filled here rather than by EncodedEvent.__init__, which
        # saves a Python frame (~50 ns, ~2% of a publish to one subscriber).
        head_start = self._head_starts.get(event_name)
        if head_start is None:
            head_start = self._new_head_start(event_name)
        try:
            head = head_start + orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            raise _unencodable(exc) from None
        event = _new_object(EncodedEvent)
        event.event_name = event_name
        event.value = value
        event.head = head
        event._cl_headers = None
        return event

    def _new_head_start(self, event_name: str) -> bytes:
        head_start = event_head_start(orjson.dumps(event_name))
        # Bounded in count and size, so hostile names cannot grow it.
        if len(event_name) <= _NAME_CACHE_MAX_LENGTH and len(self._head_starts) < _NAME_CACHE_SIZE:
            self._head_starts[event_name] = head_start
        return head_start


def _unencodable(exc: orjson.JSONEncodeError) -> RequestError:
    # Deeper than orjson writes (254 levels; reading allows 1024), or, from an
    # in-process caller, not JSON at all.
    return RequestError(
        f'Parameter "value" for method "publish" cannot be encoded as JSON: {exc}.',
        code=ErrorCode.INVALID_PARAMS,
    )
