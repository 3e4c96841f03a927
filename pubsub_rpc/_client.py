"""The client's side of one connection: requests out, results and events in.

``ClientConnection`` allocates request ids, keeps the table of requests that
await an answer, turns answers into results or ``RequestError``, routes
events to local subscriptions by subscription id, and adopts the ad-hoc
client id a trusted server hands out.  It never touches a socket: each
request method returns the bytes to send, ``receive_data`` returns what they
meant.

Messages are built with ``jsonrpcclient`` (``request``/``notification``) and
responses parsed with its ``parse``, after we have classified each incoming
object ourselves: ``parse`` raises on server-to-client notifications
(shared/reference/dependencies.md, 3.2).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from jsonrpcclient import Error as RpcError
from jsonrpcclient import Ok, notification, parse, request

from ._errors import (
    ConnectionClosedError,
    ErrorCode,
    LocalProtocolError,
    PubSubError,
    RemoteProtocolError,
    RequestError,
    error_code_from_int,
)
from ._frames import DEFAULT_MAX_FRAME_SIZE, BadFrame, Framing, encode
from ._framing import FrameDecoder
from ._messages import (
    CLOSING,
    EVENT,
    NO_ID,
    PING,
    PUBLISH,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Closing,
    Dialect,
    Event,
    JSONValue,
    PingResult,
    PublishResult,
    Result,
    SubscribeResult,
    UnsubscribeResult,
)

_INVALID_RESPONSE: Final = "The server sent an invalid response."
_NO_RESULT: Final = "The server sent a success response, but did not include a result."
_NO_MESSAGE: Final = "The server sent a failure response, but did not provide an error message."


#: The original server sends no error codes; its texts say which error it was.
_ORIGINAL_TEXTS: Final = {
    "You are not allowed to publish events.": ErrorCode.PUBLISH_FORBIDDEN,
    "You are not allowed to subscribe to events.": ErrorCode.SUBSCRIBE_FORBIDDEN,
    "The specified subscription does not exist.": ErrorCode.NO_SUCH_SUBSCRIPTION,
    "That is not your subscription to cancel.": ErrorCode.NOT_YOUR_SUBSCRIPTION,
}


def _code_of_original_text(text: str) -> ErrorCode:
    if text.startswith('Unrecognized client ID "'):
        return ErrorCode.UNKNOWN_CLIENT
    return _ORIGINAL_TEXTS.get(text, ErrorCode.INTERNAL_ERROR)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSucceeded:
    """The request ``key`` got a success answer."""

    key: int
    result: Result


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFailed:
    """The request ``key`` failed: the server refused it, or the connection ended."""

    key: int
    error: PubSubError


@dataclass(frozen=True, slots=True, kw_only=True)
class EventReceived:
    """An event arrived for the local subscription ``event.subscription_id``."""

    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerClosing:
    """The server said it is closing the connection, and why."""

    closing: Closing


@dataclass(frozen=True, slots=True, kw_only=True)
class PingRequested:
    """The server sent a ``ping`` request (a keep-alive probe); send ``reply`` to answer it."""

    #: The framed JSON-RPC response, ready to send.
    reply: bytes


#: Everything ``receive_data`` can report.
ClientEvent = RequestSucceeded | RequestFailed | EventReceived | ServerClosing | PingRequested


@dataclass(slots=True)
class _Pending:
    method: str
    # For subscribe: the event name; for unsubscribe: the subscription id.
    argument: str | None


class ClientConnection:
    """Protocol state of one client connection (sans-IO)."""

    def __init__(
        self,
        *,
        client_id: str | None = None,
        dialect: Dialect = Dialect.JSONRPC,
        framing: Framing = Framing.NEWLINE,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._client_id = client_id or None
        self.dialect = dialect
        self.framing = framing
        self._decoder = FrameDecoder(max_frame_size=max_frame_size)
        self._ids: Iterator[int] = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # Local subscriptions: id -> event name, and per name the ids in order.
        self._subscriptions: dict[str, str] = {}
        self._by_name: dict[str, list[str]] = {}
        self._round_robin: dict[str, int] = {}
        self._closed = False
        #: Events that named no live local subscription (late, or for a stranger).
        self.unroutable_events = 0
        #: Frames from the server that were not JSON (or too large), skipped.
        self.bad_frames = 0

    @property
    def client_id(self) -> str | None:
        """The id requests act as: the configured one, or the ad-hoc one adopted."""
        return self._client_id

    @property
    def pending(self) -> int:
        """Number of requests still awaiting an answer."""
        return len(self._pending)

    @property
    def subscriptions(self) -> dict[str, str]:
        """Live local subscriptions: subscription id -> event name (a copy)."""
        return dict(self._subscriptions)

    # -- requests ----------------------------------------------------------

    def publish(self, event_name: str, value: JSONValue) -> tuple[int, bytes]:
        """Start a publish; returns the request key and the bytes to send."""
        return self._request(PUBLISH, {"event_name": event_name, "value": value}, None)

    def subscribe(self, event_name: str) -> tuple[int, bytes]:
        """Start a subscribe; returns the request key and the bytes to send."""
        return self._request(SUBSCRIBE, {"event_name": event_name}, event_name)

    def unsubscribe(self, subscription_id: str) -> tuple[int, bytes]:
        """Start an unsubscribe; returns the request key and the bytes to send."""
        if subscription_id not in self._subscriptions:
            raise LocalProtocolError("That subscription is not open on this connection.")
        return self._request(UNSUBSCRIBE, {"subscription_id": subscription_id}, subscription_id)

    def ping(self) -> tuple[int, bytes]:
        """Start a ping; returns the request key and the bytes to send."""
        return self._request(PING, {}, None)

    def publish_notification(self, event_name: str, value: JSONValue) -> bytes:
        """A fire-and-forget publish: a plain notification that gets no answer."""
        params: dict[str, Any] = {"event_name": event_name, "value": value}
        if self._client_id is not None:
            params["client_id"] = self._client_id
        return encode(notification(PUBLISH, params), self.framing)

    def _request(self, method: str, params: dict[str, Any], argument: str | None) -> tuple[int, bytes]:
        if self._closed:
            raise ConnectionClosedError("The connection is closed.")
        key = next(self._ids)
        if self._client_id is not None:
            params["client_id"] = self._client_id
        if self.dialect is Dialect.JSONRPC:
            message = request(method, params, id=key)
        else:
            params["request_id"] = str(key)
            message = notification(method, params)
        self._pending[key] = _Pending(method, argument)
        return key, encode(message, self.framing)

    def forget(self, key: int) -> None:
        """Stop waiting for ``key`` (it timed out); a late answer is then ignored."""
        self._pending.pop(key, None)

    # -- incoming ----------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Process bytes from the server; returns what they meant, in order."""
        events: list[ClientEvent] = []
        for frame in self._decoder.feed(data):
            self._handle_frame(frame, events)
        if self._decoder.error is not None:
            # Answers decoded before the damage still count: return them now;
            # ``error`` tells the transport to end the connection.
            self._closed = True
        return events

    @property
    def error(self) -> str | None:
        """Why the server's byte stream broke beyond repair, if it did; then close the connection."""
        return self._decoder.error

    def receive_eof(self, reason: str = "The server closed the connection.") -> list[ClientEvent]:
        """The server is gone: every pending request fails with ``ConnectionClosedError``."""
        events: list[ClientEvent] = []
        try:
            for frame in self._decoder.feed_eof():
                self._handle_frame(frame, events)
        except RemoteProtocolError:
            pass  # a torn last frame changes nothing: the requests fail below anyway
        self._closed = True
        error = ConnectionClosedError(reason)
        events.extend(RequestFailed(key=key, error=error) for key in self._pending)
        self._pending.clear()
        return events

    def _handle_frame(self, frame: object, events: list[ClientEvent]) -> None:
        if type(frame) is dict:
            self._handle_object(frame, events)
        elif type(frame) is list:
            for member in frame:
                if type(member) is dict:
                    self._handle_object(member, events)
        elif isinstance(frame, BadFrame):
            # Like the server, answer damage in one frame by skipping that frame
            # only: raising here would lose what the same read also carried.
            self.bad_frames += 1
        # Scalars from a server mean nothing; ignoring them keeps a buggy peer usable.

    def _handle_object(self, message: dict[str, Any], events: list[ClientEvent]) -> None:
        method = message.get("method")
        if method is not None:
            if method == PING:
                # Either side may probe the other: a ping with a usable id is
                # answered with an empty result, as a server answers ours.
                request_id = message.get("id", NO_ID)
                if request_id is None or type(request_id) in (str, int):
                    reply = {"jsonrpc": "2.0", "result": {}, "id": request_id}
                    events.append(PingRequested(reply=encode(reply, self.framing)))
                return
            params = message.get("params")
            if type(params) is not dict:
                return
            if method == EVENT:
                self._handle_event(params, events)
            elif method == CLOSING:
                code, text = params.get("code"), params.get("message")
                events.append(
                    ServerClosing(
                        closing=Closing(
                            code=code if type(code) is int else ErrorCode.SERVER_CLOSING,
                            message=text if type(text) is str else "",
                        )
                    )
                )
            elif type(method) is str and method.isascii() and method.isdigit():
                # Our pub_sub request ids are decimal counters (isascii: "²" is a digit too).
                self._handle_pub_sub_answer(int(method), params, events)
            return
        if "result" in message or "error" in message:
            self._handle_response(message, events)

    def _handle_event(self, params: dict[str, Any], events: list[ClientEvent]) -> None:
        event_name = params.get("event_name")
        if type(event_name) is not str or "value" not in params:
            return
        subscription_id = params.get("subscription_id")
        if subscription_id is None:
            # An original server does not say which subscription an event is
            # for; it sends one copy per subscription, in subscription order, so
            # handing copies round-robin gives each local subscription one.
            ids = self._by_name.get(event_name)
            if not ids:
                self.unroutable_events += 1
                return
            turn = self._round_robin.get(event_name, 0)
            self._round_robin[event_name] = turn + 1
            subscription_id = ids[turn % len(ids)]
        elif type(subscription_id) is not str or self._subscriptions.get(subscription_id) != event_name:
            self.unroutable_events += 1
            return
        events.append(
            EventReceived(
                event=Event(event_name=event_name, value=params["value"], subscription_id=subscription_id)
            )
        )

    def _handle_response(self, message: dict[str, Any], events: list[ClientEvent]) -> None:
        key = message.get("id")
        if type(key) is not int or key not in self._pending:
            return  # an answer to nothing we wait for (late after a timeout)
        pending = self._pending.pop(key)
        try:
            response = parse(message)
        except (KeyError, TypeError):
            events.append(RequestFailed(key=key, error=RemoteProtocolError(_INVALID_RESPONSE)))
            return
        if isinstance(response, Ok):
            result = response.result
            self._finish(key, pending, result if type(result) is dict else None, {}, events)
        elif isinstance(response, RpcError):
            code = response.code if type(response.code) is int else ErrorCode.INTERNAL_ERROR
            text = response.message if type(response.message) is str else _NO_MESSAGE
            events.append(RequestFailed(key=key, error=RequestError(text, code=error_code_from_int(code))))
        else:  # parse() of a dict gives Ok or Error; anything else is a library change
            events.append(RequestFailed(key=key, error=RemoteProtocolError(_INVALID_RESPONSE)))

    def _handle_pub_sub_answer(self, key: int, params: dict[str, Any], events: list[ClientEvent]) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        status = params.get("status")
        if type(status) is not bool:
            events.append(RequestFailed(key=key, error=RemoteProtocolError(_INVALID_RESPONSE)))
        elif not status:
            text = params.get("error_message")
            code = params.get("error_code")
            if type(code) is not int and type(text) is str:
                code = _code_of_original_text(text)
            events.append(
                RequestFailed(
                    key=key,
                    error=RequestError(
                        text if type(text) is str else _NO_MESSAGE,
                        code=error_code_from_int(code) if type(code) is int else ErrorCode.INTERNAL_ERROR,
                    ),
                )
            )
        else:
            result = params.get("result")
            self._finish(key, pending, result if type(result) is dict else None, params, events)

    def _finish(
        self,
        key: int,
        pending: _Pending,
        result: dict[str, Any] | None,
        flat: dict[str, Any],
        events: list[ClientEvent],
    ) -> None:
        # An original server answers subscribe with flat fields and no result.
        merged = {**flat, **(result or {})}
        outcome = self._build_result(pending, merged, result is not None)
        if isinstance(outcome, PubSubError):
            events.append(RequestFailed(key=key, error=outcome))
        else:
            events.append(RequestSucceeded(key=key, result=outcome))

    def _build_result(
        self, pending: _Pending, fields: dict[str, Any], had_result: bool
    ) -> Result | PubSubError:
        method = pending.method
        client_id = fields.get("client_id")
        if type(client_id) is str and client_id and self._client_id is None:
            # A trusted server minted an identity for us: act as it from now on.
            self._client_id = client_id
        shown_id = client_id if type(client_id) is str else (self._client_id or "")
        if method == PUBLISH:
            listeners = fields.get("listeners")
            if type(listeners) is not int:
                return RemoteProtocolError(_NO_RESULT)
            return PublishResult(listeners=listeners, client_id=shown_id)
        if method == SUBSCRIBE:
            subscription_id = fields.get("subscription_id")
            if type(subscription_id) is not str or pending.argument is None:
                return RemoteProtocolError(_NO_RESULT)
            self._subscriptions[subscription_id] = pending.argument
            self._by_name.setdefault(pending.argument, []).append(subscription_id)
            return SubscribeResult(subscription_id=subscription_id, client_id=shown_id)
        if method == UNSUBSCRIBE:
            assert pending.argument is not None
            self._drop_subscription(pending.argument)
            return UnsubscribeResult()
        return PingResult()

    def _drop_subscription(self, subscription_id: str) -> None:
        event_name = self._subscriptions.pop(subscription_id, None)
        if event_name is not None:
            ids = self._by_name[event_name]
            ids.remove(subscription_id)
            if not ids:
                del self._by_name[event_name]
                self._round_robin.pop(event_name, None)
