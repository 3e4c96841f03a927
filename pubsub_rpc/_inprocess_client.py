"""Client side of the in-process flavour (sans-IO): build isolate envelopes, read answers.

The message shapes are described in ``_inprocess``; this is the mirror of
``ClientConnection`` for a connection that carries Python objects.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Final

import orjson

from ._client import ClientEvent, EventReceived, RequestFailed, RequestSucceeded, ServerClosing
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

_INVALID_RESPONSE: Final = "The server sent an invalid response."
_NO_RESULT: Final = "The server sent a success response, but did not include a result."
_NO_MESSAGE: Final = "The server sent a failure response, but did not provide an error message."
_IMMUTABLE: Final = (str, int, float, bool, type(None))


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

    @property
    def error(self) -> str | None:
        """Always ``None``: Python objects cannot arrive torn, unlike a byte stream."""
        return None

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
