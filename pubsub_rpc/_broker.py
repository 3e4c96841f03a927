"""The broker: who may do what, who listens to what, and fan-out.

This is the server's state machine, independent of any wire format.  It holds
the client registry, the per-connection identities of trusted connections and
the subscription index, and it performs the three operations.  Connections are
anything that implements ``Subscriber`` (a byte-stream connection, an
in-process one); the broker only asks them to take an encoded event.

Every rejection text is the original ``pub_sub``'s, character for character.

Client ids are secrets.  They are looked up in a dict (a keyed SipHash of the
presented string, then one comparison only on a hash match), so how long a
failed lookup takes says nothing about how much of a registered id a guess
got right.  A client registered by digest (``ClientInfo.from_sha256``) is
found by hashing the presented id with SHA-256 and looking the digest up the
same way; the server never holds such an id in plain text until its owner
presents it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any, Final, Protocol

import orjson

from ._errors import ErrorCode, LocalProtocolError, RequestError
from ._messages import ClientInfo, JSONValue, is_sha256_hex
from ._wire import EncodedEvent, subscription_tail

#: Prefix of the identities minted for trusted connections that send no id.
ADHOC_PREFIX: Final = "pub_sub::adhoc_client"
#: Default bound on the subscriptions one connection may hold at a time.
DEFAULT_MAX_SUBSCRIPTIONS: Final = 1000
# Event names up to this length are cached as JSON; longer ones are rare and
# would let a hostile peer pin large strings in memory.
_NAME_CACHE_MAX_LENGTH: Final = 256
_NAME_CACHE_SIZE: Final = 10_000

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


def _unencodable(exc: orjson.JSONEncodeError) -> RequestError:
    # Deeper than orjson writes (254 levels; reading allows 1024), or, from an
    # in-process caller, not JSON at all.
    return RequestError(
        f'Parameter "value" for method "publish" cannot be encoded as JSON: {exc}.',
        code=ErrorCode.INVALID_PARAMS,
    )


def _unrecognized(client_id: str | None) -> RequestError:
    shown = "<missing>" if client_id is None else client_id
    return RequestError(f'Unrecognized client ID "{shown}".', code=ErrorCode.UNKNOWN_CLIENT)


def _sha256(client_id: str) -> bytes:
    # surrogatepass: a str from a decoder never holds lone surrogates, but a
    # Python caller's might; hashing must not raise either way.
    return hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).digest()


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
        # Registered ids, plus ids registered by digest once their owner has
        # presented them (so that later lookups are one dict probe).
        self._clients: dict[str, ClientInfo] = {}
        # SHA-256 of the id -> record, for clients registered by digest only.
        self._digests: dict[bytes, ClientInfo] = {}
        # SHA-256 of every registered id, to refuse duplicates across both kinds.
        self._registered: set[bytes] = set()
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
        if info.id_sha256 is not None:
            if info.id:
                raise LocalProtocolError("A client is registered by its ID or by its SHA-256, not both.")
            if not is_sha256_hex(info.id_sha256):
                raise LocalProtocolError("A client's id_sha256 must be 64 hexadecimal digits.")
            digest = bytes.fromhex(info.id_sha256)
        elif not isinstance(info.id, str) or not info.id:
            # The original accepted "" and then never let it authenticate.
            raise LocalProtocolError("A client ID must be a non-empty string.")
        else:
            digest = _sha256(info.id)
        if digest in self._registered:
            raise LocalProtocolError("A client with the same ID is already registered.")
        self._registered.add(digest)
        if info.id_sha256 is not None:
            self._digests[digest] = info
        else:
            self._clients[info.id] = info

    def start(self) -> None:
        """Close registration; the server is about to accept requests."""
        self._started = True

    # -- identity ----------------------------------------------------------

    def _registered_client(self, client_id: str) -> ClientInfo | None:
        """The registered client with this id, if any (by id, or by its digest)."""
        info = self._clients.get(client_id)
        if info is None and self._digests:
            hashed = self._digests.get(_sha256(client_id))
            if hashed is not None:
                info = ClientInfo(client_id, hashed.can_publish, hashed.can_subscribe)
                self._clients[client_id] = info
        return info

    def _resolve(self, connection: Subscriber, client_id: str | None) -> ClientInfo:
        """Find who a publish or subscribe acts as, or raise the original's error."""
        if client_id:
            info = self._clients.get(client_id)
            if info is not None:
                return info
            info = self._registered_client(client_id)
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
        if self._registered_client(client_id) is not None or (adhoc is not None and adhoc.id == client_id):
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
        # Encoded before the loop, whoever listens: a value that cannot be
        # encoded is refused the same way with or without subscribers.
        try:
            event = EncodedEvent(self._event_name_json(event_name), event_name, value)
        except orjson.JSONEncodeError as exc:
            raise _unencodable(exc) from None
        subscriptions = self._by_event.get(event_name)
        listeners = 0
        if subscriptions:
            publisher = info.id
            # Hot loop: no allocation per delivery besides what push_event queues.
            # A snapshot, because push_event may close a slow consumer, which
            # drops its subscriptions from this very dict.
            for subscription in tuple(subscriptions.values()):
                if subscription.client_id == publisher:
                    continue
                if subscription.connection.push_event(event, subscription):
                    listeners += 1
            self.events_delivered += listeners
        self.events_published += 1
        return {"listeners": listeners, "client_id": info.id}

    def subscribe(self, connection: Subscriber, client_id: str | None, event_name: str) -> dict[str, Any]:
        """Store a new subscription, then return its id (stored before answered)."""
        info = self._resolve(connection, client_id)
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

    @property
    def connections_held(self) -> int:
        """Connections the broker holds state for (subscriptions or an ad-hoc identity)."""
        return len(self._by_connection.keys() | self._adhoc_by_connection.keys())

    def check_consistency(self) -> None:
        """Raise ``AssertionError`` if the indexes disagree (for tests and debugging)."""
        by_event = {s.id for subs in self._by_event.values() for s in subs.values()}
        by_connection = {s.id for subs in self._by_connection.values() for s in subs.values()}
        assert by_event == set(self._by_id) == by_connection, "subscription indexes disagree"
        assert all(self._by_event.values()) and all(self._by_connection.values()), "empty index entries"
        for subscription in self._by_id.values():
            assert self._by_event[subscription.event_name][subscription.id] is subscription
            assert self._by_connection[subscription.connection][subscription.id] is subscription
        assert len(self._adhoc_owner) == len(self._adhoc_by_connection), "ad-hoc indexes disagree"
        for connection, adhoc in self._adhoc_by_connection.items():
            assert self._adhoc_owner[adhoc.id] is connection, "ad-hoc owner mismatch"

    def _event_name_json(self, event_name: str) -> bytes:
        encoded = self._name_json.get(event_name)
        if encoded is None:
            encoded = orjson.dumps(event_name)
            # Bounded in count and size, so hostile names cannot grow it.
            if len(event_name) <= _NAME_CACHE_MAX_LENGTH and len(self._name_json) < _NAME_CACHE_SIZE:
                self._name_json[event_name] = encoded
        return encoded
