"""The in-process flavour (the original's "isolate" protocol): Python objects, not bytes.

A connection carries plain Python objects in both directions.  The shapes are
the original ``pub_sub`` isolate flavour's, so code written against it reads
naturally:

* handshake, server to client, first message: ``{"status": True, "id": <connection id>}``;
* request, client to server:
  ``{"id": <connection id>, "request_id": <str>, "method": <str>, "params": {...}}``
  with ``params`` holding ``client_id`` (str or None) plus ``event_name`` and
  ``value`` (publish), ``event_name`` (subscribe) or ``subscription_id``
  (unsubscribe).  ``ping`` (empty params) is our addition, and so are the
  optional ``pattern`` of subscribe (instead of ``event_name``) and
  ``exclude_self``/``report`` of publish, with the JSON-RPC dialects' meaning;
* answer: ``{"status": True, "request_id": R, "result": {...}}`` or
  ``{"status": False, "request_id": R, "error_message": <text>, "error_code": <int>}``;
* event: ``[event_name, value, subscription_id]``.  The original sent only the
  first two and its client routed by event name, which hands every event to
  every local subscription of that name (k subscriptions, k squared
  deliveries); the third element lets a client route by subscription.  A
  client that checks for exactly two elements ignores these, so an original
  client must not be pointed at this server;
* closing, server to client, last message:
  ``{"status": False, "closing": True, "error_code": <int>, "error_message": <text>}``
  (no ``request_id``, so a client that only matches answers ignores it).

``InProcessConnection`` is the server side (a ``Subscriber`` the broker pushes
events to); ``InProcessClientConnection`` (in ``_inprocess_client``) the client side.  Neither does any
I/O: ``transports.inprocess`` moves the objects over trio memory channels.
In-process connections are always trusted, as isolates were.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Final

import orjson

from ._broker import Broker, Subscription
from ._dispatch import optional_flag, pattern_param
from ._errors import ErrorCode, RequestError, describe
from ._messages import (
    PING,
    PUBLISH,
    STATS,
    SUBSCRIBE,
    UNSUBSCRIBE,
)
from ._patterns import Pattern, PatternError
from ._server import log_fault
from ._wire import EncodedEvent

#: Default bound on messages queued for one in-process connection.
DEFAULT_MAX_OUTBOUND_MESSAGES: Final = 10_000

_EXPECT_PUBLISH: Final = "Expected client_id, event_name, and value."
_EXPECT_SUBSCRIBE: Final = "Expected client_id, and event_name."
_EXPECT_UNSUBSCRIBE: Final = "Expected client_id, and subscription_id."
_EXPECT_STATS: Final = "Expected client_id."
_IMMUTABLE: Final = (str, int, float, bool, type(None))


def unrecognized_method(method: object) -> str:
    """The original's answer to an unknown method or a malformed envelope."""
    shown = method if type(method) is str else describe(method)
    return f'Unrecognized method "{shown}". Or, you omitted id, request_id, method, or params.'


def _failure(request_id: str, code: ErrorCode | int, message: str) -> dict[str, Any]:
    return {"status": False, "request_id": request_id, "error_message": message, "error_code": int(code)}


def _optional_id(params: dict[str, Any]) -> tuple[bool, str | None]:
    value = params.get("client_id")
    return (value is None or type(value) is str), value


class _ValueCopies:
    """Hands each in-process subscriber its own copy of a published value.

    Isolates copied every message; sharing one dict between subscribers would
    let one of them change what the others see.  A fan-out pushes the same
    ``EncodedEvent`` to its subscribers back to back, so caching the JSON of
    the last one makes each copy a single ``orjson.loads``.
    """

    __slots__ = ("_event", "_json")

    def __init__(self) -> None:
        self._event: EncodedEvent | None = None
        self._json = b""

    def copy(self, event: EncodedEvent) -> Any:
        value = event.value
        if isinstance(value, _IMMUTABLE):
            return value
        if self._event is not event:
            self._json = orjson.dumps(value)
            self._event = event
        return orjson.loads(self._json)


_copies: Final = _ValueCopies()


