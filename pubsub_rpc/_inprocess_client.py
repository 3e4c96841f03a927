"""Client side of the in-process flavour (sans-IO): build isolate envelopes, read answers.

The message shapes are described in ``_inprocess``; this is the mirror of
``ClientConnection`` for a connection that carries Python objects.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ._client import ClientEvent, EventReceived, RequestFailed, RequestSucceeded, ServerClosing
from ._errors import ConnectionClosedError, LocalProtocolError, PubSubError, RemoteProtocolError
from ._messages import (
    PING,
    PUBLISH,
    STATS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Closing,
    Event,
    JSONValue,
)
from ._patterns import Pattern
from ._requests import RequestBook, publish_params

_IMMUTABLE: Final = (str, int, float, bool, type(None))


class InProcessClientConnection:
    """Client side of one in-process connection (sans-IO), shaped like ``ClientConnection``.

    Call ``receive_handshake`` with the server's first message, then use the
    request methods; each returns a key and the message to send.
    """

    def __init__(self, *, client_id: str | None = None) -> None:
        self._book = RequestBook(client_id)
        self._connection_id: str | None = None

    @property
    def client_id(self) -> str | None:
        """The id requests act as: the configured one, or the ad-hoc one adopted."""
        return self._book.client_id

    @property
    def unroutable_events(self) -> int:
        """Events that named no live local subscription."""
        return self._book.unroutable_events

    @property
    def connection_id(self) -> str | None:
        """The id the server gave this connection in its handshake."""
        return self._connection_id

    @property
    def pending(self) -> int:
        """Number of requests still awaiting an answer."""
        return self._book.pending

    def receive_handshake(self, message: object) -> None:
        """Take the server's first message, ``{"status": True, "id": <connection id>}``."""
        handshake = message if type(message) is dict else {}
        if handshake.get("status") is not True or type(handshake.get("id")) is not str:
            raise RemoteProtocolError("The server did not start with a handshake.")
        self._connection_id = handshake["id"]

    def publish(
        self, event_name: str, value: JSONValue, *, exclude_self: bool = True, report: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """Start a publish; returns the request key and the message to send.

        Raises ``TypeError`` if ``value`` is not JSON, as ``ClientConnection``
        does; ``exclude_self`` and ``report`` as there.
        """
        if not isinstance(value, _IMMUTABLE):
            orjson.dumps(value)
        return self._request(PUBLISH, publish_params(event_name, value, exclude_self, report), None)

    def subscribe(self, event_name: str) -> tuple[int, dict[str, Any]]:
        """Start a subscribe to exactly ``event_name``; returns the request key and the message to send."""
        return self._request(SUBSCRIBE, {"event_name": event_name}, event_name)

    def psubscribe(self, pattern: str) -> tuple[int, dict[str, Any]]:
        """Start a pattern subscribe (``PatternError`` at once if invalid), as ``ClientConnection``."""
        parsed = Pattern.parse(pattern)
        return self._request(SUBSCRIBE, {"pattern": pattern}, pattern, parsed)

    def unsubscribe(self, subscription_id: str) -> tuple[int, dict[str, Any]]:
        """Start an unsubscribe; returns the request key and the message to send."""
        if subscription_id not in self._book.subscriptions:
            raise LocalProtocolError("That subscription is not open on this connection.")
        return self._request(UNSUBSCRIBE, {"subscription_id": subscription_id}, subscription_id)

    def ping(self) -> tuple[int, dict[str, Any]]:
        """Start a ping; returns the request key and the message to send."""
        return self._request(PING, {}, None)

    def stats(self) -> tuple[int, dict[str, Any]]:
        """Start a ``stats`` request (the server's live counters); returns the key and the message."""
        return self._request(STATS, {}, None)

    def forget(self, key: int) -> None:
        """Stop waiting for ``key`` (it timed out); a late answer is then ignored."""
        self._book.forget(key)

    def _request(
        self, method: str, params: dict[str, Any], argument: str | None, pattern: Pattern | None = None
    ) -> tuple[int, dict[str, Any]]:
        if self._connection_id is None and not self._book.closed:
            raise LocalProtocolError("The handshake has not arrived yet.")
        key = self._book.start(method, argument, pattern)
        # The original always sent the key, with None before an id was known.
        params["client_id"] = self._book.client_id
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
        error = ConnectionClosedError(reason)
        return [RequestFailed(key=key, error=error) for key in self._book.close()]

    def _handle_event(self, message: list[Any] | tuple[Any, ...], events: list[ClientEvent]) -> None:
        if len(message) != 3 or type(message[0]) is not str:
            self._book.unroutable_events += 1
            return
        event_name, value, subscription_id = message
        # Our in-process server always names the subscription; no round-robin here.
        subscription_id = (
            self._book.route(event_name, subscription_id) if subscription_id is not None else None
        )
        if subscription_id is None:
            if message[2] is None:
                self._book.unroutable_events += 1
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
        key = int(request_id) if request_id.isascii() and request_id.isdigit() else -1
        pending = self._book.take(key)
        if pending is None:
            return  # late (after a timeout) or not ours
        outcome = self._book.status_outcome(pending, message)
        if isinstance(outcome, PubSubError):
            events.append(RequestFailed(key=key, error=outcome))
        else:
            events.append(RequestSucceeded(key=key, result=outcome))
