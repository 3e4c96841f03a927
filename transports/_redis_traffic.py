"""What one Redis session of the bridge sends and receives.

``RedisTraffic`` holds the bridge's state (this server's interest, its cache
of the others' counts, the outbox) and the three tasks of a session:

* the sender: SUBSCRIBEs to newly wanted names (PSUBSCRIBEs to the globs of
  new patterns, ``_redis_patterns``), then publishes control messages and
  up to ``_BATCH`` events in one pipeline, then UNSUBSCRIBEs from names
  (and PUNSUBSCRIBEs from globs) nobody here wants any more; a name's or a
  pattern's count is announced only once this server takes its events;
* the reader: events from other servers go to the broker (the publisher
  digest mapped back to a local id, for exclusion), control messages update
  the cache of the other servers' counts;
* the heartbeat: a ``beat`` every ``heartbeat`` seconds, and the expiry of
  servers silent for ``expiry`` seconds.

``RedisBridge`` (``_redis_bridge``) adds the broker's hooks and the
connection's life cycle.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Final

import coredis
import trio
from coredis.patterns.pubsub import PubSub
from coredis.response.types import PubSubMessage

from pubsub_rpc import Broker, Pattern, RequestError

from ._redis_counts import LocalInterest, RemoteCounts
from ._redis_patterns import redis_glob
from ._redis_wire import (
    BEAT,
    BYE,
    COUNT,
    HELLO,
    STATE,
    Channels,
    MalformedMessageError,
    decode_control,
    decode_event,
    encode_control,
    encode_count,
    encode_pattern_count,
    encode_state,
)

_log = logging.getLogger("pubsub_rpc.transports.redis")

# Events per pipeline, and names per SUBSCRIBE: large enough to amortise a
# round trip, small enough that one pipeline never holds the sender long.
_BATCH: Final = 500
_NAMES_PER_COMMAND: Final = 500


@dataclass(eq=False)
class Track:
    """One kind of interest: exact names (SUBSCRIBE) or patterns (PSUBSCRIBE globs)."""

    interest: LocalInterest
    patterns: bool
    #: Keys (names or pattern texts) whose counts changed since last announced.
    dirty: set[str] = field(default_factory=set)
    #: Keys whose channel (or glob) is subscribed in the current session.
    subscribed: set[str] = field(default_factory=set)


class RedisTraffic:
    """The bridge's state and the tasks of one Redis session (see the module docstring)."""

    def __init__(self, broker: Broker, prefix: str, heartbeat: float, expiry: float) -> None:
        self.broker = broker
        self.channels = Channels(prefix)
        #: This server's id among the others: random, so a restart is a new server.
        self.node = random.SystemRandom().getrandbits(64).to_bytes(8, "big").hex()
        self.heartbeat = heartbeat
        self.expiry = expiry
        self._exact = Track(LocalInterest(prefix), patterns=False)
        self._wild = Track(LocalInterest(prefix), patterns=True)
        self._tracks = (self._exact, self._wild)
        # Patterns with the same glob share one PSUBSCRIBE: subscribed keys per glob.
        self._globs: Counter[bytes] = Counter()
        self._remote = RemoteCounts()
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._seq = 0
        self._wake = trio.Event()
        self._send_hello = self._send_state = self._send_beat = False
        self._last_hello = float("-inf")
        # The last event handled, to drop the copies one PUBLISH makes when
        # several subscriptions of this connection match (a name's channel
        # and a pattern's glob, or two globs): Redis writes them in a row.
        self._last_event: tuple[str, int] | None = None
        self._overflowing = False
        #: Counters (also in the broker's ``stats``).
        self.forwarded = 0
        self.received = 0
        self.unforwarded = 0
        self.malformed = 0

    def _announced(self) -> None:
        """The session's first round went out: subscribed to every wanted name, counts sent."""

    def _reset_session(self) -> None:
        """Forget what a session knew (the other servers' counts, what was subscribed)."""
        # Events still queued never left: they count as not forwarded.
        self.unforwarded += len(self._outbox)
        self._outbox.clear()
        self._remote.clear()
        for track in self._tracks:
            track.subscribed.clear()
            track.dirty.clear()
        self._globs.clear()
        self._last_event = None
        self._send_hello = self._send_state = True

    def _client_for(self, digest: str | None) -> str | None:
        # The publisher may subscribe here by name, by pattern, or both.
        return self._exact.interest.client_for(digest) or self._wild.interest.client_for(digest)

    def _glob(self, pattern: str) -> bytes:
        return redis_glob(self.channels.events_prefix, Pattern.parse(pattern))

    async def _send(self, client: coredis.Redis[bytes], pubsub: PubSub[bytes]) -> None:
        first = True
        while True:
            # Interest changed (or a new session): only then compare name sets,
            # which costs as much as there are names, not per event.
            changed = bool(self._exact.dirty or self._wild.dirty or self._send_state)
            if changed:
                await self._sync_subscriptions(pubsub)
            messages = self._control_messages()
            batch = [self._outbox.popleft() for _ in range(min(_BATCH, len(self._outbox)))]
            if messages or batch:
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for message in messages:
                            pipe.publish(self.channels.control, message)
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                except BaseException:
                    # In flight when the session broke: whether they left is unknown.
                    self.unforwarded += len(batch)
                    raise
                self.forwarded += len(batch)
            if changed:
                await self._unsubscribe_unwanted(pubsub)
            if first:
                # Subscribed to every wanted name and announced: others can count us.
                first = False
                self._announced()
            if not self._outbox:
                self._overflowing = False
                if not (self._exact.dirty or self._wild.dirty):
                    await self._wake.wait()
            self._wake = trio.Event()

    async def _sync_subscriptions(self, pubsub: PubSub[bytes]) -> None:
        for track in self._tracks:
            keys = sorted(track.interest.names() - track.subscribed)
            for start in range(0, len(keys), _NAMES_PER_COMMAND):
                chunk = keys[start : start + _NAMES_PER_COMMAND]
                if track.patterns:
                    globs = [self._glob(key) for key in chunk]
                    new = sorted({glob for glob in globs if not self._globs[glob]})
                    self._globs.update(globs)
                    if new:
                        await pubsub.psubscribe(*new)
                else:
                    await pubsub.subscribe(*(self.channels.for_event(key) for key in chunk))
                track.subscribed.update(chunk)

    async def _unsubscribe_unwanted(self, pubsub: PubSub[bytes]) -> None:
        # After the zero counts went out, so nobody counts a name we no longer take.
        for track in self._tracks:
            keys = sorted(track.subscribed - track.interest.names() - track.dirty)
            for start in range(0, len(keys), _NAMES_PER_COMMAND):
                chunk = keys[start : start + _NAMES_PER_COMMAND]
                track.subscribed.difference_update(chunk)
                if track.patterns:
                    globs = [self._glob(key) for key in chunk]
                    self._globs.subtract(globs)
                    gone = {glob for glob in globs if self._globs[glob] <= 0}
                    for glob in gone:
                        del self._globs[glob]
                    if gone:
                        await pubsub.punsubscribe(*sorted(gone))
                else:
                    await pubsub.unsubscribe(*(self.channels.for_event(key) for key in chunk))

    def _control_messages(self) -> list[bytes]:
        messages = []
        if self._send_hello:
            self._send_hello = False
            messages.append(encode_control(HELLO, self.node))
        if self._send_state:
            self._send_state = False
            # Keys not subscribed yet are announced by a count once they are.
            exact, wild = self._exact, self._wild
            for track in self._tracks:
                track.dirty = track.interest.names() - track.subscribed
            counts = {name: exact.interest.counts(name) for name in exact.subscribed}
            patterns = {text: wild.interest.pattern_counts(text) for text in wild.subscribed}
            messages.append(encode_state(self.node, counts, patterns))
        # Only keys subscribed by now: a count must not reach others before
        # this server takes those events.  The rest wait for next round.
        for track in self._tracks:
            wanted = track.interest.names() if track.dirty else set()
            ready = [key for key in track.dirty if key in track.subscribed or key not in wanted]
            for key in ready:
                track.dirty.discard(key)
                if track.patterns:
                    messages.append(encode_pattern_count(self.node, key, track.interest.pattern_counts(key)))
                else:
                    messages.append(encode_count(self.node, key, track.interest.counts(key)))
        if self._send_beat:
            self._send_beat = False
            messages.append(encode_control(BEAT, self.node))
        return messages

    async def _beat(self) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            self._send_beat = True
            self._wake.set()
            for node in self._remote.expire(trio.current_time(), self.expiry):
                _log.info("server %s went silent; its subscriptions no longer count", node)

    async def _read(self, pubsub: PubSub[bytes]) -> None:
        # coredis hands messages over one per trip through the scheduler, so
        # delivering each at once would wake every subscriber's writer once
        # per event: one small write per event and subscriber.  Instead the
        # reader holds messages while more are already parsed and waiting
        # (coredis's buffer of the connection, private, read only for its
        # size), then delivers them together, and the writers send them in
        # large writes, as they do for a burst of local publishes.
        waiting = getattr(pubsub.connection, "_push_message_buffer_out", None)
        held: list[PubSubMessage | None] = []
        while True:
            held.append(await pubsub.get_message())
            if len(held) < _BATCH and waiting is not None and waiting.statistics().current_buffer_used:
                continue
            for message in held:
                self._on_message(message)
            held.clear()

    def _on_message(self, message: PubSubMessage | None) -> None:
        if message is None or message["type"] not in ("message", "pmessage"):
            return
        channel, data = message["channel"], message["data"]
        if not (isinstance(channel, bytes) and isinstance(data, bytes)):
            return
        try:
            if channel == self.channels.control:
                self._on_control(data)
            else:
                self._on_event(channel, data)
        except MalformedMessageError as exc:
            self.malformed += 1
            _log.debug("ignored a malformed message on the bridge's channels: %s", exc)

    def _on_event(self, channel: bytes, data: bytes) -> None:
        event_name = self.channels.event_name(channel)
        if event_name is None:
            return
        event = decode_event(data)
        if event.node == self.node:
            return  # published here, delivered here already
        key = (event.node, event.seq)
        if key == self._last_event:
            return  # another copy of the same PUBLISH
        self._last_event = key
        self.received += 1
        exclude = self._client_for(event.publisher)
        try:
            self.broker.deliver_remote(event_name, event.value, exclude)
        except RequestError:
            # Readable JSON no server of ours would send (nested deeper than a
            # publish allows): someone else writes to our channels.
            raise MalformedMessageError("an event value that cannot be delivered") from None

    def _on_control(self, data: bytes) -> None:
        message = decode_control(data)
        if message.node == self.node:
            return
        now = trio.current_time()
        if message.kind == HELLO:
            self._send_state = True
            self._wake.set()
        elif message.kind == STATE:
            assert message.counts is not None
            self._remote.replace(message.node, message.counts, now, message.patterns)
        elif message.kind == COUNT:
            if message.node not in self._remote:
                self._ask_for_state(now)
            key = message.event_name
            if message.patterns is not None:
                self._remote.update_pattern(message.node, key, message.patterns[key], now)
            else:
                assert message.counts is not None
                self._remote.update(message.node, key, message.counts[key], now)
        elif message.kind == BYE:
            self._remote.forget(message.node)
        elif message.kind == BEAT:
            if message.node not in self._remote:
                self._ask_for_state(now)
            self._remote.seen(message.node, now)

    def _ask_for_state(self, now: float) -> None:
        # A server we have no state of (it expired, or we missed its state):
        # ask everybody again, at most once a heartbeat.
        if now - self._last_hello >= self.heartbeat:
            self._last_hello = now
            self._send_hello = True
            self._wake.set()
