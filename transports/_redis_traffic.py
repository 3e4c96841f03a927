"""What one Redis session of the bridge sends and receives.

``RedisTraffic`` holds the bridge's state (this server's interest, its cache
of the others' counts, the outbox) and the three tasks of a session:

* the sender: SUBSCRIBEs to newly wanted names, then publishes control
  messages and up to ``_BATCH`` events in one pipeline, then UNSUBSCRIBEs
  from names nobody here wants any more; a name's count is announced only
  once this server takes that name's events;
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
from collections import deque
from typing import Final

import coredis
import trio
from coredis.patterns.pubsub import PubSub
from coredis.response.types import PubSubMessage

from pubsub_rpc import Broker, RequestError

from ._redis_counts import LocalInterest, RemoteCounts
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
    encode_state,
)

_log = logging.getLogger("pubsub_rpc.transports.redis")

# Events per pipeline, and names per SUBSCRIBE: large enough to amortise a
# round trip, small enough that one pipeline never holds the sender long.
_BATCH: Final = 500
_NAMES_PER_COMMAND: Final = 500


class RedisTraffic:
    """The bridge's state and the tasks of one Redis session (see the module docstring)."""

    def __init__(self, broker: Broker, prefix: str, heartbeat: float, expiry: float) -> None:
        self.broker = broker
        self.channels = Channels(prefix)
        #: This server's id among the others: random, so a restart is a new server.
        self.node = random.SystemRandom().getrandbits(64).to_bytes(8, "big").hex()
        self.heartbeat = heartbeat
        self.expiry = expiry
        self._interest = LocalInterest(prefix)
        self._remote = RemoteCounts()
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._seq = 0
        self._wake = trio.Event()
        # Names whose counts changed since they were last announced.
        self._dirty: set[str] = set()
        # Event channels subscribed in the current session.
        self._subscribed: set[str] = set()
        self._send_hello = self._send_state = self._send_beat = False
        self._last_hello = float("-inf")
        # The last event handled, to drop the copies one PUBLISH makes when
        # several subscriptions of one connection match (patterns, later).
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
        self._subscribed.clear()
        self._dirty.clear()
        self._last_event = None
        self._send_hello = self._send_state = True

    async def _send(self, client: coredis.Redis[bytes], pubsub: PubSub[bytes]) -> None:
        first = True
        while True:
            # Interest changed (or a new session): only then compare name sets,
            # which costs as much as there are names, not per event.
            changed = bool(self._dirty or self._send_state)
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
                if not self._dirty:
                    await self._wake.wait()
            self._wake = trio.Event()

    async def _sync_subscriptions(self, pubsub: PubSub[bytes]) -> None:
        wanted = self._interest.names() - self._subscribed
        names = sorted(wanted)
        for start in range(0, len(names), _NAMES_PER_COMMAND):
            chunk = names[start : start + _NAMES_PER_COMMAND]
            await pubsub.subscribe(*(self.channels.for_event(name) for name in chunk))
            self._subscribed.update(chunk)

    async def _unsubscribe_unwanted(self, pubsub: PubSub[bytes]) -> None:
        # After the zero counts went out, so nobody counts a name we no longer take.
        names = sorted(self._subscribed - self._interest.names() - self._dirty)
        for start in range(0, len(names), _NAMES_PER_COMMAND):
            chunk = names[start : start + _NAMES_PER_COMMAND]
            self._subscribed.difference_update(chunk)
            await pubsub.unsubscribe(*(self.channels.for_event(name) for name in chunk))

    def _control_messages(self) -> list[bytes]:
        messages = []
        if self._send_hello:
            self._send_hello = False
            messages.append(encode_control(HELLO, self.node))
        if self._send_state:
            self._send_state = False
            # Names not subscribed yet are announced by a count once they are.
            counts = self._interest.all_counts()
            self._dirty = {name for name in counts if name not in self._subscribed}
            ready_counts = {name: c for name, c in counts.items() if name in self._subscribed}
            messages.append(encode_state(self.node, ready_counts))
        # Only names subscribed by now: a count must not reach others before
        # this server takes that name's events.  The rest wait for next round.
        wanted = self._interest.names() if self._dirty else set()
        ready = [name for name in self._dirty if name in self._subscribed or name not in wanted]
        for name in ready:
            self._dirty.discard(name)
            messages.append(encode_count(self.node, name, self._interest.counts(name)))
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
        if message is None or message["type"] != "message":
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
        exclude = self._interest.client_for(event.publisher)
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
            self._remote.replace(message.node, message.counts, now)
        elif message.kind == COUNT:
            assert message.counts is not None
            if message.node not in self._remote:
                self._ask_for_state(now)
            self._remote.update(message.node, message.event_name, message.counts[message.event_name], now)
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
