"""The in-process flavour (the original's "isolate" protocol): Python objects, not bytes.

A connection carries plain Python objects in both directions.  The shapes are
the original ``pub_sub`` isolate flavour's, so code written against it reads
naturally:

* handshake, server to client, first message: ``{"status": True, "id": <connection id>}``;
* request, client to server:
  ``{"id": <connection id>, "request_id": <str>, "method": <str>, "params": {...}}``
  with ``params`` holding ``client_id`` (str or None) plus ``event_name`` and
  ``value`` (publish), ``event_name`` (subscribe) or ``subscription_id``
  (unsubscribe).  ``ping`` (empty params) is our addition;
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
events to), ``InProcessClientConnection`` the client side.  Neither does any
I/O: ``transports.inprocess`` moves the objects over trio memory channels.
In-process connections are always trusted, as isolates were.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

import orjson

from ._broker import Broker, Subscription
from ._client import ClientEvent, EventReceived, RequestFailed, RequestSucceeded, ServerClosing
from ._dispatch import describe
from ._errors import ConnectionClosedError, ErrorCode, LocalProtocolError, RemoteProtocolError, RequestError
from ._messages import (
    PING,
    PUBLISH,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Closing,
    Event,
    JSONValue,
    PingResult,
    PublishResult,
    Result,
    SubscribeResult,
    UnsubscribeResult,
)
from ._wire import EncodedEvent

#: Default bound on messages queued for one in-process connection.
DEFAULT_MAX_OUTBOUND_MESSAGES: Final = 10_000

_EXPECT_PUBLISH: Final = "Expected client_id, event_name, and value."
_EXPECT_SUBSCRIBE: Final = "Expected client_id, and event_name."
_EXPECT_UNSUBSCRIBE: Final = "Expected client_id, and subscription_id."
_INVALID_RESPONSE: Final = "The server sent an invalid response."
_NO_RESULT: Final = "The server sent a success response, but did not include a result."
_NO_MESSAGE: Final = "The server sent a failure response, but did not provide an error message."
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
            answer = self._handle(message)
            if answer is not None:
                self._queue(answer)

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
        if message.get("id") != self.connection_id or type(params) is not dict or method not in _METHODS:
            # The original dropped a bad envelope silently and left the client
            # waiting forever; its unknown-method text names every field.
            return _failure(request_id, ErrorCode.METHOD_NOT_FOUND, unrecognized_method(method))
        try:
            result = _METHODS[method](self, params)
        except RequestError as exc:
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
        return self.broker.publish(self, client_id, event_name, value)

    def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        ok, client_id = _optional_id(params)
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


_METHODS: Final[dict[str, Callable[[InProcessConnection, dict[str, Any]], dict[str, Any]]]] = {
    PUBLISH: InProcessConnection._publish,
    SUBSCRIBE: InProcessConnection._subscribe,
    UNSUBSCRIBE: InProcessConnection._unsubscribe,
    PING: InProcessConnection._ping,
}


class InProcessClientConnection:
    """Client side of one in-process connection (sans-IO), shaped like ``ClientConnection``.

    Call ``receive_handshake`` with the server's first message, then use the
    request methods; each returns a key and the message to send.
    """

    def __init__(self, *, client_id: str | None = None) -> None:
        self._client_id = client_id or None
        self._connection_id: str | None = None
        self._ids: Iterator[int] = itertools.count(1)
        # key -> (method, argument): subscribe keeps the event name, unsubscribe the id.
        self._pending: dict[int, tuple[str, str | None]] = {}
        self._subscriptions: dict[str, str] = {}
        self._closed = False
        #: Events that named no live local subscription.
        self.unroutable_events = 0

    @property
    def client_id(self) -> str | None:
        """The id requests act as: the configured one, or the ad-hoc one adopted."""
        return self._client_id

    @property
    def connection_id(self) -> str | None:
        """The id the server gave this connection in its handshake."""
        return self._connection_id

    @property
    def pending(self) -> int:
        """Number of requests still awaiting an answer."""
        return len(self._pending)

    def receive_handshake(self, message: object) -> None:
        """Take the server's first message, ``{"status": True, "id": <connection id>}``."""
        handshake = message if type(message) is dict else {}
        if handshake.get("status") is not True or type(handshake.get("id")) is not str:
            raise RemoteProtocolError("The server did not start with a handshake.")
        self._connection_id = handshake["id"]

    def publish(self, event_name: str, value: JSONValue) -> tuple[int, dict[str, Any]]:
        """Start a publish; returns the request key and the message to send.

        Raises ``TypeError`` if ``value`` is not JSON, as ``ClientConnection`` does.
        """
        if not isinstance(value, _IMMUTABLE):
            orjson.dumps(value)
        return self._request(PUBLISH, {"event_name": event_name, "value": value}, None)

    def subscribe(self, event_name: str) -> tuple[int, dict[str, Any]]:
        """Start a subscribe; returns the request key and the message to send."""
        return self._request(SUBSCRIBE, {"event_name": event_name}, event_name)

    def unsubscribe(self, subscription_id: str) -> tuple[int, dict[str, Any]]:
        """Start an unsubscribe; returns the request key and the message to send."""
        if subscription_id not in self._subscriptions:
            raise LocalProtocolError("That subscription is not open on this connection.")
        return self._request(UNSUBSCRIBE, {"subscription_id": subscription_id}, subscription_id)

    def ping(self) -> tuple[int, dict[str, Any]]:
        """Start a ping; returns the request key and the message to send."""
        return self._request(PING, {}, None)

    def forget(self, key: int) -> None:
        """Stop waiting for ``key`` (it timed out); a late answer is then ignored."""
        self._pending.pop(key, None)

    def _request(
        self, method: str, params: dict[str, Any], argument: str | None
    ) -> tuple[int, dict[str, Any]]:
        if self._closed:
            raise ConnectionClosedError("The connection is closed.")
        if self._connection_id is None:
            raise LocalProtocolError("The handshake has not arrived yet.")
        key = next(self._ids)
        # The original always sent the key, with None before an id was known.
        params["client_id"] = self._client_id
        self._pending[key] = (method, argument)
        return key, {"id": self._connection_id, "request_id": str(key), "method": method, "params": params}

    def receive_data(self, messages: list[object]) -> list[ClientEvent]:
        """Process messages from the server; returns what they meant, in order."""
        events: list[ClientEvent] = []
        for message in messages:
            if type(message) is dict:
                self._handle_map(message, events)
            elif type(message) in (list, tuple):
                self._handle_event(message, events)  # type: ignore[arg-type]
        return events

    def receive_eof(self, reason: str = "The server closed the connection.") -> list[ClientEvent]:
        """The server is gone: every pending request fails with ``ConnectionClosedError``."""
        self._closed = True
        error = ConnectionClosedError(reason)
        events: list[ClientEvent] = [RequestFailed(key=key, error=error) for key in self._pending]
        self._pending.clear()
        return events

    def _handle_event(self, message: list[Any] | tuple[Any, ...], events: list[ClientEvent]) -> None:
        if len(message) != 3 or type(message[0]) is not str:
            self.unroutable_events += 1
            return
        event_name, value, subscription_id = message
        if self._subscriptions.get(subscription_id) != event_name:
            self.unroutable_events += 1
            return
        events.append(
            EventReceived(event=Event(event_name=event_name, value=value, subscription_id=subscription_id))
        )

    def _handle_map(self, message: dict[str, Any], events: list[ClientEvent]) -> None:
        request_id = message.get("request_id")
        if type(request_id) is not str:
            if message.get("closing") is True:
                code = message.get("error_code")
                text = message.get("error_message")
                closing = Closing(
                    code=code if type(code) is int else 0, message=text if type(text) is str else ""
                )
                events.append(ServerClosing(closing=closing))
            return
        key = int(request_id) if request_id.isdigit() else -1
        pending = self._pending.pop(key, None)
        if pending is None:
            return  # late (after a timeout) or not ours
        status = message.get("status")
        if type(status) is not bool:
            events.append(RequestFailed(key=key, error=RemoteProtocolError(_INVALID_RESPONSE)))
            return
        if not status:
            text = message.get("error_message")
            code = message.get("error_code")
            error = RequestError(
                text if type(text) is str else _NO_MESSAGE,
                code=code if type(code) is int else ErrorCode.INTERNAL_ERROR,
            )
            events.append(RequestFailed(key=key, error=error))
            return
        result = message.get("result")
        outcome = self._build_result(pending, result) if type(result) is dict else None
        if outcome is None:
            events.append(RequestFailed(key=key, error=RemoteProtocolError(_NO_RESULT)))
        else:
            events.append(RequestSucceeded(key=key, result=outcome))

    def _build_result(self, pending: tuple[str, str | None], result: dict[str, Any]) -> Result | None:
        method, argument = pending
        client_id = result.get("client_id")
        if type(client_id) is str and client_id and self._client_id is None:
            # The server minted an ad-hoc identity for us: act as it from now on.
            self._client_id = client_id
        shown_id = client_id if type(client_id) is str else (self._client_id or "")
        if method == PUBLISH:
            listeners = result.get("listeners")
            return PublishResult(listeners=listeners, client_id=shown_id) if type(listeners) is int else None
        if method == SUBSCRIBE:
            subscription_id = result.get("subscription_id")
            if type(subscription_id) is not str or argument is None:
                return None
            self._subscriptions[subscription_id] = argument
            return SubscribeResult(subscription_id=subscription_id, client_id=shown_id)
        if method == UNSUBSCRIBE:
            if argument is not None:
                self._subscriptions.pop(argument, None)
            return UnsubscribeResult()
        return PingResult()
