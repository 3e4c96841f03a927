"""``RedisBridge``: several servers behaving as one, through Redis pub/sub.

Why coredis: it is a maintained, fully typed Redis client built on anyio, so
it runs natively under trio (no asyncio loop in a thread, no protocol of our
own); its pub/sub consumer, pipelines, TLS (``rediss://``) and URL passwords
are what this bridge needs.  Checked under ``trio.run`` before choosing:
SUBSCRIBE, PUBLISH, pipelines, and a killed server surfacing as
``coredis.exceptions.ConnectionError`` in the consumer and on commands.

The bridge is the broker's ``Backplane``.  Its hooks never block or raise:
they update plain data (``_redis_counts``), append to a bounded outbox and
wake one sender task.  One Redis session at a time runs three tasks: the
reader (events and control messages in), the sender (SUBSCRIBE/UNSUBSCRIBE,
control messages and events out, pipelined, in order) and the heartbeat.
When the session fails the bridge forgets what it knew of the other servers,
reports every publish as unforwarded, logs the outage once, and reconnects
with jittered exponential backoff, subscribing again to every name its
clients want.

Guarantee across servers: at most once, in publish order per publisher
(one connection to Redis carries every event of this server, and Redis
keeps the order per connection); an event in flight when a connection to
Redis breaks is lost.  spec/README.md, "Several servers", is the contract.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from contextlib import suppress
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import coredis
import orjson
import trio
from coredis.exceptions import RedisError
from coredis.patterns.pubsub import PubSub
from coredis.retry import NoRetryPolicy

from pubsub_rpc import Broker, EncodedEvent, Subscription

from ._redis_counts import LocalInterest, RemoteCounts
from ._redis_wire import (
    BEAT,
    BYE,
    COUNT,
    DEFAULT_PREFIX,
    HELLO,
    STATE,
    Channels,
    MalformedMessageError,
    decode_control,
    decode_event,
    encode_control,
    encode_count,
    encode_event,
    encode_state,
)

_log = logging.getLogger("pubsub_rpc.transports.redis")

#: Events waiting for Redis, at most; beyond it a publish is counted as unforwarded.
DEFAULT_QUEUE_SIZE: Final = 10_000
#: Seconds between heartbeats; a server silent for ``DEFAULT_EXPIRY`` is forgotten.
DEFAULT_HEARTBEAT: Final = 1.0
DEFAULT_EXPIRY: Final = 3.5
#: Reconnection delays grow from the first to the last, each with random jitter.
_BACKOFF_FIRST: Final = 0.1
_BACKOFF_LAST: Final = 5.0
# Events per pipeline, and names per SUBSCRIBE: large enough to amortise a
# round trip, small enough that one pipeline never holds the sender long.
_BATCH: Final = 500
_NAMES_PER_COMMAND: Final = 500
_CONNECT_TIMEOUT: Final = 2.0
# What a lost or refused Redis connection raises, through coredis and anyio.
_SESSION_ERRORS: Final = (
    RedisError,
    OSError,
    TimeoutError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
_COMMAND_TIMEOUT: Final = 5.0


def redacted(url: str) -> str:
    """``url`` without its user and password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _first_leaf(exc: BaseException) -> BaseException:
    # Nurseries (ours, anyio's inside coredis) nest the cause in groups.
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class RedisBridge:
    """Connect one ``Broker`` to every other server on the same Redis and prefix.

    ``url`` is any URL coredis accepts: ``redis://[[user]:password@]host:port/db``,
    ``rediss://`` for TLS, ``unix:///path``.  Run it with
    ``await nursery.start(bridge.run)``: it attaches itself to the broker at
    once, connects in the background (the server serves meanwhile) and
    detaches when cancelled, telling the other servers it leaves.
    """

    def __init__(
        self,
        broker: Broker,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        heartbeat: float = DEFAULT_HEARTBEAT,
        expiry: float = DEFAULT_EXPIRY,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if not 0 < heartbeat < expiry:
            raise ValueError("heartbeat must be positive and shorter than expiry")
        self.broker = broker
        self.url = url
        self.channels = Channels(prefix)
        #: This server's id among the others: random, so a restart is a new server.
        self.node = random.SystemRandom().getrandbits(64).to_bytes(8, "big").hex()
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self.expiry = expiry
        self._interest = LocalInterest(prefix)
        self._remote = RemoteCounts()
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._seq = 0
        self._wake = trio.Event()
        self._connected = trio.Event()
        self._connected_flag = False
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
        self._client: coredis.Redis[bytes] | None = None
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        self._running = False
        #: Counters (also in the broker's ``stats``).
        self.forwarded = 0
        self.received = 0
        self.unforwarded = 0
        self.outages = 0
        self.malformed = 0
        # Whether the current outage was logged, and the unforwarded count then.
        self._in_outage = False
        self._unforwarded_before_outage = 0
        broker.add_stats_source(self.stats)

    # -- the Backplane hooks (synchronous; never block or raise) ----------------

    def subscription_added(self, subscription: Subscription) -> None:
        """Count it; the first one to a name makes the sender SUBSCRIBE."""
        self._interest.add(subscription.event_name, subscription.client_id)
        self._changed(subscription.event_name)

    def subscription_removed(self, subscription: Subscription) -> None:
        """Uncount it; the last one to a name makes the sender UNSUBSCRIBE."""
        self._interest.remove(subscription.event_name, subscription.client_id)
        self._changed(subscription.event_name)

    def forward(self, event: EncodedEvent, exclude_client_id: str | None) -> int | None:
        """Queue a local publish for the other servers; the subscriptions it should reach there.

        None when it cannot go: Redis is out of reach, or the outbox is full.
        Nothing goes when no other server announced a subscription it would
        reach (only names somebody wants cross the network).
        """
        if not self._connected_flag:
            self.unforwarded += 1
            return None
        publisher = None if exclude_client_id is None else self._interest.digest(exclude_client_id)
        remote = self._remote.listeners(event.event_name, publisher)
        if not remote:
            return 0
        if len(self._outbox) >= self.queue_size:
            self.unforwarded += 1
            if not self._overflowing:
                self._overflowing = True
                _log.warning(
                    "Redis is not keeping up: events over %d waiting are not forwarded", self.queue_size
                )
            return None
        try:
            value_json = orjson.dumps(event.value)
        except orjson.JSONEncodeError:  # the broker encoded it already; this cannot fail
            self.unforwarded += 1
            return None
        self._seq += 1
        payload = encode_event(self.node, self._seq, publisher, value_json)
        self._outbox.append((self.channels.for_event(event.event_name), payload))
        self._wake.set()
        return remote

    def _changed(self, event_name: str) -> None:
        self._dirty.add(event_name)
        self._wake.set()

    # -- introspection -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a Redis session is up (publishes are forwarded)."""
        return self._connected_flag

    async def wait_connected(self) -> None:
        """Return once a Redis session is up and this server's interest is announced."""
        await self._connected.wait()

    def remote_listeners(self, event_name: str, publisher_id: str | None = None) -> int:
        """Subscriptions to ``event_name`` on other servers, as this one knows them."""
        digest = None if publisher_id is None else self._interest.digest(publisher_id)
        return self._remote.listeners(event_name, digest)

    def stats(self) -> dict[str, Any]:
        """The bridge's counters, merged into the broker's ``stats``."""
        return {
            "backplane_connected": self._connected_flag,
            "backplane_forwarded": self.forwarded,
            "backplane_received": self.received,
            "backplane_unforwarded": self.unforwarded,
            "backplane_outages": self.outages,
            "backplane_malformed": self.malformed,
            "backplane_nodes": self._remote.nodes,
            "backplane_remote_subscriptions": self._remote.subscriptions(),
            "backplane_channels": len(self._subscribed),
        }

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Attach to the broker, then keep a Redis session up until cancelled.

        Returns through ``task_status`` at once, connected or not: a server
        with Redis out of reach still serves its own clients.
        """
        self.broker.attach_backplane(self)
        self._running = True
        task_status.started()
        jitter = random.Random()
        try:
            with self._scope:
                await self._keep_connected(jitter)
        finally:
            self.broker.detach_backplane()
            self._disconnected()
            self._stopped.set()

    async def aclose(self) -> None:
        """Leave in order: tell the other servers to stop counting ours, then stop ``run``.

        Cancelling ``run`` instead also releases everything, and the others
        stop counting this server's subscriptions after the expiry time.
        """
        if not self._running:
            return
        client = self._client
        if client is not None:
            with trio.move_on_after(1.0), suppress(*_SESSION_ERRORS):
                await client.publish(self.channels.control, encode_control(BYE, self.node))
        self._scope.cancel()
        await self._stopped.wait()

    async def _keep_connected(self, jitter: random.Random) -> None:
        attempt = 0
        while True:
            began = trio.current_time()
            try:
                await self._session()
            except* _SESSION_ERRORS as group:
                # Closing: coredis turns the cancellation into closed streams; no outage.
                if not self._scope.cancel_called:
                    self._session_failed(_first_leaf(group))
            if trio.current_time() - began > _BACKOFF_LAST:
                attempt = 0  # a session that lasted is a fresh start, not a retry
            delay = min(_BACKOFF_LAST, _BACKOFF_FIRST * 2**attempt)
            attempt += 1
            await trio.sleep(delay * jitter.uniform(0.5, 1.0))

    async def _session(self) -> None:
        client = coredis.Redis.from_url(
            self.url,
            retry_policy=NoRetryPolicy(),
            connect_timeout=_CONNECT_TIMEOUT,
            stream_timeout=_COMMAND_TIMEOUT,
        )
        async with client:
            await client.ping()
            pubsub = client.pubsub(
                ignore_subscribe_messages=True, retry_policy=None, subscription_timeout=_COMMAND_TIMEOUT
            )
            async with pubsub:
                await pubsub.subscribe(self.channels.control)
                self._client = client
                self._subscribed.clear()
                self._dirty.clear()
                self._send_hello = self._send_state = True
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._read, pubsub)
                        nursery.start_soon(self._send, client, pubsub)
                        nursery.start_soon(self._beat)
                finally:
                    self._client = None
                    self._disconnected()

    def _session_failed(self, exc: BaseException) -> None:
        if self._in_outage:
            _log.debug("Redis at %s still out of reach: %s", redacted(self.url), type(exc).__name__)
            return
        # Once per outage, however long it lasts: not per publish, not per retry.
        self._in_outage = True
        self.outages += 1
        self._unforwarded_before_outage = self.unforwarded
        _log.warning(
            "Redis at %s is out of reach (%s: %s); events stay on this server until it is back",
            redacted(self.url),
            type(exc).__name__,
            exc,
        )

    def _disconnected(self) -> None:
        if self._connected_flag:
            self._connected_flag = False
            self._connected = trio.Event()
        # Events still queued never left: they count as not forwarded.
        self.unforwarded += len(self._outbox)
        self._outbox.clear()
        self._remote.clear()
        self._subscribed.clear()
        self._last_event = None

    def _now_connected(self) -> None:
        self._connected_flag = True
        self._connected.set()
        if self._in_outage:
            self._in_outage = False
            missed = self.unforwarded - self._unforwarded_before_outage
            _log.warning(
                "Redis at %s is back; %d publishes were not forwarded meanwhile", redacted(self.url), missed
            )
        else:
            _log.info("connected to Redis at %s", redacted(self.url))

    # -- the session's tasks ----------------------------------------------------------

    async def _send(self, client: coredis.Redis[bytes], pubsub: PubSub[bytes]) -> None:
        first = True
        while True:
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
            await self._unsubscribe_unwanted(pubsub)
            if first:
                # Subscribed to every wanted name and announced: others can count us.
                first = False
                self._now_connected()
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
        wanted = self._interest.names()
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
        control = self.channels.control
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] != "message":
                continue
            channel, data = message["channel"], message["data"]
            if not (isinstance(channel, bytes) and isinstance(data, bytes)):
                continue
            try:
                if channel == control:
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
        self.broker.deliver_remote(event_name, event.value, exclude)

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
