"""What a ``Server``'s transports did, counted for operators: the server's part of ``stats``.

The broker counts protocol traffic (requests, events, bytes); this module
counts what only the transport side sees: connections per adapter, the
connections each policy closed, server faults and uptime.  ``Server``
registers ``ServerStats.snapshot`` as a stats source of its broker, so one
``stats`` request (and the Prometheus endpoint of ``transports.metrics``)
reports both.

Nothing here names a client: adapters are named by their listening address.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pubsub_rpc import ErrorCode

if TYPE_CHECKING:
    from ._adapter import Adapter

#: How ``stats`` names connections served by ``Server.serve_stream`` without an adapter.
NO_ADAPTER_NAME = "serve_stream"


@dataclass(slots=True)
class AdapterStats:
    """Connections of one adapter: open now, accepted so far, refused at its limit."""

    open: int = 0
    accepted: int = 0
    refused: int = 0


@dataclass(slots=True)
class ServerStats:
    """What the server's policies did, for operators and tests."""

    #: Connections accepted and served (refused ones not included).
    connections_served: int = 0
    #: Connections refused because their adapter had ``max_connections`` open.
    connections_refused: int = 0
    #: Connections closed as slow consumers (``max_outbound``).
    slow_consumers: int = 0
    #: Connections closed for sending no valid request within ``idle_timeout``.
    idle_closed: int = 0
    #: Connections that ended because of a fault in the server (a bug; logged).
    internal_errors: int = 0
    #: Requests answered with ``INTERNAL_ERROR`` because of a fault in the
    #: server (a bug; logged), added up as their connections close.
    request_faults: int = 0
    #: ``time.monotonic()`` when the server started serving (None before).
    started_at: float | None = None
    #: Per adapter (None: streams served without one), in the order first seen.
    per_adapter: dict[Adapter | None, AdapterStats] = field(default_factory=dict)

    def of(self, adapter: Adapter | None) -> AdapterStats:
        """The counters of ``adapter``, created on first use."""
        counters = self.per_adapter.get(adapter)
        if counters is None:
            counters = self.per_adapter[adapter] = AdapterStats()
        return counters

    def accepted(self, adapter: Adapter | None) -> None:
        """Count a connection the adapter's limit let in."""
        counters = self.of(adapter)
        counters.open += 1
        counters.accepted += 1
        self.connections_served += 1

    def refused(self, adapter: Adapter | None) -> None:
        """Count a connection refused at the adapter's limit."""
        self.of(adapter).refused += 1
        self.connections_refused += 1

    def closed(self, adapter: Adapter | None) -> None:
        """Count the end of an accepted connection."""
        self.of(adapter).open -= 1

    def ended(self, connection: object) -> None:
        """Count why a connection (accepted or refused) ended, and the faults it answered."""
        # Connections answer a fault in one request and carry on; they count
        # those themselves, and the total is taken as they end.
        self.request_faults += getattr(connection, "internal_errors", 0)
        reason = getattr(connection, "close_reason", None)
        if reason == ErrorCode.SLOW_CONSUMER:
            self.slow_consumers += 1
        elif reason == ErrorCode.IDLE_TIMEOUT:
            self.idle_closed += 1

    def open_on(self, adapter: Adapter | None) -> int:
        """Connections of ``adapter`` open now."""
        counters = self.per_adapter.get(adapter)
        return 0 if counters is None else counters.open

    def snapshot(self, adapters: Iterable[Adapter], connections: int) -> dict[str, Any]:
        """The transport counters as ``stats`` reports them (spec/README.md, "stats")."""
        listed: list[Adapter | None] = [adapter for adapter in adapters if adapter.listed_in_stats]
        if None in self.per_adapter:
            listed.append(None)
        uptime = 0.0 if self.started_at is None else time.monotonic() - self.started_at
        return {
            "connections": connections,
            "connections_accepted": self.connections_served,
            "connections_refused": self.connections_refused,
            "slow_consumers": self.slow_consumers,
            "idle_closed": self.idle_closed,
            "internal_errors": self.internal_errors,
            "request_faults": self.request_faults,
            "uptime_seconds": round(uptime, 3),
            "adapters": [_describe(adapter, self.of(adapter)) for adapter in listed],
        }


def _describe(adapter: Adapter | None, counters: AdapterStats) -> dict[str, Any]:
    if adapter is None:
        name, kind = NO_ADAPTER_NAME, "stream"
    else:
        name, kind = adapter.describe(), adapter.kind
    return {
        "name": name,
        "kind": kind,
        "connections": counters.open,
        "accepted": counters.accepted,
        "refused": counters.refused,
    }
