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
    """

    id: str
    can_publish: bool = True
    can_subscribe: bool = True
    #: Lowercase hex SHA-256 of the id, for a client registered by digest only.
    id_sha256: str | None = field(default=None, kw_only=True)
    #: Whether the client may read the server's live counters (the ``stats`` method).
    can_inspect: bool = field(default=False, kw_only=True)

    @classmethod
    def from_sha256(
        cls,
        hex_digest: str,
        *,
        can_publish: bool = True,
        can_subscribe: bool = True,
        can_inspect: bool = False,
    ) -> ClientInfo:
        """A client known only by the SHA-256 digest (64 hex digits) of its id.

        Raises ``ValueError`` if ``hex_digest`` is not 64 hexadecimal digits.
        """
        if not is_sha256_hex(hex_digest):
            raise ValueError("id_sha256 must be 64 hexadecimal digits")
        return cls("", can_publish, can_subscribe, id_sha256=hex_digest.lower(), can_inspect=can_inspect)

    def __repr__(self) -> str:
        # Client ids are secrets: never let one reach a log through repr().
        key = "id" if self.id_sha256 is None else "id_sha256"
        return (
            f"ClientInfo({key}=<redacted>, can_publish={self.can_publish}, "
            f"can_subscribe={self.can_subscribe}, can_inspect={self.can_inspect})"
        )


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
    """The answer to a publish: how many subscriptions the event went to."""

    listeners: int
    client_id: str


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
