"""``RedisBridge``: several servers behaving as one, through Redis pub/sub.

Why coredis: it is a maintained, fully typed Redis client built on anyio, so
it runs natively under trio (no asyncio loop in a thread, no protocol of our
own); its pub/sub consumer, pipelines, TLS (``rediss://``) and URL passwords
are what this bridge needs.  Checked under ``trio.run`` before choosing:
SUBSCRIBE, PUBLISH, pipelines, and a killed server surfacing as
``coredis.exceptions.ConnectionError`` in the consumer and on commands.

The bridge is the broker's ``Backplane``.  Its hooks never block or raise:
they update plain data (``_redis_counts``), append to a bounded outbox and
wake one sender task.  One Redis session at a time runs three tasks
(``_redis_traffic``): the reader (events and control messages in), the
sender (SUBSCRIBE/UNSUBSCRIBE, control messages and events out, pipelined,
in order) and the heartbeat.
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
import ssl
from contextlib import suppress
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import coredis
import orjson
import trio
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from pubsub_rpc import Broker, EncodedEvent, Subscription

from ._redis_options import tls_context
from ._redis_traffic import RedisTraffic, Track
from ._redis_wire import BYE, DEFAULT_PREFIX, encode_control, encode_event

_log = logging.getLogger("pubsub_rpc.transports.redis")

#: Events waiting for Redis, at most; beyond it a publish is counted as unforwarded.
DEFAULT_QUEUE_SIZE: Final = 10_000
#: Seconds between heartbeats; a server silent for ``DEFAULT_EXPIRY`` is forgotten.
DEFAULT_HEARTBEAT: Final = 1.0
DEFAULT_EXPIRY: Final = 3.5
#: Reconnection delays grow from the first to the last, each with random jitter.
_BACKOFF_FIRST: Final = 0.1
_BACKOFF_LAST: Final = 5.0
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


def _describe(exc: BaseException) -> str:
    # coredis wraps the reason (a refused connection, a certificate that does
    # not verify) in a generic ConnectionError: show the reason too.
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


class RedisBridge(RedisTraffic):
    """Connect one ``Broker`` to every other server on the same Redis and prefix.

    ``url`` is any URL coredis accepts: ``redis://[[user]:password@]host:port/db``,
    ``rediss://`` for TLS, ``unix:///path``.  For ``rediss://`` the TLS
    settings are ``ssl_context``, by default ``tls_context(url)`` (the
    certificate and the host name checked; see ``_redis_options``).  Run it with
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
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if not 0 < heartbeat < expiry:
            raise ValueError("heartbeat must be positive and shorter than expiry")
        super().__init__(broker, prefix, heartbeat, expiry)
        self.url = url
        self._ssl_context = ssl_context if ssl_context is not None else tls_context(url)
        self.queue_size = queue_size
        self._connected = trio.Event()
        self._connected_flag = False
        self._client: coredis.Redis[bytes] | None = None
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        self._running = False
        #: Redis sessions lost (each outage is logged once).
        self.outages = 0
        # Whether the current outage was logged, and the unforwarded count then.
        self._in_outage = False
        self._unforwarded_before_outage = 0
        broker.add_stats_source(self.stats)

    # -- the Backplane hooks (synchronous; never block or raise) ----------------

    def subscription_added(self, subscription: Subscription) -> None:
        """Count it; the first one to a name (or pattern) makes the sender SUBSCRIBE (PSUBSCRIBE)."""
        # A pattern subscription's event_name is its pattern's text: its key.
        track = self._exact if subscription.pattern is None else self._wild
        track.interest.add(subscription.event_name, subscription.client_id, subscription.filter)
        self._changed(track, subscription.event_name)

    def subscription_removed(self, subscription: Subscription) -> None:
        """Uncount it; the last one to a name (or pattern) makes the sender UNSUBSCRIBE."""
        track = self._exact if subscription.pattern is None else self._wild
        track.interest.remove(subscription.event_name, subscription.client_id)
        self._changed(track, subscription.event_name)

    def forward(self, event: EncodedEvent, exclude_client_id: str | None) -> int | None:
        """Queue a local publish for the other servers; the subscriptions it should reach there.

        None when it cannot go: Redis is out of reach, or the outbox is full.
        Nothing goes when no other server announced a subscription it would
        reach (only names somebody wants cross the network).
        """
        if not self._connected_flag:
            self.unforwarded += 1
            return None
        publisher = None if exclude_client_id is None else self._exact.interest.digest(exclude_client_id)
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

    def _changed(self, track: Track, key: str) -> None:
        track.dirty.add(key)
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
        digest = None if publisher_id is None else self._exact.interest.digest(publisher_id)
        return self._remote.listeners(event_name, digest)

    def stats(self) -> dict[str, Any]:
        """The bridge's counters, merged into the broker's ``stats``.

        ``backplane_connected`` is 1 or 0 (a number, so that metrics
        exporters take it as a gauge); ``backplane_nodes`` and
        ``backplane_remote_subscriptions`` are what this server knows of the
        others; the rest count since start.
        """
        return {
            "backplane_connected": int(self._connected_flag),
            "backplane_forwarded": self.forwarded,
            "backplane_received": self.received,
            "backplane_unforwarded": self.unforwarded,
            "backplane_outages": self.outages,
            "backplane_malformed": self.malformed,
            "backplane_nodes": self._remote.nodes,
            "backplane_remote_subscriptions": self._remote.subscriptions(),
            "backplane_channels": len(self._exact.subscribed),
            "backplane_patterns": len(self._globs),
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
        tls: dict[str, Any] = {} if self._ssl_context is None else {"ssl_context": self._ssl_context}
        client = coredis.Redis.from_url(
            self.url,
            retry_policy=NoRetryPolicy(),
            connect_timeout=_CONNECT_TIMEOUT,
            stream_timeout=_COMMAND_TIMEOUT,
            **tls,
        )
        async with client:
            await client.ping()
            pubsub = client.pubsub(
                ignore_subscribe_messages=True, retry_policy=None, subscription_timeout=_COMMAND_TIMEOUT
            )
            async with pubsub:
                await pubsub.subscribe(self.channels.control)
                self._client = client
                self._reset_session()
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
            "Redis at %s is out of reach (%s); events stay on this server until it is back",
            redacted(self.url),
            _describe(exc),
        )

    def _disconnected(self) -> None:
        if self._connected_flag:
            self._connected_flag = False
            self._connected = trio.Event()
        self._reset_session()

    def _announced(self) -> None:
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
