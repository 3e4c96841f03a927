"""The protocol's vocabulary: requests, their answers, events and client records.

Everything here is a frozen, slotted, keyword-only dataclass: values that cross
the boundary between the sans-IO core and whoever drives it.  The hot paths of
the broker and the client state machine work on plain dicts and only build
these objects at the edges, where a person reads them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ._rules import ClientRules, parse_patterns

#: Any value that survives a JSON round trip.
JSONValue: TypeAlias = "dict[str, JSONValue] | list[JSONValue] | str | int | float | bool | None"


class _NoId(enum.Enum):
    # An enum member is the idiomatic typed sentinel: mypy can narrow on it.
    NO_ID = "NO_ID"

    def __repr__(self) -> str:
        return "NO_ID"


#: "This message has no ``id`` member", which JSON-RPC distinguishes from ``"id": null``.
NO_ID: Final = _NoId.NO_ID

#: A JSON-RPC request id as it appeared on the wire, or ``NO_ID``.
RequestId: TypeAlias = "str | int | float | _NoId | None"

#: Method names of the three pub/sub operations, plus the keep-alive probe.
PUBLISH: Final = "publish"
SUBSCRIBE: Final = "subscribe"
UNSUBSCRIBE: Final = "unsubscribe"
PING: Final = "ping"
#: Live counters for operators; only for clients registered with ``can_inspect``.
STATS: Final = "stats"
#: Method of the notification that carries an event to a subscriber.
EVENT: Final = "event"
#: Method of the last notification a server sends before it closes a connection.
CLOSING: Final = "closing"


class Dialect(enum.Enum):
    """How a request asks to be answered; chosen per message."""

    #: The original's convention: a notification carrying ``request_id``,
    #: answered by a notification whose method name is that ``request_id``.
    PUB_SUB = "pub_sub"
    #: Plain JSON-RPC 2.0: a request with an ``id`` gets a response.
    JSONRPC = "jsonrpc"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A registered client: its secret id and what it may do.

    ``ClientInfo("s3cret")`` registers the id itself.  ``ClientInfo.from_sha256
    (hex_digest)`` registers only the SHA-256 digest of the id's UTF-8 bytes,
    so a leaked configuration does not leak the credential; its ``id`` is
    ``""`` and a server recognises the client by hashing the id it presents.

    ``publish_allow``/``publish_deny`` and ``subscribe_allow``/``subscribe_deny``
    narrow ``can_publish``/``can_subscribe`` to event names: sequences of
    patterns (``*`` one segment, ``>`` the rest; see ``_patterns``), an allow
    list of None meaning every name, and deny winning over allow.  An invalid
    pattern raises ``ValueError`` here.  ``rules`` is their compiled form
    (None when they restrict nothing).
    """

    id: str
    can_publish: bool = True
    can_subscribe: bool = True
    #: Lowercase hex SHA-256 of the id, for a client registered by digest only.
    id_sha256: str | None = field(default=None, kw_only=True)
    #: Whether the client may read the server's live counters (the ``stats`` method).
    can_inspect: bool = field(default=False, kw_only=True)
    #: Patterns of the names the client may publish (None: any), and those it may not.
    publish_allow: tuple[str, ...] | None = field(default=None, kw_only=True)
    publish_deny: tuple[str, ...] = field(default=(), kw_only=True)
    #: Patterns of the names the client may subscribe to (None: any), and those it may not.
    subscribe_allow: tuple[str, ...] | None = field(default=None, kw_only=True)
    subscribe_deny: tuple[str, ...] = field(default=(), kw_only=True)
    #: The four lists above, compiled; None when they restrict nothing.
    rules: ClientRules | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lists = {}
        for name in ("publish_allow", "publish_deny", "subscribe_allow", "subscribe_deny"):
            value = getattr(self, name)
            if value is None and name.endswith("deny"):
                value = ()
            lists[name] = parse_patterns(value)
            # Frozen: lists given by a caller are stored as tuples, so the record stays hashable.
            object.__setattr__(self, name, None if value is None else tuple(value))
        object.__setattr__(self, "rules", ClientRules.build(**lists))

    @classmethod
    def from_sha256(
        cls,
        hex_digest: str,
        *,
        can_publish: bool = True,
        can_subscribe: bool = True,
        can_inspect: bool = False,
        publish_allow: tuple[str, ...] | None = None,
        publish_deny: tuple[str, ...] = (),
        subscribe_allow: tuple[str, ...] | None = None,
        subscribe_deny: tuple[str, ...] = (),
    ) -> ClientInfo:
        """A client known only by the SHA-256 digest (64 hex digits) of its id.

        Raises ``ValueError`` if ``hex_digest`` is not 64 hexadecimal digits
        (or a rule pattern is invalid).
        """
        if not is_sha256_hex(hex_digest):
            raise ValueError("id_sha256 must be 64 hexadecimal digits")
        return cls(
            "",
            can_publish,
            can_subscribe,
            id_sha256=hex_digest.lower(),
            can_inspect=can_inspect,
            publish_allow=publish_allow,
            publish_deny=publish_deny,
            subscribe_allow=subscribe_allow,
            subscribe_deny=subscribe_deny,
        )

    def __repr__(self) -> str:
        # Client ids are secrets: never let one reach a log through repr().
        key = "id" if self.id_sha256 is None else "id_sha256"
        return (
            f"ClientInfo({key}=<redacted>, can_publish={self.can_publish}, "
            f"can_subscribe={self.can_subscribe}, can_inspect={self.can_inspect}"
            + (self._rules_repr() if self.rules is not None else "")
            + ")"
        )

    def _rules_repr(self) -> str:
        # Patterns are configuration, not secrets; only the ones given are shown.
        shown = []
        for name in ("publish_allow", "publish_deny", "subscribe_allow", "subscribe_deny"):
            value = getattr(self, name)
            if value:
                shown.append(f", {name}={value!r}")
            elif value is not None and name.endswith("allow"):
                shown.append(f", {name}=()")
        return "".join(shown)


