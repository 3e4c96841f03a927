"""What the Redis bridge puts into Redis: channel names, event payloads, control messages.

Pure functions and small value types, no I/O, so the byte layout can be read
(and tested) in one place.  spec/README.md, "Several servers", describes it.

Channels, under the cluster's prefix ``P`` (``pubsub-rpc:`` by default):

* ``P e:<event name>`` carries the events of that name (a server with
  pattern subscriptions takes them through PSUBSCRIBE globs over these
  channels, ``_redis_patterns``);
* ``P ctl`` carries the control messages that keep each server's count of
  the other servers' subscriptions (``listeners``).

Client ids are secrets, and Redis is a shared service, so no client id ever
goes into Redis: an event carries the *publisher digest*, a SHA-256 over a
fixed domain-separation label, the prefix and the id, and a receiving server
maps it back to a local id only if one of its own subscribers has it.  The
label keeps these digests distinct from the ``id_sha256`` of a clients file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pubsub_rpc._patterns import Pattern, PatternError
from pubsub_rpc._rules import Rule

#: The prefix of every channel when none is given.
DEFAULT_PREFIX: Final = "pubsub-rpc:"
#: Hex digits of the publisher digest kept (128 bits: collisions are not a concern).
DIGEST_LENGTH: Final = 32
_DIGEST_DOMAIN: Final = b"pubsub-rpc/backplane/publisher-digest/v1\x00"

#: Control message kinds.
HELLO: Final = "hello"  # a server (re)joined: everybody send your full counts
STATE: Final = "state"  # a server's full counts, replacing what others knew of it
COUNT: Final = "count"  # one event name's counts on a server
BEAT: Final = "beat"  # a server is alive (counts expire without it)
BYE: Final = "bye"  # a server leaves in order: forget its counts now


class MalformedMessageError(ValueError):
    """A message on the bridge's channels that no server of ours could have sent."""


def publisher_digest(prefix: str, client_id: str) -> str:
    """The digest that stands for ``client_id`` in Redis (never the id itself)."""
    data = _DIGEST_DOMAIN + prefix.encode("utf-8", "surrogatepass") + b"\x00"
    data += client_id.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]


@dataclass(frozen=True, slots=True)
class Channels:
    """The channel names of one cluster prefix, as bytes (what coredis hands back)."""

    prefix: str

    @property
    def control(self) -> bytes:
        """The control channel."""
        return self.prefix.encode("utf-8", "surrogatepass") + b"ctl"

    @property
    def events_prefix(self) -> bytes:
        """What every event channel starts with."""
        return self.prefix.encode("utf-8", "surrogatepass") + b"e:"

    def for_event(self, event_name: str) -> bytes:
        """The channel of one event name."""
        return self.events_prefix + event_name.encode("utf-8", "surrogatepass")

    def event_name(self, channel: bytes) -> str | None:
        """The event name of an event channel; None for any other channel."""
        start = self.events_prefix
        if not channel.startswith(start):
            return None
        return channel[len(start) :].decode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    """An event as it crossed Redis: who sent it, in which order, and the value."""

    #: The sending server's random node id.
    node: str
    #: The sending server's sequence number (strictly increasing per node).
    seq: int
    #: The publisher digest, or None for a publisher without an id.
    publisher: str | None
    value: Any


def encode_event(node: str, seq: int, publisher: str | None, value_json: bytes) -> bytes:
    """An event payload: a JSON header line, then the value's JSON as published.

    The value goes in as the bytes its own encoding produced, so it never
    nests one level deeper than the publisher sent it (orjson writes at most
    254 levels; a wrapper array could push a legal value over).
    """
    return orjson.dumps([node, seq, publisher]) + b"\n" + value_json


def decode_event(payload: bytes) -> RemoteEvent:
    """Parse an event payload; ``MalformedMessageError`` if it is not one."""
    header, newline, value_json = payload.partition(b"\n")
    try:
        if not newline:
            raise ValueError("no header line")
        node, seq, publisher = orjson.loads(header)
        value = orjson.loads(value_json)
    except (ValueError, TypeError) as exc:
        raise MalformedMessageError(f"not an event payload: {exc}") from None
    if not (isinstance(node, str) and type(seq) is int and (publisher is None or isinstance(publisher, str))):
        raise MalformedMessageError("not an event payload: bad header")
    return RemoteEvent(node, seq, publisher, value)


#: One event name's subscriptions on one server: the total, and how many of
#: them belong to each subscriber digest (so a publisher's own can be left out).
NameCounts = tuple[int, dict[str, int]]
#: One pattern's subscriptions on one server: the same, plus the delivery
#: filter (rules, spec 5.1) of each digest whose subscriptions to it have one.
PatternCounts = tuple[int, dict[str, int], dict[str, Rule]]


@dataclass(frozen=True, slots=True)
class Control:
    """A decoded control message."""

    kind: str
    node: str
    #: For ``count``: the event name.
    event_name: str = ""
    #: For ``count``: that name's counts; for ``state``: every name's.
    counts: dict[str, NameCounts] | None = None
    #: For a ``count`` about a pattern (then ``event_name`` is the pattern's
    #: text): its counts; for ``state``: every pattern's.
    patterns: dict[str, PatternCounts] | None = None


