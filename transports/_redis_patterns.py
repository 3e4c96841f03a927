"""Pattern subscriptions across servers: the Redis glob of a pattern, and the others' patterns.

A server with a pattern subscription must receive, from Redis, every event
the pattern could match.  It PSUBSCRIBEs to a glob over the event channels
that matches at least those (``redis_glob``): the pattern's literal segments
in order, with ``*`` wherever the pattern has a wildcard and between
segments (a name may separate them with ``.`` or ``::``).  The glob may
match more names than the pattern; the broker matches every event exactly
on delivery (``Broker.deliver_remote``), so the extra ones reach nobody.
Patterns with the same glob share one PSUBSCRIBE, counted like exact names.

``RemotePatterns`` is this server's cache of the patterns the other servers
announced, in a ``PatternIndex``, so the remote part of ``listeners`` for a
name costs one walk of the trie (cached per name while the set of patterns
stays the same) however many patterns there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pubsub_rpc._patterns import ONE, Pattern, PatternIndex, split_name
from pubsub_rpc._rules import Rule

from ._redis_wire import PatternCounts

# What a Redis glob gives a meaning to; each is escaped with a backslash.
_GLOB_SPECIAL: Final = frozenset(b"*?[]\\")


def escape_glob(data: bytes) -> bytes:
    """``data`` as a Redis glob that matches exactly ``data``."""
    if not _GLOB_SPECIAL.intersection(data):
        return data
    return b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in data)


def redis_glob(events_prefix: bytes, pattern: Pattern) -> bytes:
    """A PSUBSCRIBE glob matching the channel of every name ``pattern`` matches (and maybe more).

    Sound because a matching name is the pattern's literal segments, in
    order, with any text between them (separators, wildcard segments) and,
    after a final ``>``, anything: exactly what ``*`` stands for in the glob.
    """
    parts = [escape_glob(events_prefix)]
    for position, segment in enumerate(pattern.segments):
        if position:
            parts.append(b"*")  # the separator, "." or "::"
        parts.append(b"*" if segment == ONE else escape_glob(segment.encode("utf-8", "surrogatepass")))
    if pattern.rest:
        parts.append(b"*")
    glob = b"".join(parts)
    while b"**" in glob:
        glob = glob.replace(b"**", b"*")
    return glob


@dataclass(slots=True)
class _Entry:
    """One pattern on one other server, with its counts (updated in place)."""

    total: int
    by_digest: dict[str, int]
    filters: dict[str, Rule]


class RemotePatterns:
    """The other servers' pattern subscriptions, found by event name."""

    def __init__(self) -> None:
        self._index: PatternIndex[_Entry] = PatternIndex()
        # (node, pattern text) -> (index key, entry)
        self._entries: dict[tuple[str, str], tuple[int, _Entry]] = {}
        self._next_key = 0

    def set(self, node: str, text: str, counts: PatternCounts) -> None:
        """One pattern's counts on ``node`` (a total of 0 removes it)."""
        key = (node, text)
        found = self._entries.get(key)
        total, by_digest, filters = counts
        if not total:
            if found is not None:
                del self._entries[key]
                self._index.remove(Pattern.parse(text), found[0])
            return
        if found is not None:
            # In place: the index's cached matches stay valid.
            entry = found[1]
            entry.total, entry.by_digest, entry.filters = total, by_digest, filters
            return
        self._next_key += 1
        entry = _Entry(total, by_digest, filters)
        self._entries[key] = (self._next_key, entry)
        self._index.add(Pattern.parse(text), self._next_key, entry)

    def forget(self, node: str) -> None:
        """Drop every pattern of ``node``."""
        for key in [key for key in self._entries if key[0] == node]:
            self.set(node, key[1], (0, {}, {}))

    def subscriptions(self) -> int:
        """How many pattern subscriptions the other servers announced."""
        return sum(entry.total for _, entry in self._entries.values())

    def listeners(self, event_name: str, publisher: str | None) -> int:
        """Pattern subscriptions elsewhere an event named ``event_name`` reaches.

        Less the publisher's own, and less those whose delivery filter (the
        owner's rules) does not permit the name, as their server will decide.
        """
        if not self._index.count:
            return 0
        count = 0
        segments: list[str] | None = None
        for entry in self._index.match(event_name):
            count += entry.total
            if publisher is not None:
                count -= entry.by_digest.get(publisher, 0)
            for digest, rule in entry.filters.items():
                if segments is None:
                    segments = split_name(event_name)
                if digest != publisher and not rule.permits(segments):
                    count -= entry.by_digest[digest]
        return count
