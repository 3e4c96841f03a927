"""The broker: who may do what, who listens to what, and fan-out.

This is the server's state machine, independent of any wire format.  It holds
the client registry and the subscription index, performs the operations, and
tells a ``Backplane`` (a bridge to other servers), if one is attached, about
subscriptions and publishes.  Connections are anything that implements
``Subscriber`` (a byte-stream connection, an in-process one); the broker only
asks them to take an encoded event.  Those interfaces and the stored
``Subscription`` are in ``_subscriptions``.

Who a request acts as is the registry's business (``_registry``).  Every
rejection text is the original ``pub_sub``'s, character for character, except
those of the per-name rules (``_rules``), which the original did not have.

Pattern subscriptions live in a segment trie (``_patterns.PatternIndex``)
beside the exact-name dict; a publish consults the trie only when it holds
at least one pattern, so servers without patterns pay one integer test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Final

from ._errors import ErrorCode, LocalProtocolError, RequestError
from ._messages import ClientInfo, JSONValue
from ._patterns import Pattern, PatternIndex, split_name
from ._registry import ADHOC_PREFIX, ClientRegistry
from ._subscriptions import Backplane, Subscriber, Subscription
from ._wire import EncodedEvent, EventEncoder

#: Default bound on the subscriptions one connection may hold at a time.
DEFAULT_MAX_SUBSCRIPTIONS: Final = 1000

__all__ = ["ADHOC_PREFIX", "DEFAULT_MAX_SUBSCRIPTIONS", "Backplane", "Broker", "Subscriber", "Subscription"]

_NOT_ALLOWED_PUBLISH: Final = "You are not allowed to publish events."
_NOT_ALLOWED_SUBSCRIBE: Final = "You are not allowed to subscribe to events."
_NO_SUCH_SUBSCRIPTION: Final = "The specified subscription does not exist."
_NOT_YOURS: Final = "That is not your subscription to cancel."
_NOT_ALLOWED_INSPECT: Final = "You are not allowed to read server statistics."


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
        self._known_clients = self.clients.known
        # event name -> {subscription id -> subscription}; dicts keep insertion
        # order (delivery order) and make removal O(1).
        self._by_event: dict[str, dict[str, Subscription]] = {}
        # The same as tuples for fan-out, made on a name's first publish after a change.
        self._fan_out_lists: dict[str, tuple[Subscription, ...]] = {}
        self._by_id: dict[str, Subscription] = {}
        self._by_connection: dict[Subscriber, dict[str, Subscription]] = {}
        # Pattern subscriptions, keyed by their sequence number.
        self._patterns: PatternIndex[Subscription] = PatternIndex()
        self._sequence = 0
        self._encoder = EventEncoder()
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
        self,
        connection: Subscriber,
        client_id: str | None,
        event_name: str,
        value: JSONValue,
        *,
        exclude_self: bool = True,
        report: bool = False,
    ) -> dict[str, Any]:
        """Deliver ``value`` to every subscription matching ``event_name``.

        Subscriptions owned by the publisher are skipped unless
        ``exclude_self`` is false.  With ``report`` the result also says how
        many deliveries were queued here (``delivered``) and how many were
        refused here by connections that were closing (``dropped``).
        """
        # Hot path: a registered id is one dict probe here; digests, ad-hoc
        # identities and refusals are the registry's business.
        info = self._known_clients.get(client_id) if client_id else None
        if info is None:
            info = self.clients.resolve(connection, client_id)
        if not info.can_publish:
            raise RequestError(_NOT_ALLOWED_PUBLISH, code=ErrorCode.PUBLISH_FORBIDDEN)
        if info.rules is not None:
            info.rules.check_publish(event_name)
        # Encoded before the loop, whoever listens: a value that cannot be
        # encoded is refused the same way with or without subscribers.
        event = self._encoder.encode(event_name, value)
        exclude = info.id if exclude_self else None
        delivered, dropped = self._fan_out(event, exclude)
        self.events_published += 1
        result: dict[str, Any] = {"listeners": delivered, "client_id": info.id}
        if self.backplane is not None:
            remote = self.backplane.forward(event, exclude)
            if remote is None:
                result["forwarded"] = False
            else:
                result["listeners"] = delivered + remote
        if report:
            result["delivered"] = delivered
            result["dropped"] = dropped
        return result

    def publish_unanswered(
        self, connection: Subscriber, client_id: str | None, event_name: str, value: JSONValue
    ) -> None:
        """``publish`` with the default options, for a sender that wants no answer.

        Same checks, delivery and counters; only the result is not built
        (about 4% of a plain notification's cost at one subscriber).
        """
        info = self._known_clients.get(client_id) if client_id else None
        if info is None or not info.can_publish or info.rules is not None:
            self.publish(connection, client_id, event_name, value)  # resolve, refuse or check rules
            return
        event = self._encoder.encode(event_name, value)
        self._fan_out(event, info.id)
        self.events_published += 1
        if self.backplane is not None:
            self.backplane.forward(event, info.id)

    def deliver_remote(self, event_name: str, value: JSONValue, exclude_client_id: str | None) -> int:
        """Fan out an event another server published; returns the deliveries queued here.

        ``exclude_client_id`` is the publisher's id when it has subscriptions
        on this server (a publisher never receives its own events, on any
        server).  Raises ``RequestError`` if ``value`` cannot be encoded.
        """
        delivered, _dropped = self._fan_out(self._encoder.encode(event_name, value), exclude_client_id)
        return delivered

    def _fan_out(self, event: EncodedEvent, exclude_client_id: str | None) -> tuple[int, int]:
        """Queue ``event`` on every subscription matching its name; returns (delivered, dropped).

        Exact-name subscriptions first, in the order they were made, then
        pattern subscriptions in the order they were made.
        """
        name = event.event_name
        subscriptions = self._fan_out_lists.get(name)
        if subscriptions is None:
            # A tuple, not the dict itself: push_event may close a slow
            # consumer, which drops its subscriptions from that dict.  Kept
            # until the name's subscriptions change (only names that have any).
            by_id = self._by_event.get(name)
            subscriptions = ()
            if by_id is not None:
                subscriptions = self._fan_out_lists[name] = tuple(by_id.values())
        delivered = dropped = 0
        if subscriptions:
            # Hot loop: no allocation per delivery besides what push_event queues.
            for subscription in subscriptions:
                if subscription.client_id == exclude_client_id:
                    continue
                if subscription.connection.push_event(event, subscription):
                    delivered += 1
                else:
                    dropped += 1
        if self._patterns.count:
            matched = self._patterns.match(name)
            if matched:
                more, lost = self._fan_out_patterns(event, matched, exclude_client_id)
                delivered += more
                dropped += lost
        self.events_delivered += delivered
        self.events_dropped += dropped
        return delivered, dropped

    def _fan_out_patterns(
        self, event: EncodedEvent, matched: list[Subscription], exclude_client_id: str | None
    ) -> tuple[int, int]:
        delivered = dropped = 0
        name = event.event_name
        segments: list[str] | None = None
        # ``matched`` is never changed by the index (removals replace its
        # cache), so it is a snapshot, as above.
        for subscription in matched:
            if subscription.client_id == exclude_client_id:
                continue
            rule = subscription.filter
            if rule is not None:
                if segments is None:
                    segments = split_name(name)
                if not rule.permits(segments):
                    continue
            if subscription.connection.push_event(event, subscription):
                delivered += 1
            else:
                dropped += 1
        return delivered, dropped

    def subscribe(self, connection: Subscriber, client_id: str | None, event_name: str) -> dict[str, Any]:
        """Store a new subscription, then return its id (stored before answered)."""
        info = self._subscriber(connection, client_id)
        if info.rules is not None:
            info.rules.check_subscribe(event_name)
        self._check_limit(connection)
        subscription = Subscription(str(uuid.uuid4()), event_name, info.id, connection)
        self._by_event.setdefault(event_name, {})[subscription.id] = subscription
        self._fan_out_lists.pop(event_name, None)
        return self._stored(subscription)

    def subscribe_pattern(
        self, connection: Subscriber, client_id: str | None, pattern: Pattern
    ) -> dict[str, Any]:
        """Store a new pattern subscription (``Pattern.parse`` it first), then return its id.

        Refused with ``SUBSCRIBE_FORBIDDEN`` when the client's rules permit
        no name the pattern matches; otherwise stored with a delivery filter
        if they permit only some of them.
        """
        info = self._subscriber(connection, client_id)
        rule = info.rules.pattern_filter(pattern) if info.rules is not None else None
        self._check_limit(connection)
        self._sequence += 1
        subscription = Subscription(
            str(uuid.uuid4()),
            pattern.text,
            info.id,
            connection,
            pattern=pattern,
            filter=rule,
            sequence=self._sequence,
        )
        self._patterns.add(pattern, subscription.sequence, subscription)
        return self._stored(subscription)

    def _subscriber(self, connection: Subscriber, client_id: str | None) -> ClientInfo:
        # Identity and the right to subscribe; the per-name rules come next.
        info = self.clients.resolve(connection, client_id)
        if not info.can_subscribe:
            raise RequestError(_NOT_ALLOWED_SUBSCRIBE, code=ErrorCode.SUBSCRIBE_FORBIDDEN)
        return info

    def _check_limit(self, connection: Subscriber) -> None:
        owned = self._by_connection.get(connection)
        if owned is not None and len(owned) >= self.max_subscriptions:
            raise RequestError(
                f"A connection may hold at most {self.max_subscriptions} subscriptions.",
                code=ErrorCode.LIMIT_EXCEEDED,
            )

    def _stored(self, subscription: Subscription) -> dict[str, Any]:
        connection = subscription.connection
        self._by_id[subscription.id] = subscription
        self._by_connection.setdefault(connection, {})[subscription.id] = subscription
        if self.backplane is not None:
            self.backplane.subscription_added(subscription)
        return {"subscription_id": subscription.id, "client_id": subscription.client_id}

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

    def _unindex(self, subscription: Subscription) -> None:
        del self._by_id[subscription.id]
        if subscription.pattern is not None:
            self._patterns.remove(subscription.pattern, subscription.sequence)
            return
        by_name = self._by_event[subscription.event_name]
        del by_name[subscription.id]
        self._fan_out_lists.pop(subscription.event_name, None)
        if not by_name:
            # Unlike the original, empty lists do not pile up for one-off names.
            del self._by_event[subscription.event_name]

    def _remove(self, subscription: Subscription) -> None:
        self._unindex(subscription)
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
            self._unindex(subscription)
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
            "pattern_subscriptions": self._patterns.count,
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
        """Subscriptions an event named ``event_name`` would reach (exact and pattern).

        Counted before publisher exclusion and before the delivery filters of rules.
        """
        exact = len(self._by_event.get(event_name, ()))
        return exact + len(self._patterns.match(event_name)) if self._patterns.count else exact

    @property
    def connections_held(self) -> int:
        """Connections the broker holds state for (subscriptions or an ad-hoc identity)."""
        return len(self._by_connection.keys() | self.clients.adhoc_connections())

    def check_consistency(self) -> None:
        """Raise ``AssertionError`` if the indexes disagree (for tests and debugging)."""
        by_event = {s.id for subs in self._by_event.values() for s in subs.values()}
        listed = [s.id for s in self._patterns.walk()]
        by_pattern = set(listed)
        assert len(listed) == len(by_pattern) == self._patterns.count, "pattern index miscounts"
        by_connection = {s.id for subs in self._by_connection.values() for s in subs.values()}
        assert by_event | by_pattern == set(self._by_id) == by_connection, "subscription indexes disagree"
        assert not by_event & by_pattern, "a subscription is both exact and pattern"
        assert all(self._by_event.values()) and all(self._by_connection.values()), "empty index entries"
        for name, listed_for_fan_out in self._fan_out_lists.items():
            assert listed_for_fan_out == tuple(self._by_event[name].values()), "stale fan-out list"
        for subscription in self._by_id.values():
            if subscription.pattern is not None:
                assert self._patterns.get(subscription.pattern, subscription.sequence) is subscription
            else:
                assert self._by_event[subscription.event_name][subscription.id] is subscription
            assert self._by_connection[subscription.connection][subscription.id] is subscription
        self.clients.check_consistency()