def is_sha256_hex(text: object) -> bool:
    """Whether ``text`` is a SHA-256 digest written as 64 hexadecimal digits."""
    return (
        isinstance(text, str)
        and len(text) == 64
        and text.isascii()
        and all(c in "0123456789abcdefABCDEF" for c in text)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """Ask the server to deliver ``value`` to every subscriber of ``event_name``."""

    event_name: str
    value: JSONValue
    client_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    """Ask the server for the events published under ``event_name``."""

    event_name: str
    client_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    """Cancel one of this client's subscriptions."""

    subscription_id: str
    client_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Ask the server to prove it is alive; answered with an empty result."""


#: Anything a client may ask of a server.
Request: TypeAlias = Publish | Subscribe | Unsubscribe | Ping


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    """The answer to a publish: how many subscriptions the event went to.

    ``delivered`` and ``dropped`` are there when the publish asked for a
    report: deliveries queued on the server that took the publish, and those
    it refused because the subscriber's connection was closing (a slow
    consumer cut off).  ``listeners`` also counts other servers' deliveries.
    ``forwarded`` is False when the server said it could not pass the event
    to the other servers of its cluster (its Redis out of reach): the event
    reached that server's subscribers only.  Always True for a single server.
    """

    listeners: int
    client_id: str
    delivered: int | None = None
    dropped: int | None = None
    forwarded: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeResult:
    """The answer to a subscribe: the new subscription's id."""

    subscription_id: str
    client_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeResult:
    """The answer to an unsubscribe: it is gone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResult:
    """The answer to a ping."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsResult:
    """The answer to a ``stats`` request: the server's live counters, by name."""

    counters: dict[str, JSONValue]


#: Anything a server answers with on success.
Result: TypeAlias = PublishResult | SubscribeResult | UnsubscribeResult | PingResult | StatsResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One published value as delivered to one subscription."""

    event_name: str
    value: JSONValue
    #: ``None`` only when the server is an original ``pub_sub`` that omits it.
    subscription_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Closing:
    """The server's last word before it closes the connection."""

    code: int
    message: str
