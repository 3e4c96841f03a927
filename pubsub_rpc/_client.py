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

from dataclasses import dataclass
from typing import Any

from jsonrpcclient import Error as RpcError
from jsonrpcclient import Ok, notification, parse, request

from ._errors import (
    ConnectionClosedError,
    ErrorCode,
    LocalProtocolError,
    PubSubError,
    RemoteProtocolError,
)
from ._frames import DEFAULT_MAX_FRAME_SIZE, BadFrame, Framing, encode
from ._framing import FrameDecoder
from ._messages import (
    CLOSING,
    EVENT,
    NO_ID,
    PING,
    PUBLISH,
    STATS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Closing,
    Dialect,
    Event,
    JSONValue,
    Result,
)
from ._patterns import Pattern
from ._requests import INVALID_RESPONSE, RequestBook, failure, publish_params


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
        self._book = RequestBook(client_id)
        self.dialect = dialect
        self.framing = framing
        self._decoder = FrameDecoder(max_frame_size=max_frame_size)
        #: Frames from the server that were not JSON (or too large), skipped.
        self.bad_frames = 0

    @property
    def client_id(self) -> str | None:
        """The id requests act as: the configured one, or the ad-hoc one adopted."""
        return self._book.client_id

    @property
    def pending(self) -> int:
        """Number of requests still awaiting an answer."""
        return self._book.pending

    @property
    def subscriptions(self) -> dict[str, str]:
        """Live local subscriptions: subscription id -> event name or pattern (a copy)."""
        return dict(self._book.subscriptions)

    @property
    def unroutable_events(self) -> int:
        """Events that named no live local subscription (late, or for a stranger)."""
        return self._book.unroutable_events

    # -- requests ----------------------------------------------------------

    def publish(
        self, event_name: str, value: JSONValue, *, exclude_self: bool = True, report: bool = False
    ) -> tuple[int, bytes]:
        """Start a publish; returns the request key and the bytes to send.

        ``exclude_self=False`` lets this client's own subscriptions receive
        the event; ``report=True`` asks for ``delivered`` and ``dropped`` in
        the ``PublishResult``.  Left at their defaults, they are not sent.
        """
        return self._request(PUBLISH, publish_params(event_name, value, exclude_self, report), None)

    def subscribe(self, event_name: str) -> tuple[int, bytes]:
        """Start a subscribe to exactly ``event_name``; returns the request key and the bytes to send."""
        return self._request(SUBSCRIBE, {"event_name": event_name}, event_name)

    def psubscribe(self, pattern: str) -> tuple[int, bytes]:
        """Start a pattern subscribe; returns the request key and the bytes to send.

        Events for it carry the real event name.  Raises ``PatternError`` (a
        ``ValueError``) at once if ``pattern`` is not valid.
        """
        parsed = Pattern.parse(pattern)
        return self._request(SUBSCRIBE, {"pattern": pattern}, pattern, parsed)

    def unsubscribe(self, subscription_id: str) -> tuple[int, bytes]:
        """Start an unsubscribe; returns the request key and the bytes to send."""
        if subscription_id not in self._book.subscriptions:
            raise LocalProtocolError("That subscription is not open on this connection.")
        return self._request(UNSUBSCRIBE, {"subscription_id": subscription_id}, subscription_id)

    def ping(self) -> tuple[int, bytes]:
        """Start a ping; returns the request key and the bytes to send."""
        return self._request(PING, {}, None)

    def stats(self) -> tuple[int, bytes]:
        """Start a ``stats`` request (the server's live counters); returns the key and the bytes."""
        return self._request(STATS, {}, None)

    def publish_notification(self, event_name: str, value: JSONValue) -> bytes:
        """A fire-and-forget publish: a plain notification that gets no answer."""
        params: dict[str, Any] = {"event_name": event_name, "value": value}
        if self._book.client_id is not None:
            params["client_id"] = self._book.client_id
        return encode(notification(PUBLISH, params), self.framing)

    def _request(
        self, method: str, params: dict[str, Any], argument: str | None, pattern: Pattern | None = None
    ) -> tuple[int, bytes]:
        key = self._book.start(method, argument, pattern)
        if self._book.client_id is not None:
            params["client_id"] = self._book.client_id
        if self.dialect is Dialect.JSONRPC:
            message = request(method, params, id=key)
        else:
            params["request_id"] = str(key)
            message = notification(method, params)
        return key, encode(message, self.framing)

    def forget(self, key: int) -> None:
        """Stop waiting for ``key`` (it timed out); a late answer is then ignored."""
        self._book.forget(key)

    # -- incoming ----------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Process bytes from the server; returns what they meant, in order."""
        events: list[ClientEvent] = []
        for frame in self._decoder.feed(data):
            self._handle_frame(frame, events)
        if self._decoder.error is not None:
            # Answers decoded before the damage still count: return them now;
            # ``error`` tells the transport to end the connection.
            self._book.closed = True
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
        error = ConnectionClosedError(reason)
        events.extend(RequestFailed(key=key, error=error) for key in self._book.close())
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
        subscription_id = self._book.route(event_name, params.get("subscription_id"))
        if subscription_id is None:
            return
        events.append(
            EventReceived(
                event=Event(event_name=event_name, value=params["value"], subscription_id=subscription_id)
            )
        )

    def _handle_response(self, message: dict[str, Any], events: list[ClientEvent]) -> None:
        key = message.get("id")
        pending = self._book.take(key)
        if pending is None:
            return  # an answer to nothing we wait for (late after a timeout)
        assert type(key) is int
        try:
            response = parse(message)
        except (KeyError, TypeError):
            self._report(key, RemoteProtocolError(INVALID_RESPONSE), events)
            return
        if isinstance(response, Ok):
            result = response.result
            self._report(
                key, self._book.outcome(pending, result if type(result) is dict else None, {}), events
            )
        elif isinstance(response, RpcError):
            self._report(key, failure(response.message, response.code), events)
        else:  # parse() of a dict gives Ok or Error; anything else is a library change
            self._report(key, RemoteProtocolError(INVALID_RESPONSE), events)

    def _handle_pub_sub_answer(self, key: int, params: dict[str, Any], events: list[ClientEvent]) -> None:
        pending = self._book.take(key)
        if pending is not None:
            self._report(key, self._book.status_outcome(pending, params), events)

    @staticmethod
    def _report(key: int, outcome: Result | PubSubError, events: list[ClientEvent]) -> None:
        if isinstance(outcome, PubSubError):
            events.append(RequestFailed(key=key, error=outcome))
        else:
            events.append(RequestSucceeded(key=key, result=outcome))
