"""The broker: who may do what, who listens to what, and fan-out.

This is the server's state machine, independent of any wire format.  It holds
the client registry, the per-connection identities of trusted connections and
the subscription index, and it performs the three operations.  Connections are
anything that implements ``Subscriber`` (a byte-stream connection, an
in-process one); the broker only asks them to take an encoded event.

Every rejection text is the original ``pub_sub``'s, character for character.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, Final, Protocol

import orjson

from ._errors import ErrorCode, LocalProtocolError, RequestError
from ._messages import ClientInfo, JSONValue
from ._wire import EncodedEvent, subscription_tail

#: Prefix of the identities minted for trusted connections that send no id.
ADHOC_PREFIX: Final = "pub_sub::adhoc_client"

_NOT_ALLOWED_PUBLISH: Final = "You are not allowed to publish events."
_NOT_ALLOWED_SUBSCRIBE: Final = "You are not allowed to subscribe to events."
_NO_SUCH_SUBSCRIPTION: Final = "The specified subscription does not exist."
_NOT_YOURS: Final = "That is not your subscription to cancel."


class Subscriber(Protocol):
    """What the broker needs from a connection."""

    #: Whether requests without a client id get this connection's ad-hoc identity.
    trusted: bool

    def push_event(self, event: EncodedEvent, subscription: Subscription) -> bool:
        """Queue one event for this connection; False if it takes no more events.

        Must not block or raise.  A connection that is closing (a slow
        consumer cut off during this very publish) answers False, so the
        publisher's ``listeners`` counts only deliveries actually queued.
        """


class Subscription:
    """One stored subscription (internal, mutable, owned by the broker)."""

    __slots__ = ("client_id", "connection", "event_name", "id", "tail", "tail_newline")

    def __init__(self, subscription_id: str, event_name: str, client_id: str, connection: Subscriber) -> None:
        self.id = subscription_id
        self.event_name = event_name
        self.client_id = client_id
        self.connection = connection
        #: End of the event body for this subscription, and the same plus the
        #: newline delimiter, so newline-framed delivery is two list appends.
        self.tail = subscription_tail(subscription_id)
        self.tail_newline = self.tail + b"\n"

    def __repr__(self) -> str:
        return f"<Subscription {self.id} to {self.event_name!r}>"


def _unrecognized(client_id: str | None) -> RequestError:
    shown = "<missing>" if client_id is None else client_id
    return RequestError(f'Unrecognized client ID "{shown}".', code=ErrorCode.UNKNOWN_CLIENT)


class Broker:
    """Client registry, subscription index and fan-out for one server."""

    def __init__(self) -> None:
        self._clients: dict[str, ClientInfo] = {}
        # Ad-hoc identities belong to exactly one trusted connection and die with it.
        self._adhoc_by_connection: dict[Subscriber, ClientInfo] = {}
        self._adhoc_owner: dict[str, Subscriber] = {}
        # event name -> {subscription id -> subscription}; dicts keep insertion
        # order (delivery order) and make removal O(1).
        self._by_event: dict[str, dict[str, Subscription]] = {}
        self._by_id: dict[str, Subscription] = {}
        self._by_connection: dict[Subscriber, dict[str, Subscription]] = {}
        # Serialised event names, cached because the same few names recur.
        self._name_json: dict[str, bytes] = {}
        self._started = False
        #: Counters for operators and tests.
        self.events_published = 0
        self.events_delivered = 0

    # -- lifecycle ---------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether ``start()`` was called; registration is closed from then on."""
        return self._started

    def register_client(self, info: ClientInfo) -> None:
        """Add a client that may connect; only before ``start()``."""
        if self._started:
            raise LocalProtocolError(
                "You cannot register new clients after the server has started listening."
            )
        if not isinstance(info.id, str) or not info.id:
            # The original accepted "" and then never let it authenticate.
            raise LocalProtocolError("A client ID must be a non-empty string.")
        if info.id in self._clients:
            raise LocalProtocolError("A client with the same ID is already registered.")
        self._clients[info.id] = info

    def start(self) -> None:
        """Close registration; the server is about to accept requests."""
        self._started = True

    # -- identity ----------------------------------------------------------

    def _resolve(self, connection: Subscriber, client_id: str | None) -> ClientInfo:
        """Find who a publish or subscribe acts as, or raise the original's error."""
        if client_id:
            info = self._clients.get(client_id)
            if info is not None:
                return info
            if self._adhoc_owner.get(client_id) is connection:
                return self._adhoc_by_connection[connection]
            raise _unrecognized(client_id)
        if not connection.trusted:
            raise _unrecognized(None)
        # One identity per trusted connection (the original minted one per request).
        adhoc = self._adhoc_by_connection.get(connection)
        if adhoc is None:
            adhoc = ClientInfo(f"{ADHOC_PREFIX}::{secrets.token_hex(16)}")
            self._adhoc_by_connection[connection] = adhoc
            self._adhoc_owner[adhoc.id] = connection
        return adhoc

    def _owner_id(self, connection: Subscriber, client_id: str | None) -> str | None:
        """Whose subscriptions an unsubscribe may cancel (``None``: nobody's).

        A registered id, or this connection's own ad-hoc identity: an ad-hoc id
        is a credential of one connection only, even if another one learns it.
        """
        adhoc = self._adhoc_by_connection.get(connection)
        if not client_id:
            return adhoc.id if adhoc is not None else None
        if client_id in self._clients or (adhoc is not None and adhoc.id == client_id):
            return client_id
        return None

    # -- operations --------------------------------------------------------

    def publish(
        self, connection: Subscriber, client_id: str | None, event_name: str, value: JSONValue
    ) -> dict[str, Any]:
        """Deliver ``value`` to every subscription of ``event_name`` not owned by the publisher."""
        info = self._resolve(connection, client_id)
        if not info.can_publish:
            raise RequestError(_NOT_ALLOWED_PUBLISH, code=ErrorCode.PUBLISH_FORBIDDEN)
        self.events_published += 1
        subscriptions = self._by_event.get(event_name)
        listeners = 0
        if subscriptions:
            publisher = info.id
            event: EncodedEvent | None = None
            # Hot loop: no allocation per delivery besides what push_event queues.
            # A snapshot, because push_event may close a slow consumer, which
            # drops its subscriptions from this very dict.
            for subscription in tuple(subscriptions.values()):
                if subscription.client_id == publisher:
                    continue
                if event is None:
                    event = EncodedEvent(self._event_name_json(event_name), event_name, value)
                if subscription.connection.push_event(event, subscription):
                    listeners += 1
            self.events_delivered += listeners
        return {"listeners": listeners, "client_id": info.id}

    def subscribe(self, connection: Subscriber, client_id: str | None, event_name: str) -> dict[str, Any]:
        """Store a new subscription, then return its id (stored before answered)."""
        info = self._resolve(connection, client_id)
        if not info.can_subscribe:
            raise RequestError(_NOT_ALLOWED_SUBSCRIBE, code=ErrorCode.SUBSCRIBE_FORBIDDEN)
        subscription = Subscription(str(uuid.uuid4()), event_name, info.id, connection)
        self._by_event.setdefault(event_name, {})[subscription.id] = subscription
        self._by_id[subscription.id] = subscription
        self._by_connection.setdefault(connection, {})[subscription.id] = subscription
        return {"subscription_id": subscription.id, "client_id": info.id}

    def unsubscribe(
        self, connection: Subscriber, client_id: str | None, subscription_id: str
    ) -> dict[str, Any]:
        """Remove a subscription owned by the requesting client."""
        subscription = self._by_id.get(subscription_id)
        if subscription is None:
            raise RequestError(_NO_SUCH_SUBSCRIPTION, code=ErrorCode.NO_SUCH_SUBSCRIPTION)
        if subscription.client_id != self._owner_id(connection, client_id):
            raise RequestError(_NOT_YOURS, code=ErrorCode.NOT_YOUR_SUBSCRIPTION)
        self._remove(subscription)
        return {}

    def _remove(self, subscription: Subscription) -> None:
        del self._by_id[subscription.id]
        by_name = self._by_event[subscription.event_name]
        del by_name[subscription.id]
        if not by_name:
            # Unlike the original, empty lists do not pile up for one-off names.
            del self._by_event[subscription.event_name]
        owned = self._by_connection[subscription.connection]
        del owned[subscription.id]
        if not owned:
            del self._by_connection[subscription.connection]

    def drop_connection(self, connection: Subscriber) -> int:
        """Forget everything a closed connection owned; returns subscriptions removed."""
        owned = self._by_connection.pop(connection, {})
        for subscription in list(owned.values()):
            del self._by_id[subscription.id]
            by_name = self._by_event[subscription.event_name]
            del by_name[subscription.id]
            if not by_name:
                del self._by_event[subscription.event_name]
        adhoc = self._adhoc_by_connection.pop(connection, None)
        if adhoc is not None:
            del self._adhoc_owner[adhoc.id]
        return len(owned)

    # -- introspection -----------------------------------------------------

    @property
    def subscription_count(self) -> int:
        """Number of live subscriptions across all connections."""
        return len(self._by_id)

    def subscriptions_of(self, connection: Subscriber) -> int:
        """Number of live subscriptions owned by one connection."""
        return len(self._by_connection.get(connection, ()))

    def listener_count(self, event_name: str) -> int:
        """Number of subscriptions to ``event_name`` (before publisher exclusion)."""
        return len(self._by_event.get(event_name, ()))

    def _event_name_json(self, event_name: str) -> bytes:
        encoded = self._name_json.get(event_name)
        if encoded is None:
            encoded = orjson.dumps(event_name)
            if len(self._name_json) < 10_000:  # a bound, so hostile names cannot grow it
                self._name_json[event_name] = encoded
        return encoded