class InProcessConnection:
    """Server side of one in-process connection: objects in, objects out."""

    #: In-process peers share the server's process, so they are trusted (as isolates were).
    trusted = True

    def __init__(
        self,
        broker: Broker,
        *,
        connection_id: str | None = None,
        on_output: Callable[[], None] | None = None,
        max_outbound: int = DEFAULT_MAX_OUTBOUND_MESSAGES,
    ) -> None:
        self.broker = broker
        #: Routes requests to this connection; not a credential.
        self.connection_id = connection_id or str(uuid.uuid4())
        self.on_output = on_output
        self.max_outbound = max_outbound
        self._out: list[object] = [{"status": True, "id": self.connection_id}]
        self._closing = False
        self._closed = False
        #: Messages that could not be answered (no string ``request_id``) and were dropped.
        self.dropped = 0
        #: Requests whose handling failed inside the server (answered with
        #: INTERNAL_ERROR); always 0 unless there is a bug.
        self.internal_errors = 0
        #: Why the server decided to close this connection, once it has.
        self.close_reason: ErrorCode | int | None = None

    @property
    def closing(self) -> bool:
        """The server wants this connection closed once its output is delivered."""
        return self._closing

    @property
    def outbound_messages(self) -> int:
        """Messages queued and not yet taken by ``data_to_send``."""
        return len(self._out)

    def data_to_send(self) -> list[object]:
        """Every message queued since the last call, in order (the handshake first)."""
        out = self._out
        if not out:
            return out
        self._out = []
        return out

    def receive_data(self, messages: list[object]) -> None:
        """Handle requests from the client; answers are queued for sending."""
        for message in messages:
            if self._closing:
                return
            try:
                answer = self._handle(message)
            except Exception as exc:  # a bug of ours: answer it, keep the connection
                answer = self._internal_error(message, exc)
            if answer is not None:
                self._queue(answer)

    def _internal_error(self, message: object, exc: Exception) -> dict[str, Any] | None:
        """Answer a request whose handling failed inside the server, as byte streams do."""
        self.internal_errors += 1
        log_fault(exc)
        request_id = message.get("request_id") if type(message) is dict else None
        if type(request_id) is not str:
            return None  # nothing to address an answer to (_handle drops these first)
        return _failure(request_id, ErrorCode.INTERNAL_ERROR, "Internal error.")

    def receive_eof(self) -> None:
        """The client will send nothing more."""
        self._closing = True

    def start_closing(self, code: ErrorCode | int, message: str) -> None:
        """Queue the closing message and accept nothing more."""
        if self._closing:
            return
        self._queue({"status": False, "closing": True, "error_code": int(code), "error_message": message})
        self._closing = True
        self.close_reason = code
        self.broker.drop_connection(self)

    def close(self) -> None:
        """The channels are gone: drop this connection's subscriptions and identity."""
        if not self._closed:
            self._closed = True
            self._closing = True
            self.broker.drop_connection(self)

    def push_event(self, event: EncodedEvent, subscription: Subscription) -> bool:
        """Queue one event (called by the broker during a publish); False once closing."""
        if self._closing:
            return False  # nothing may follow the closing message
        self._queue([event.event_name, _copies.copy(event), subscription.id])
        if len(self._out) > self.max_outbound:
            self.start_closing(
                ErrorCode.SLOW_CONSUMER,
                f"Slow consumer: more than {self.max_outbound} messages were waiting to be read.",
            )
        return True

    def _queue(self, message: object) -> None:
        if not self._out and self.on_output is not None:
            self.on_output()
        self._out.append(message)

    def _handle(self, message: object) -> dict[str, Any] | None:
        if type(message) is not dict:
            self.dropped += 1
            return None
        request_id = message.get("request_id")
        if type(request_id) is not str:
            # Nothing to put in an answer that the client could match.
            self.dropped += 1
            return None
        method = message.get("method")
        params = message.get("params")
        # Counted as byte-stream connections count them, so ``stats`` covers every transport.
        self.broker.requests += 1
        if message.get("id") != self.connection_id or type(params) is not dict or method not in _METHODS:
            # The original dropped a bad envelope silently and left the client
            # waiting forever; its unknown-method text names every field.
            self.broker.requests_refused += 1
            return _failure(request_id, ErrorCode.METHOD_NOT_FOUND, unrecognized_method(method))
        try:
            result = _METHODS[method](self, params)
        except RequestError as exc:
            self.broker.requests_refused += 1
            return _failure(request_id, exc.code, exc.message)
        return {"status": True, "request_id": request_id, "result": result}

    def _publish(self, params: dict[str, Any]) -> dict[str, Any]:
        ok, client_id = _optional_id(params)
        event_name = params.get("event_name")
        if not ok or type(event_name) is not str or "value" not in params:
            raise RequestError(_EXPECT_PUBLISH, code=ErrorCode.INVALID_PARAMS)
        value = params["value"]
        if not isinstance(value, _IMMUTABLE):
            # Byte-stream subscribers need JSON, and the broker encodes only when
            # somebody listens: check now so the answer never depends on that.
            try:
                orjson.dumps(value)
            except TypeError as exc:
                raise RequestError(
                    f"The value cannot be encoded as JSON: {exc}", code=ErrorCode.INVALID_PARAMS
                ) from None
        if "exclude_self" in params or "report" in params:
            return self.broker.publish(
                self,
                client_id,
                event_name,
                value,
                exclude_self=optional_flag(params, PUBLISH, "exclude_self", True),
                report=optional_flag(params, PUBLISH, "report", False),
            )
        return self.broker.publish(self, client_id, event_name, value)

    def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        ok, client_id = _optional_id(params)
        # The same checks and texts as the JSON-RPC dialects for the pattern,
        # which the original's isolate flavour did not have.
        pattern = pattern_param(params)
        if pattern is not None:
            if not ok:
                raise RequestError(_EXPECT_SUBSCRIBE, code=ErrorCode.INVALID_PARAMS)
            try:
                parsed = Pattern.parse(pattern)
            except PatternError as exc:
                raise RequestError(str(exc), code=ErrorCode.INVALID_PARAMS) from None
            return self.broker.subscribe_pattern(self, client_id, parsed)
        event_name = params.get("event_name")
        if not ok or type(event_name) is not str:
            raise RequestError(_EXPECT_SUBSCRIBE, code=ErrorCode.INVALID_PARAMS)
        return self.broker.subscribe(self, client_id, event_name)

    def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        ok, client_id = _optional_id(params)
        subscription_id = params.get("subscription_id")
        if not ok or type(subscription_id) is not str:
            raise RequestError(_EXPECT_UNSUBSCRIBE, code=ErrorCode.INVALID_PARAMS)
        return self.broker.unsubscribe(self, client_id, subscription_id)

    def _ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _stats(self, params: dict[str, Any]) -> dict[str, Any]:
        ok, client_id = _optional_id(params)
        if not ok:
            raise RequestError(_EXPECT_STATS, code=ErrorCode.INVALID_PARAMS)
        return self.broker.inspect(self, client_id)


_METHODS: Final[dict[str, Callable[[InProcessConnection, dict[str, Any]], dict[str, Any]]]] = {
    PUBLISH: InProcessConnection._publish,
    SUBSCRIBE: InProcessConnection._subscribe,
    UNSUBSCRIBE: InProcessConnection._unsubscribe,
    PING: InProcessConnection._ping,
    STATS: InProcessConnection._stats,
}
