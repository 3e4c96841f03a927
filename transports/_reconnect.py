"""``reconnecting``: a client that reconnects by itself, over any transport.

Opt-in and separate: a ``ReconnectingClient`` drives ordinary ``Client``
objects, one per connection, made by the connect function it was given.  A
background task (the supervisor) waits for the current connection to be
lost, then connects again with exponential backoff and full jitter, renews
every open subscription by repeating its original ``subscribe`` call, and
marks the interruption with a ``Gap`` in each subscription's stream.
Nothing here costs anything to a plain ``Client``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Final, TypeVar

import trio

from pubsub_rpc import ConnectionClosedError, PubSubError, RequestError, RequestTimeoutError

from ._client import DEFAULT_REQUEST_TIMEOUT, Client
from ._errors import ReconnectFailedError, unwrap_single_exception
from ._reconnect_methods import relayed, renewable
from ._reconnect_subscription import Gap, ReconnectingSubscription, renew_all
from ._subscription import _Feed

_log = logging.getLogger("pubsub_rpc.transports.reconnect")

_R = TypeVar("_R")
_T = TypeVar("_T")

#: Seconds of the first backoff step, and the cap of every step.
DEFAULT_INITIAL_DELAY: Final = 0.1
DEFAULT_MAX_DELAY: Final = 30.0
#: Least seconds a connection must stay up to count as healthy (``stable_after``'s default
#: is this or ``initial_delay``, whichever is longer).
MIN_STABLE_AFTER: Final = 1.0

Connect = Callable[[], AbstractAsyncContextManager[Client]]


def backoff_delay(failures: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait before the next attempt after ``failures`` failed ones: full jitter.

    Uniform between 0 and ``min(maximum, initial * 2**failures)``.  The
    randomness spreads the clients of a restarted server over the whole
    window instead of letting them all come back at the same instants.
    """
    return rng.uniform(0.0, min(maximum, initial * 2.0 ** min(failures, 64)))