def encode_control(kind: str, node: str, **fields: Any) -> bytes:
    """A control message (``hello``, ``beat``, ``bye``; see ``encode_count``/``encode_state``)."""
    return orjson.dumps({"k": kind, "n": node, **fields})


def encode_count(node: str, event_name: str, counts: NameCounts) -> bytes:
    """A ``count`` message: one name's counts on ``node`` (total 0: it has none left)."""
    return encode_control(COUNT, node, e=event_name, t=counts[0], d=counts[1])


def encode_pattern_count(node: str, pattern: str, counts: PatternCounts) -> bytes:
    """A ``count`` message about one pattern (``p`` instead of ``e``, filters in ``f``)."""
    total, by_digest, filters = counts
    fields: dict[str, Any] = {"p": pattern, "t": total, "d": by_digest}
    if filters:
        fields["f"] = _filters_json(filters)
    return encode_control(COUNT, node, **fields)


def encode_state(
    node: str, counts: dict[str, NameCounts], patterns: dict[str, PatternCounts] | None = None
) -> bytes:
    """A ``state`` message: every name's counts on ``node``, and every pattern's if any."""
    fields: dict[str, Any] = {"c": {name: [total, by] for name, (total, by) in counts.items()}}
    if patterns:
        fields["p"] = {text: [t, by, _filters_json(f)] for text, (t, by, f) in patterns.items()}
    return encode_control(STATE, node, **fields)


def _filters_json(filters: dict[str, Rule]) -> dict[str, Any]:
    # A rule as [allow, deny]: pattern texts, allow null for "every name".
    return {
        digest: [None if rule.allow is None else [p.text for p in rule.allow], [p.text for p in rule.deny]]
        for digest, rule in filters.items()
    }


def _patterns_of(texts: Any) -> tuple[Pattern, ...]:
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise MalformedMessageError("bad filter")
    return tuple(Pattern.parse(text) for text in texts)


def _pattern_counts(pattern: Any, total: Any, by_digest: Any, raw_filters: Any) -> PatternCounts:
    # The pattern and every rule must parse: the receiver matches names against them.
    if not isinstance(pattern, str) or not isinstance(raw_filters, dict):
        raise MalformedMessageError("bad pattern counts")
    total, by_digest = _name_counts(total, by_digest)
    filters: dict[str, Rule] = {}
    try:
        Pattern.parse(pattern)
        for digest, rule in raw_filters.items():
            if not (digest in by_digest and isinstance(rule, list) and len(rule) == 2):
                raise MalformedMessageError("bad filter")
            allow = None if rule[0] is None else _patterns_of(rule[0])
            filters[digest] = Rule(allow, _patterns_of(rule[1]))
    except PatternError:
        raise MalformedMessageError("a pattern that does not parse") from None
    return total, by_digest, filters


def _name_counts(total: Any, by_digest: Any) -> NameCounts:
    if type(total) is not int or total < 0 or not isinstance(by_digest, dict):
        raise MalformedMessageError("bad counts")
    for digest, count in by_digest.items():
        if type(count) is not int or not 0 < count <= total or not isinstance(digest, str):
            raise MalformedMessageError("bad counts")
    return total, by_digest


def decode_control(payload: bytes) -> Control:
    """Parse a control message; ``MalformedMessageError`` if it is not one."""
    try:
        message = orjson.loads(payload)
    except ValueError:
        raise MalformedMessageError("control message is not JSON") from None
    if not isinstance(message, dict):
        raise MalformedMessageError("control message is not an object")
    kind, node = message.get("k"), message.get("n")
    if not isinstance(node, str) or kind not in (HELLO, STATE, COUNT, BEAT, BYE):
        raise MalformedMessageError("control message without a known kind and node")
    if kind == COUNT:
        return _decode_count(node, message)
    if kind == STATE:
        raw, raw_patterns = message.get("c"), message.get("p", {})
        if not (isinstance(raw, dict) and isinstance(raw_patterns, dict)):
            raise MalformedMessageError("state message without counts")
        counts: dict[str, NameCounts] = {}
        for name, pair in raw.items():
            if not (isinstance(pair, list) and len(pair) == 2):
                raise MalformedMessageError("bad counts")
            counts[name] = _name_counts(pair[0], pair[1])
        patterns: dict[str, PatternCounts] = {}
        for text, triple in raw_patterns.items():
            if not (isinstance(triple, list) and len(triple) == 3):
                raise MalformedMessageError("bad pattern counts")
            patterns[text] = _pattern_counts(text, *triple)
        return Control(kind, node, counts=counts, patterns=patterns)
    return Control(kind, node)


def _decode_count(node: str, message: dict[str, Any]) -> Control:
    name, pattern = message.get("e"), message.get("p")
    if isinstance(pattern, str) and name is None:
        counts = _pattern_counts(pattern, message.get("t"), message.get("d"), message.get("f", {}))
        return Control(COUNT, node, pattern, patterns={pattern: counts})
    if not isinstance(name, str) or pattern is not None:
        raise MalformedMessageError("count message without an event name or a pattern")
    return Control(COUNT, node, name, {name: _name_counts(message.get("t"), message.get("d"))})
