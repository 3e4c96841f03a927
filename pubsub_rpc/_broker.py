"""The broker: who may do what, who listens to what, and fan-out.

This is the server's state machine, independent of any wire format.  It holds
the client registry and the subscription index, performs the operations, and
tells a ``Backplane`` (a bridge to other servers), if one is attached, about
subscriptions and publishes.  Connections are
anything that implements ``Subscriber`` (a byte-stream connection, an
in-process one); the broker only asks them to take an encoded event.

Who a request acts as is the registry's business (``_registry``).  Every
rejection text is the original ``pub_sub``'s, character for character.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Final, Protocol

import orjson

from ._errors import ErrorCode, LocalProtocolError, RequestError
from ._messages import ClientInfo, JSONValue
from ._registry import ADHOC_PREFIX, ClientRegistry, Party
from ._wire import EncodedEvent, subscription_tail

#: Default bound on the subscriptions one connection may hold at a time.
DEFAULT_MAX_SUBSCRIPTIONS: Final = 1000
# Event names up to this length are cached as JSON; longer ones are rare and
# would let a hostile peer pin large strings in memory.
_NAME_CACHE_MAX_LENGTH: Final = 256
_NAME_CACHE_SIZE: Final = 10_000

__all__ = ["ADHOC_PREFIX", "DEFAULT_MAX_SUBSCRIPTIONS", "Backplane", "Broker", "Subscriber", "Subscription"]

_NOT_ALLOWED_PUBLISH: Final = "You are not allowed to publish events."
_NOT_ALLOWED_SUBSCRIBE: Final = "You are not allowed to subscribe to events."
_NO_SUCH_SUBSCRIPTION: Final = "The specified subscription does not exist."
_NOT_YOURS: Final = "That is not your subscription to cancel."
_NOT_ALLOWED_INSPECT: Final = "You are not allowed to read server statistics."


class Subscriber(Party, Protocol):
    """What the broker needs from a connection (``trusted``, from ``Party``, and this)."""

    def push_event(self, event: EncodedEvent, subscription: Subscription) -> bool:
        """Queue one event for this connection; False if it takes no more events.

        Must not block or raise.  A connection that is closing (a slow
        consumer cut off during this very publish) answers False, so the
        publisher's ``listeners`` counts only deliveries actually queued.
        """


class Backplane(Protocol):
    """What the broker tells a bridge to other servers (the Redis bridge in ``transports``).

    Every method is called synchronously from the broker's operations, so it
    must not block or raise: a bridge queues what it has to send and deals
    with its network on its own time.
    """

    def subscription_added(self, subscription: Subscription) -> None:
        """A subscription was stored (also called for each one alive when attached)."""

    def subscription_removed(self, subscription: Subscription) -> None:
        """A subscription is gone (unsubscribed, or its connection closed)."""

    def forward(self, event: EncodedEvent, exclude_client_id: str | None) -> int | None:
        """Send a locally published event to the other servers.

        ``exclude_client_id`` is the id whose subscriptions must not receive
        it (the publisher's).  Returns how many subscriptions on other servers
        it is expected to reach, for ``listeners``; ``None`` if the other
        servers cannot be reached now, which the publish answer then says
        with ``"forwarded": false``.
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


def _unencodable(exc: orjson.JSONEncodeError) -> RequestError:
    # Deeper than orjson writes (254 levels; reading allows 1024), or, from an
    # in-process caller, not JSON at all.
    return RequestError(
        f'Parameter "value" for method "publish" cannot be encoded as JSON: {exc}.',
        code=ErrorCode.INVALID_PARAMS,
    )


class Broker:
    """Client registry, subscription index and fan-out for one server.

    ``max_subscriptions`` bounds the subscriptions one connection may hold at
    a time; a subscribe beyond it is refused with ``LIMIT_EXCEEDED``.
    """

    def __init__(self, *, max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS) -> None:
        if max_subscriptions < 0:
            raise ValueError("max_subscriptions must not be negative")
        #: Subscriptions one connection may hold at a time.
        self.max_subscriptions = max_subscriptions
        #: Registered clients and the ad-hoc identities of trusted connections.
        self.clients = ClientRegistry()
        # event name -> {subscription id -> subscription}; dicts keep insertion
        # order (delivery order) and make removal O(1).
        self._by_event: dict[str, dict[str, Subscription]] = {}
        self._by_id: dict[str, Subscription] = {}
        self._by_connection: dict[Subscriber, dict[str, Subscription]] = {}
        # Serialised event names, cached because the same few names recur.
        self._name_json: dict[str, bytes] = {}
        #: The bridge to other servers, if any (``attach_backplane``).
        self.backplane: Backplane | None = None
        #: Counters for operators and tests (``stats()`` reports them).
        self.events_published = 0
        self.events_delivered = 0
        #: Deliveries refused by connections that were closing (slow consumers cut off).
        self.events_dropped = 0
        #: Traffic of every connection, counted by the connections themselves:
        #: messages handled, those answered with an error, bytes in and out.
        self.requests = 0
        self.requests_refused = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        # Extra counters from the layers above (transports: connections, bytes, ...).
        self._stats_sources: list[Callable[[], dict[str, Any]]] = []

    # -- lifecycle ---------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether ``start()`` was called; registration is closed from then on."""
        return self.clients.started

    def register_client(self, info: ClientInfo) -> None:
        """Add a client that may connect; only before ``start()``."""
        self.clients.register(info)

    def start(self) -> None:
        """Close registration; the server is about to accept requests."""
        self.clients.start()

    # -- operations --------------------------------------------------------

    def publish(
        self, connection: Subscriber, client_id: str | None, event_name: str, value: JSONValue
    ) -> dict[str, Any]:
        """Deliver ``value`` to every subscription of ``event_name`` not owned by the publisher."""
        info = self.clients.resolve(connection, client_id)
        if not info.can_publish:
            raise RequestError(_NOT_ALLOWED_PUBLISH, code=ErrorCode.PUBLISH_FORBIDDEN)
        # Encoded before the loop, whoever listens: a value that cannot be
        # encoded is refused the same way with or without subscribers.
        event = self._encode(event_name, value)
        listeners, _dropped = self._fan_out(event, info.id)
        self.events_published += 1
        if self.backplane is not None:
            remote = self.backplane.forward(event, info.id)
            if remote is None:
                return {"listeners": listeners, "client_id": info.id, "forwarded": False}
            listeners += remote
        return {"listeners": listeners, "client_id": info.id}

    def deliver_remote(self, event_name: str, value: JSONValue, exclude_client_id: str | None) -> int:
        """Fan out an event another server published; returns the deliveries queued here.

        ``exclude_client_id`` is the publisher's id when it has subscriptions
        on this server (a publisher never receives its own events, on any
        server).  Raises ``RequestError`` if ``value`` cannot be encoded.
        """
        delivered, _dropped = self._fan_out(self._encode(event_name, value), exclude_client_id)
        return delivered

    def _encode(self, event_name: str, value: JSONValue) -> EncodedEvent:
        try:
            return EncodedEvent(self._event_name_json(event_name), event_name, value)
        except orjson.JSONEncodeError as exc:
            raise _unencodable(exc) from None

    def _fan_out(self, event: EncodedEvent, exclude_client_id: str | None) -> tuple[int, int]:
        """Queue ``event`` on every subscription of its name; returns (delivered, dropped)."""
        subscriptions = self._by_event.get(event.event_name)
        if not subscriptions:
            return 0, 0
        delivered = dropped = 0
        # Hot loop: no allocation per delivery besides what push_event queues.
        # A snapshot, because push_event may close a slow consumer, which
        # drops its subscriptions from this very dict.
        for subscription in tuple(subscriptions.values()):
            if subscription.client_id == exclude_client_id:
                continue
            if subscription.connection.push_event(event, subscription):
                delivered += 1
            else:
                dropped += 1
        self.events_delivered += delivered
        self.events_dropped += dropped
        return delivered, dropped

    def subscribe(self, connection: Subscriber, client_id: str | None, event_name: str) -> dict[str, Any]:
        """Store a new subscription, then return its id (stored before answered)."""
        info = self.clients.resolve(connection, client_id)
        if not info.can_subscribe:
            raise RequestError(_NOT_ALLOWED_SUBSCRIBE, code=ErrorCode.SUBSCRIBE_FORBIDDEN)
        owned = self._by_connection.get(connection)
        if owned is not None and len(owned) >= self.max_subscriptions:
            raise RequestError(
                f"A connection may hold at most {self.max_subscriptions} subscriptions.",
                code=ErrorCode.LIMIT_EXCEEDED,
            )
        subscription = Subscription(str(uuid.uuid4()), event_name, info.id, connection)
        self._by_event.setdefault(event_name, {})[subscription.id] = subscription
        self._by_id[subscription.id] = subscription
        self._by_connection.setdefault(connection, {})[subscription.id] = subscription
        if self.backplane is not None:
            self.backplane.subscription_added(subscription)
        return {"subscription_id": subscription.id, "client_id": info.id}

    def unsubscribe(
        self, connection: Subscriber, client_id: str | None, subscription_id: str
    ) -> dict[str, Any]:
        """Remove a subscription owned by the requesting client."""
        subscription = self._by_id.get(subscription_id)
        if subscription is None:
            raise RequestError(_NO_SUCH_SUBSCRIPTION, code=ErrorCode.NO_SUCH_SUBSCRIPTION)
        if subscription.client_id != self.clients.owner_id(connection, client_id):
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
        if self.backplane is not None:
            self.backplane.subscription_removed(subscription)

    def drop_connection(self, connection: Subscriber) -> int:
        """Forget everything a closed connection owned; returns subscriptions removed."""
        owned = self._by_connection.pop(connection, {})
        for subscription in list(owned.values()):
            del self._by_id[subscription.id]
            by_name = self._by_event[subscription.event_name]
            del by_name[subscription.id]
            if not by_name:
                del self._by_event[subscription.event_name]
            if self.backplane is not None:
                self.backplane.subscription_removed(subscription)
        self.clients.drop(connection)
        return len(owned)

    # -- bridges and introspection -----------------------------------------

    def attach_backplane(self, backplane: Backplane) -> None:
        """Connect this broker to other servers; told about every live subscription at once."""
        if self.backplane is not None:
            raise LocalProtocolError("This broker already has a backplane.")
        self.backplane = backplane
        for subscription in self._by_id.values():
            backplane.subscription_added(subscription)

    def detach_backplane(self) -> None:
        """Stop telling a backplane about subscriptions and publishes."""
        self.backplane = None

    def add_stats_source(self, source: Callable[[], dict[str, Any]]) -> None:
        """Add counters from a layer above (merged into ``stats()``; later sources win)."""
        self._stats_sources.append(source)

    def stats(self) -> dict[str, Any]:
        """Live counters for operators: the broker's own, then every stats source's."""
        counters: dict[str, Any] = {
            "clients_registered": self.clients.registered,
            "subscriptions": len(self._by_id),
            "event_names": len(self._by_event),
            "events_published": self.events_published,
            "events_delivered": self.events_delivered,
            "events_dropped": self.events_dropped,
            "requests": self.requests,
            "requests_refused": self.requests_refused,
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
        }
        for source in self._stats_sources:
            counters.update(source())
        return counters

    def inspect(self, connection: Subscriber, client_id: str | None) -> dict[str, Any]:
        """The ``stats`` request: live counters, for clients allowed to inspect."""
        info = self.clients.resolve(connection, client_id)
        if not info.can_inspect:
            raise RequestError(_NOT_ALLOWED_INSPECT, code=ErrorCode.INSPECT_FORBIDDEN)
        return self.stats()

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

    @property
    def connections_held(self) -> int:
        """Connections the broker holds state for (subscriptions or an ad-hoc identity)."""
        return len(self._by_connection.keys() | self.clients.adhoc_connections())

    def check_consistency(self) -> None:
        """Raise ``AssertionError`` if the indexes disagree (for tests and debugging)."""
        by_event = {s.id for subs in self._by_event.values() for s in subs.values()}
        by_connection = {s.id for subs in self._by_connection.values() for s in subs.values()}
        assert by_event == set(self._by_id) == by_connection, "subscription indexes disagree"
        assert all(self._by_event.values()) and all(self._by_connection.values()), "empty index entries"
        for subscription in self._by_id.values():
            assert self._by_event[subscription.event_name][subscription.id] is subscription
            assert self._by_connection[subscription.connection][subscription.id] is subscription
        self.clients.check_consistency()

    def _event_name_json(self, event_name: str) -> bytes:
        encoded = self._name_json.get(event_name)
        if encoded is None:
            encoded = orjson.dumps(event_name)
            # Bounded in count and size, so hostile names cannot grow it.
            if len(event_name) <= _NAME_CACHE_MAX_LENGTH and len(self._name_json) < _NAME_CACHE_SIZE:
                self._name_json[event_name] = encoded
        return encoded
