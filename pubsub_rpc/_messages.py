"""The protocol's vocabulary: requests, their answers, events and client records.

Everything here is a frozen, slotted, keyword-only dataclass: values that cross
the boundary between the sans-IO core and whoever drives it.  The hot paths of
the broker and the client state machine work on plain dicts and only build
these objects at the edges, where a person reads them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
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
    """A registered client: its secret id and what it may do."""

    id: str
    can_publish: bool = True
    can_subscribe: bool = True

    def __repr__(self) -> str:
        # Client ids are secrets: never let one reach a log through repr().
        return (
            f"ClientInfo(id=<redacted>, can_publish={self.can_publish}, can_subscribe={self.can_subscribe})"
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


#: Anything a server answers with on success.
Result: TypeAlias = PublishResult | SubscribeResult | UnsubscribeResult | PingResult


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
