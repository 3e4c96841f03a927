"""Who listens where: this server's subscriptions, and what it knows of the others'.

``LocalInterest`` counts this server's subscriptions per event name and per
subscriber digest: the names it must SUBSCRIBE to in Redis, the counts it
announces, and the way back from a publisher digest to a local client id.

``RemoteCounts`` is this server's cache of every other server's
announcements, from which ``forward`` computes the remote part of
``listeners``.  An entry that no message has refreshed for the expiry time
belongs to a server that died (or lost Redis); it is dropped, so a dead
server's subscriptions are not counted for ever.

Both are plain data: the bridge calls them from its hooks and tasks, and the
clock is passed in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pubsub_rpc._rules import Rule

from ._redis_patterns import RemotePatterns
from ._redis_wire import NameCounts, PatternCounts, publisher_digest


class LocalInterest:
    """This server's subscriptions, counted per event name and per subscriber digest.

    Keyed by event name; the bridge keeps a second one keyed by pattern
    text, whose subscriptions may carry a delivery filter (the owner's
    rules), announced with the counts so that other servers count only what
    this one will deliver.
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._by_name: dict[str, Counter[str]] = {}
        self._totals: dict[str, int] = {}
        # digest -> local client id, kept while that client has subscriptions here.
        self._client_of: dict[str, str] = {}
        self._digest_of: dict[str, str] = {}
        self._refs: Counter[str] = Counter()
        # key -> {digest -> filter}, for the digests whose subscriptions have one.
        self._filters: dict[str, dict[str, Rule]] = {}

    def digest(self, client_id: str) -> str:
        """The publisher digest of a client id (cached while it subscribes here)."""
        digest = self._digest_of.get(client_id)
        return digest if digest is not None else publisher_digest(self._prefix, client_id)

    def add(self, event_name: str, client_id: str, filter: Rule | None = None) -> bool:
        """Count one subscription; True if it is the first one to that name here.

        ``filter`` is a pattern subscription's delivery filter (the same for
        every subscription of one client to one pattern).
        """
        digest = self._digest_of.get(client_id)
        if digest is None:
            digest = self._digest_of[client_id] = publisher_digest(self._prefix, client_id)
            self._client_of[digest] = client_id
        self._refs[client_id] += 1
        first = event_name not in self._totals
        self._by_name.setdefault(event_name, Counter())[digest] += 1
        self._totals[event_name] = self._totals.get(event_name, 0) + 1
        if filter is not None:
            self._filters.setdefault(event_name, {})[digest] = filter
        return first

    def remove(self, event_name: str, client_id: str) -> bool:
        """Uncount one subscription; True if it was the last one to that name here."""
        digest = self._digest_of[client_id]
        by_digest = self._by_name[event_name]
        by_digest[digest] -= 1
        if not by_digest[digest]:
            del by_digest[digest]
            filters = self._filters.get(event_name)
            if filters is not None:
                filters.pop(digest, None)
                if not filters:
                    del self._filters[event_name]
        self._refs[client_id] -= 1
        if not self._refs[client_id]:
            del self._refs[client_id], self._digest_of[client_id], self._client_of[digest]
        self._totals[event_name] -= 1
        if self._totals[event_name]:
            return False
        del self._totals[event_name], self._by_name[event_name]
        return True

    def client_for(self, digest: str | None) -> str | None:
        """The local client id behind a publisher digest, if it subscribes here."""
        return None if digest is None else self._client_of.get(digest)

    def names(self) -> set[str]:
        """The event names with at least one subscription here."""
        return set(self._totals)

    def counts(self, event_name: str) -> NameCounts:
        """One name's counts, as announced (``(0, {})`` when there are none)."""
        by_digest = self._by_name.get(event_name)
        if by_digest is None:
            return 0, {}
        return self._totals[event_name], dict(by_digest)

    def all_counts(self) -> dict[str, NameCounts]:
        """Every name's counts, as announced in a ``state`` message."""
        return {name: self.counts(name) for name in self._totals}

    def pattern_counts(self, pattern: str) -> PatternCounts:
        """One pattern's counts with its subscribers' delivery filters, as announced."""
        total, by_digest = self.counts(pattern)
        return total, by_digest, dict(self._filters.get(pattern, {}))


@dataclass(slots=True)
class _Node:
    counts: dict[str, NameCounts] = field(default_factory=dict)
    last_seen: float = 0.0


class RemoteCounts:
    """The other servers' announced subscription counts (exact and pattern), with expiry."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self._patterns = RemotePatterns()

    def __contains__(self, node: str) -> bool:
        return node in self._nodes

    @property
    def nodes(self) -> int:
        """How many other servers are known."""
        return len(self._nodes)

    def subscriptions(self) -> int:
        """How many subscriptions the other servers announced, all names together."""
        exact = sum(total for node in self._nodes.values() for total, _ in node.counts.values())
        return exact + self._patterns.subscriptions()

    def seen(self, node: str, now: float) -> None:
        """Note that ``node`` is alive (any message from it)."""
        entry = self._nodes.get(node)
        if entry is not None:
            entry.last_seen = now

    def replace(
        self,
        node: str,
        counts: dict[str, NameCounts],
        now: float,
        patterns: dict[str, PatternCounts] | None = None,
    ) -> None:
        """A ``state`` message: everything ``node`` has, replacing what was known."""
        self._nodes[node] = _Node({name: c for name, c in counts.items() if c[0]}, now)
        self._patterns.forget(node)
        for text, pattern_counts in (patterns or {}).items():
            self._patterns.set(node, text, pattern_counts)

    def update(self, node: str, event_name: str, counts: NameCounts, now: float) -> None:
        """A ``count`` message: one name's counts on ``node``."""
        entry = self._nodes.setdefault(node, _Node())
        entry.last_seen = now
        if counts[0]:
            entry.counts[event_name] = counts
        else:
            entry.counts.pop(event_name, None)

    def update_pattern(self, node: str, pattern: str, counts: PatternCounts, now: float) -> None:
        """A ``count`` message about a pattern: its counts on ``node``."""
        entry = self._nodes.setdefault(node, _Node())
        entry.last_seen = now
        self._patterns.set(node, pattern, counts)

    def forget(self, node: str) -> None:
        """Drop what was known of ``node`` (it said ``bye``)."""
        self._nodes.pop(node, None)
        self._patterns.forget(node)

    def clear(self) -> None:
        """Drop everything (this server lost Redis: nothing it knows is current)."""
        self._nodes.clear()
        self._patterns = RemotePatterns()

    def expire(self, now: float, expiry: float) -> list[str]:
        """Drop the servers not heard from for ``expiry`` seconds; returns their ids."""
        gone = [node for node, entry in self._nodes.items() if now - entry.last_seen > expiry]
        for node in gone:
            self.forget(node)
        return gone

    def listeners(self, event_name: str, publisher: str | None) -> int:
        """Subscriptions elsewhere an event named ``event_name`` reaches, less the publisher's own.

        Exact ones and pattern ones (those whose filter permits the name).
        """
        count = self._patterns.listeners(event_name, publisher)
        for entry in self._nodes.values():
            counts = entry.counts.get(event_name)
            if counts is not None:
                total, by_digest = counts
                count += total - (by_digest.get(publisher, 0) if publisher is not None else 0)
        return count