class ReconnectingClient:
    """A client that reconnects when its connection is lost; get one from ``reconnecting``.

    It has ``Client``'s methods, with the same arguments, and these rules:

    * ``subscribe`` returns a ``ReconnectingSubscription``: after each
      reconnect it is subscribed again with the same arguments, and yields a
      ``Gap`` between the values from before and after.  Events published
      while disconnected are **not** replayed (delivery is at most once).
      ``psubscribe(pattern)`` is the same for a pattern: it yields ``Event``
      objects (each with its real name) and ``Gap`` markers between them.
    * ``publish`` takes ``exclude_self`` and ``report`` as ``Client.publish``
      does; ``stats`` needs ``can_inspect`` as there.
    * A request made while disconnected waits for the reconnect, all within
      ``request_timeout``: if no connection is back by then it raises
      ``ConnectionClosedError`` and was not sent.  Nothing is queued.
    * A ``publish`` (or ``ping``) that was sent when the connection was lost
      raises ``ConnectionClosedError``: it may or may not have reached the
      server, and it is never repeated (no duplicates).  A ``subscribe``
      that was sent is repeated on the next connection: the server drops a
      lost connection's subscriptions, so that cannot subscribe twice.
    * An attempt fails when it cannot connect, or when the connection it
      made is lost within ``stable_after`` seconds (a server that accepts
      and drops at once is not back).  Only a connection that stayed up
      that long resets the backoff and the count of failures.
    * After ``max_attempts`` failed attempts in a row it gives up: every
      request and subscription raises ``ReconnectFailedError`` (a
      ``ConnectionClosedError``), and ``closed`` becomes true.
    """

    def __init__(
        self,
        connect: Connect,
        *,
        initial_delay: float = DEFAULT_INITIAL_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_attempts: int | None = None,
        stable_after: float | None = None,
        on_gap: Callable[[Gap], None] | None = None,
    ) -> None:
        # Not for direct use: reconnecting() runs the supervisor.
        # An unentered connect(...) is callable too (it doubles as a decorator).
        if not callable(connect) or hasattr(connect, "__aenter__"):
            raise TypeError(
                "reconnecting() takes a function that opens a connection, such as "
                "functools.partial(tcp.connect, host, port, client_id=...), not an open one"
            )
        if not initial_delay > 0 or not max_delay >= initial_delay:
            raise ValueError("initial_delay must be positive and max_delay at least initial_delay")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None to keep trying)")
        if stable_after is not None and not stable_after > 0:
            raise ValueError("stable_after must be positive (or None for the default)")
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        #: Failed attempts in a row after which it gives up (None: never).
        self.max_attempts = max_attempts
        #: Seconds a new connection must stay up before a loss no longer counts as a failed attempt.
        self.stable_after = max(MIN_STABLE_AFTER, initial_delay) if stable_after is None else stable_after
        #: Called with each ``Gap`` once the subscriptions are renewed, in the client's task.
        self.on_gap = on_gap
        #: Seconds each request may take, waiting for a reconnect included (the connection's).
        self.request_timeout = DEFAULT_REQUEST_TIMEOUT
        #: Reconnects so far (the ``reconnect_number`` of the latest ``Gap``).
        self.reconnects = 0
        self._connect = connect
        self._random = random.Random()
        self._latest: Client | None = None  # the newest connection, usable or not
        self._ready: Client | None = None  # the connection requests go to, once renewed
        self._changed = trio.Event()
        self._live: dict[ReconnectingSubscription[Any], None] = {}  # insertion-ordered set
        self._failed: ReconnectFailedError | None = None
        self._closed = False
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()

    @property
    def client_id(self) -> str | None:
        """The id requests act as (an ad-hoc one from a trusted server may change on reconnect)."""
        return self._latest.client_id if self._latest is not None else None

    @property
    def connected(self) -> bool:
        """Whether a connection is up and its subscriptions renewed."""
        return self._ready is not None and not self._ready.closed

    @property
    def closed(self) -> bool:
        """Whether the client is closed or gave up reconnecting."""
        return self._closed or self._failed is not None

    publish = relayed(Client.publish)
    ping = relayed(Client.ping)
    stats = relayed(Client.stats)
    subscribe = renewable(Client.subscribe)
    psubscribe = renewable(Client.psubscribe)

    async def aclose(self) -> None:
        """Stop reconnecting and close the connection; subscriptions end cleanly.  Returns promptly."""
        if not self._closed:
            self._closed = True
            for subscription in list(self._live):
                subscription._end(None)
            self._live.clear()
            self._notify()
            self._scope.cancel()
        await self._stopped.wait()

    # -- requests ------------------------------------------------------------------

    async def _send_once(self, method: str, call: Callable[[Client], Awaitable[_R]]) -> _R:
        """Send a request once, on the first usable connection within ``request_timeout``."""
        client: Client | None = None
        with trio.move_on_after(self.request_timeout):
            client = await self._usable()
            try:
                return await call(client)
            except ConnectionClosedError as exc:
                raise ConnectionClosedError(
                    f"{exc.message} The {method} request had been sent: it may or may not have "
                    "reached the server, and it was not sent again.",
                    code=exc.code,
                ) from exc
        raise self._timed_out(method, sent=client is not None)

    async def _subscribe(
        self, renew: Callable[[Client], Awaitable[_Feed[_T]]]
    ) -> ReconnectingSubscription[_T]:
        with trio.move_on_after(self.request_timeout):
            while True:
                client = await self._usable()
                try:
                    first = await renew(client)
                except ConnectionClosedError:
                    continue  # that connection's subscriptions died with it: ask the next one
                if not client.closed:
                    # Registered with no checkpoint since the check: the
                    # supervisor renews it if this connection is lost later.
                    subscription: ReconnectingSubscription[_T] = ReconnectingSubscription(self, first, renew)
                    self._live[subscription] = None
                    return subscription
        raise self._timed_out("subscribe", sent=self._ready is not None)

    def _timed_out(self, method: str, *, sent: bool) -> PubSubError:
        if sent:
            return RequestTimeoutError(
                f'The server did not answer the "{method}" request within {self.request_timeout:g} seconds.'
            )
        return ConnectionClosedError(
            f"Not connected: the connection to the server was not re-established within "
            f"{self.request_timeout:g} seconds, and the {method} request was not sent."
        )

    async def _usable(self) -> Client:
        """The renewed connection, waiting for one; never checkpoints once it has one."""
        while True:
            if self._failed is not None:
                raise ReconnectFailedError(self._failed.message)
            if self._closed:
                raise ConnectionClosedError("The client was closed.")
            client = self._ready
            if client is not None and not client.closed:
                return client
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _forget(self, subscription: ReconnectingSubscription[Any]) -> None:
        self._live.pop(subscription, None)

    # -- the supervisor ----------------------------------------------------------------

    async def _supervise(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then reconnect after every loss, until closed or out of attempts.

        The first connection's failure is raised as it is (a wrong address
        should not look like an outage); later ones are retried.
        """
        try:
            with self._scope:
                async with self._connect() as client:
                    self._latest = client
                    await client.ping()  # proves the server answers (and counts as activity)
                    self.request_timeout = client.request_timeout
                    self._use(client)
                    task_status.started()
                    reason = await self._until_lost(client)
                await self._reconnect(reason)
        finally:
            self._ready = None
            self._notify()
            self._stopped.set()

    async def _until_lost(self, client: Client) -> str:
        await client._gone.wait()
        self._ready = None
        for subscription in list(self._live):
            subscription._lost()
        self._notify()
        reason = client._lost or "The connection was lost."
        _log.info("the connection was lost (%s); reconnecting", reason)
        return reason

    async def _reconnect(self, reason: str) -> None:
        """Connect again after each loss with backoff, and renew the subscriptions; until out of attempts.

        ``failures`` counts the attempts in a row that failed: that could not
        connect, or whose connection was lost within ``stable_after``.  Were a
        successful connect enough to reset it, a server that accepts and drops
        at once would be retried at ``initial_delay`` forever.
        """
        lost_at = trio.current_time()
        failures = 0
        last = reason
        while self.max_attempts is None or failures < self.max_attempts:
            await trio.sleep(backoff_delay(failures, self.initial_delay, self.max_delay, self._random))
            async with AsyncExitStack() as connection:
                try:
                    client = await connection.enter_async_context(self._connect())
                    self._latest = client
                    await client.ping()
                    renewals = await renew_all(client, list(self._live))
                except RequestError as exc:
                    # Not expected from ping; logged by code only (a refusal's text may quote the id).
                    last = f"the server refused a request (code {int(exc.code)})"
                except (PubSubError, OSError) as exc:
                    last = exc.message if isinstance(exc, PubSubError) else str(exc)
                else:
                    self._resume(client, renewals, reason, trio.current_time() - lost_at)
                    up_since = trio.current_time()
                    reason = last = await self._until_lost(client)
                    lost_at = trio.current_time()
                    if lost_at - up_since >= self.stable_after:
                        failures = 0
                        continue
                    last = (
                        f"the connection was lost {lost_at - up_since:.2g} seconds after it was made, "
                        f"before it counted as stable ({self.stable_after:g} seconds): {reason}"
                    )
            # Leaving the block closed the failed connection.
            failures += 1
            _log.info("reconnect attempt %d failed: %s", failures, last)
        self._give_up(failures, last)

    def _resume(
        self,
        client: Client,
        renewals: list[tuple[ReconnectingSubscription[Any], _Feed[Any]]],
        reason: str,
        disconnected_for: float,
    ) -> None:
        """Put the renewed subscriptions behind one ``Gap`` each, and requests on ``client``."""
        self.reconnects += 1
        gap = Gap(reconnect_number=self.reconnects, disconnected_for=disconnected_for, reason=reason)
        for subscription, renewed in renewals:
            subscription._renewed(gap, renewed)
        self._use(client)
        _log.info("reconnected (%d subscriptions renewed)", len(renewals))
        if self.on_gap is not None:
            self.on_gap(gap)

    def _use(self, client: Client) -> None:
        self._ready = client
        self._notify()

    def _give_up(self, failures: int, last: str) -> None:
        message = f"Gave up reconnecting to the server after {failures} failed attempts; the last: {last}"
        _log.warning("%s", message)
        self._failed = ReconnectFailedError(message)
        for subscription in list(self._live):
            subscription._end(ReconnectFailedError(message))
        self._live.clear()
        self._notify()


def reconnecting(
    connect: Connect,
    *,
    initial_delay: float = DEFAULT_INITIAL_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    max_attempts: int | None = None,
    stable_after: float | None = None,
    on_gap: Callable[[Gap], None] | None = None,
) -> AbstractAsyncContextManager[ReconnectingClient]:
    """Open a ``ReconnectingClient`` that makes each of its connections with ``connect()``.

    ``connect`` is called with no arguments for every connection and must
    return what a transport's ``connect`` returns, so any transport works::

        connect = functools.partial(tcp.connect, "127.0.0.1", 7700, client_id="s3cret", keepalive=10)
        async with reconnecting(connect, max_attempts=20) as client:
            ...

    The first connection is made before the body runs, and its failure is
    raised as it is.  After a loss, attempt ``n`` (from 0) waits a random
    time between 0 and ``min(max_delay, initial_delay * 2**n)`` seconds.
    An attempt fails if it cannot connect, or if its connection is lost
    within ``stable_after`` seconds (default: ``initial_delay`` or 1 second,
    whichever is longer), so a server that accepts and drops at once backs
    off like one that refuses; a connection that stays up longer starts
    the count afresh.  ``max_attempts`` failures in a row end everything with
    ``ReconnectFailedError`` (None: keep trying).  ``on_gap(gap)`` is called
    after each reconnect; an exception from it ends the client.  Pass
    ``keepalive`` to the connect function to notice a server that vanished
    without closing the connection.  Closing (leaving the block or
    ``aclose()``) stops at once, also in the middle of a backoff.  Bad
    arguments raise here, before anything connects.
    """
    client = ReconnectingClient(
        connect,
        initial_delay=initial_delay,
        max_delay=max_delay,
        max_attempts=max_attempts,
        stable_after=stable_after,
        on_gap=on_gap,
    )
    return _running(client)


@asynccontextmanager
async def _running(client: ReconnectingClient) -> AsyncIterator[ReconnectingClient]:
    with unwrap_single_exception():
        async with trio.open_nursery() as nursery:
            await nursery.start(client._supervise)
            try:
                yield client
            finally:
                await client.aclose()
