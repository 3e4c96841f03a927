"""The bookkeeping every client keeps, whatever carries its messages.

``RequestBook`` allocates request keys, remembers what each pending request
was, turns answers into results (adopting an ad-hoc client id a trusted
server hands out), and keeps the local subscriptions events are routed to.
Both client state machines use it: ``ClientConnection`` (JSON-RPC over
bytes) and ``InProcessClientConnection`` (Python objects), so an answer means
the same thing on every transport.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from ._errors import (
    ConnectionClosedError,
    ErrorCode,
    PubSubError,
    RemoteProtocolError,
    RequestError,
    error_code_from_int,
)
from ._messages import (
    PUBLISH,
    STATS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    PingResult,
    PublishResult,
    Result,
    StatsResult,
    SubscribeResult,
    UnsubscribeResult,
)
from ._patterns import Pattern

#: The original client's texts for answers it cannot use.
INVALID_RESPONSE: Final = "The server sent an invalid response."
NO_RESULT: Final = "The server sent a success response, but did not include a result."
NO_MESSAGE: Final = "The server sent a failure response, but did not provide an error message."

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


def failure(text: object, code: object) -> RequestError:
    """A server's refusal as ``RequestError``, whatever it left out."""
    if type(code) is not int and type(text) is str:
        code = _code_of_original_text(text)
    return RequestError(
        text if type(text) is str else NO_MESSAGE,
        code=error_code_from_int(code) if type(code) is int else ErrorCode.INTERNAL_ERROR,
    )


def publish_params(event_name: str, value: Any, exclude_self: bool, report: bool) -> dict[str, Any]:
    """A publish's params; the options only when they differ from the defaults."""
    params: dict[str, Any] = {"event_name": event_name, "value": value}
    if not exclude_self:
        params["exclude_self"] = False
    if report:
        params["report"] = True
    return params


@dataclass(slots=True)
class Pending:
    """What a request awaiting its answer was."""

    method: str
    #: For subscribe: the event name or pattern; for unsubscribe: the subscription id.
    argument: str | None
    #: For a pattern subscribe: the parsed pattern, to route its events by.
    pattern: Pattern | None = None


class RequestBook:
    """Pending requests, the client's identity and its local subscriptions."""

    def __init__(self, client_id: str | None) -> None:
        self.client_id = client_id or None
        self._ids: Iterator[int] = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        # Local subscriptions: id -> event name (or pattern text), and per
        # name the ids in order; pattern subscriptions also by id -> pattern.
        self.subscriptions: dict[str, str] = {}
        self.patterns: dict[str, Pattern] = {}
        self._by_name: dict[str, list[str]] = {}
        self._round_robin: dict[str, int] = {}
        self.closed = False
        #: Events that named no live local subscription (late, or for a stranger).
        self.unroutable_events = 0

    @property
    def pending(self) -> int:
        """Number of requests still awaiting an answer."""
        return len(self._pending)

    def start(self, method: str, argument: str | None, pattern: Pattern | None = None) -> int:
        """Record a new request and return its key."""
        if self.closed:
            raise ConnectionClosedError("The connection is closed.")
        key = next(self._ids)
        self._pending[key] = Pending(method, argument, pattern)
        return key

    def take(self, key: object) -> Pending | None:
        """The pending request ``key`` answers, removed from the table; None if unknown."""
        return self._pending.pop(key, None) if type(key) is int else None

    def forget(self, key: int) -> None:
        """Stop waiting for ``key`` (it timed out); a late answer is then ignored."""
        self._pending.pop(key, None)

    def close(self) -> list[int]:
        """The connection is over: no new requests; returns the keys that were still pending."""
        self.closed = True
        keys = list(self._pending)
        self._pending.clear()
        return keys

    def status_outcome(self, pending: Pending, answer: dict[str, Any]) -> Result | PubSubError:
        """Read an answer of the original's shape: ``status``, then an error or a result.

        Used for pub_sub answer notifications (whose params may also carry the
        original's flat subscribe fields) and for in-process answers.
        """
        status = answer.get("status")
        if type(status) is not bool:
            return RemoteProtocolError(INVALID_RESPONSE)
        if not status:
            return failure(answer.get("error_message"), answer.get("error_code"))
        result = answer.get("result")
        return self.outcome(pending, result if type(result) is dict else None, answer)

    def outcome(
        self, pending: Pending, result: dict[str, Any] | None, flat: dict[str, Any]
    ) -> Result | PubSubError:
        """A success answer as a ``Result`` (or the error it really is)."""
        if pending.method == STATS:
            # The counters are the whole result; flat members are the envelope's.
            return StatsResult(counters=result) if result is not None else RemoteProtocolError(NO_RESULT)
        # An original server answers subscribe with flat fields and no result.
        fields = {**flat, **(result or {})}
        client_id = fields.get("client_id")
        if type(client_id) is str and client_id and self.client_id is None:
            # A trusted server minted an identity for us: act as it from now on.
            self.client_id = client_id
        shown_id = client_id if type(client_id) is str else (self.client_id or "")
        method = pending.method
        if method == PUBLISH:
            listeners = fields.get("listeners")
            if type(listeners) is not int:
                return RemoteProtocolError(NO_RESULT)
            delivered, dropped = fields.get("delivered"), fields.get("dropped")
            return PublishResult(
                listeners=listeners,
                client_id=shown_id,
                delivered=delivered if type(delivered) is int else None,
                dropped=dropped if type(dropped) is int else None,
                # Only an explicit false: a single server never sends the member.
                forwarded=fields.get("forwarded") is not False,
            )
        if method == SUBSCRIBE:
            subscription_id = fields.get("subscription_id")
            if type(subscription_id) is not str or pending.argument is None:
                return RemoteProtocolError(NO_RESULT)
            self.subscriptions[subscription_id] = pending.argument
            if pending.pattern is not None:
                self.patterns[subscription_id] = pending.pattern
            else:
                self._by_name.setdefault(pending.argument, []).append(subscription_id)
            return SubscribeResult(subscription_id=subscription_id, client_id=shown_id)
        if method == UNSUBSCRIBE:
            if pending.argument is not None:
                self._drop_subscription(pending.argument)
            return UnsubscribeResult()
        return PingResult()

    def route(self, event_name: str, subscription_id: object) -> str | None:
        """The local subscription an event belongs to, or None (counted as unroutable)."""
        if subscription_id is None:
            # An original server does not say which subscription an event is
            # for; it sends one copy per subscription, in subscription order, so
            # handing copies round-robin gives each local subscription one.
            ids = self._by_name.get(event_name)
            if not ids:
                self.unroutable_events += 1
                return None
            turn = self._round_robin.get(event_name, 0)
            self._round_robin[event_name] = turn + 1
            return ids[turn % len(ids)]
        if self.patterns and type(subscription_id) is str:
            pattern = self.patterns.get(subscription_id)
            if pattern is not None:
                if pattern.matches(event_name):
                    return subscription_id
                self.unroutable_events += 1
                return None
        if type(subscription_id) is not str or self.subscriptions.get(subscription_id) != event_name:
            self.unroutable_events += 1
            return None
        return subscription_id

    def _drop_subscription(self, subscription_id: str) -> None:
        event_name = self.subscriptions.pop(subscription_id, None)
        if self.patterns.pop(subscription_id, None) is not None:
            return
        if event_name is not None:
            ids = self._by_name[event_name]
            ids.remove(subscription_id)
            if not ids:
                del self._by_name[event_name]
                self._round_robin.pop(event_name, None)
