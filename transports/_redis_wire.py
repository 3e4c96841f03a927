"""What the Redis bridge puts into Redis: channel names, event payloads, control messages.

Pure functions and small value types, no I/O, so the byte layout can be read
(and tested) in one place.  spec/README.md, "Several servers", describes it.

Channels, under the cluster's prefix ``P`` (``pubsub-rpc:`` by default):

* ``P e:<event name>`` carries the events of that name;
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


@dataclass(frozen=True, slots=True)
class Control:
    """A decoded control message."""

    kind: str
    node: str
    #: For ``count``: the event name.
    event_name: str = ""
    #: For ``count``: that name's counts; for ``state``: every name's.
    counts: dict[str, NameCounts] | None = None


def encode_control(kind: str, node: str, **fields: Any) -> bytes:
    """A control message (``hello``, ``beat``, ``bye``; see ``encode_count``/``encode_state``)."""
    return orjson.dumps({"k": kind, "n": node, **fields})


def encode_count(node: str, event_name: str, counts: NameCounts) -> bytes:
    """A ``count`` message: one name's counts on ``node`` (total 0: it has none left)."""
    return encode_control(COUNT, node, e=event_name, t=counts[0], d=counts[1])


def encode_state(node: str, counts: dict[str, NameCounts]) -> bytes:
    """A ``state`` message: every name's counts on ``node``."""
    return encode_control(STATE, node, c={name: [total, by] for name, (total, by) in counts.items()})


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
        name = message.get("e")
        if not isinstance(name, str):
            raise MalformedMessageError("count message without an event name")
        return Control(kind, node, name, {name: _name_counts(message.get("t"), message.get("d"))})
    if kind == STATE:
        raw = message.get("c")
        if not isinstance(raw, dict):
            raise MalformedMessageError("state message without counts")
        counts: dict[str, NameCounts] = {}
        for name, pair in raw.items():
            if not (isinstance(pair, list) and len(pair) == 2):
                raise MalformedMessageError("bad counts")
            counts[name] = _name_counts(pair[0], pair[1])
        return Control(kind, node, counts=counts)
    return Control(kind, node)
