"""``Client``: the async client shared by every transport (opened by ``_open_client``).

A client is a sans-IO protocol object (``pubsub_rpc.ClientConnection`` for
byte streams, ``InProcessClientConnection`` for memory channels) driven by
two tasks: a reader that feeds it and routes what comes out (answers to the
waiting requests, values to subscriptions), and a writer that sends every
request queued since its last write as one ``send_all``.  Request ids, the
pending table and identity adoption all live in the protocol object; this
module owns tasks, timeouts and buffers only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, Literal, overload

import trio

from pubsub_rpc import (
    ClientEvent,
    Closing,
    ConnectionClosedError,
    EventReceived,
    PingRequested,
    PublishResult,
    PubSubError,
    RemoteProtocolError,
    RequestFailed,
    RequestSucceeded,
    RequestTimeoutError,
    Result,
    ServerClosing,
    StatsResult,
    SubscribeResult,
)

from ._client_parts import ClientProtocol as ClientProtocol
from ._client_parts import Waiter as _Waiter
from ._errors import SubscriptionOverflowError
from ._pump import Link, Wakeup
from ._subscription import DEFAULT_SUBSCRIPTION_BUFFER, PatternSubscription, Subscription, _Feed

_AnySubscription = _Feed[Any]

_log = logging.getLogger("pubsub_rpc.transports.client")

#: Seconds a request waits for its answer unless the client says otherwise.
DEFAULT_REQUEST_TIMEOUT: Final = 10.0
_CLOSED_LOCALLY: Final = "The client was closed before the server responded to this request."


class Client:
    """A connection to a pub/sub server; get one from a transport's ``connect``.

    Every method may be called from any number of tasks at once: requests are
    pipelined on the one connection.  Each request waits at most
    ``request_timeout`` seconds for its answer (``RequestTimeoutError``); a
    lost connection fails every waiting request with ``ConnectionClosedError``
    and ends every subscription by raising it; a refusal raises
    ``RequestError`` whose ``message`` is the server's exact text.

    With ``keepalive`` (seconds), a server that dies or hangs without closing
    the connection is noticed within that interval: the client pings every
    ``keepalive / 2`` seconds and, if an answer takes longer than that, treats
    the connection as lost.  A ``ping`` the server sends is always answered.
    """

    def __init__(
        self,
        link: Link[Any, Any],
        protocol: ClientProtocol,
        *,
        join: Callable[[list[Any]], Any],
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        subscription_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
        keepalive: float | None = None,
    ) -> None:
        # Not for direct use: the transports' connect functions build clients.
        if subscription_buffer < 1:
            raise ValueError("subscription_buffer must be at least 1")
        if keepalive is not None and not keepalive > 0:
            raise ValueError("keepalive must be positive (or None)")
        #: Seconds within which a dead server is noticed (None: not watched).
        self.keepalive = keepalive
        #: Seconds each request waits for its answer.
        self.request_timeout = request_timeout
        #: Values each subscription may hold unread before it overflows.
        self.subscription_buffer = subscription_buffer
        self._link = link
        self._protocol = protocol
        self._join = join
        self._outbox: list[Any] = []
        self._output_ready = Wakeup()
        self._waiters: dict[int, _Waiter] = {}
        self._ignored: set[int] = set()  # fire-and-forget requests (unsubscribes)
        self._subscriptions: dict[str, _AnySubscription] = {}
        self._scope = trio.CancelScope()
        self._lost: str | None = None
        self._gone = trio.Event()  # set with _lost: what a reconnecting client waits on
        #: What the server said when it closed the connection, if it did.
        self.server_closing: Closing | None = None

    @property
    def client_id(self) -> str | None:
        """The id requests act as: the configured one, or the ad-hoc one a trusted server gave."""
        return self._protocol.client_id

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (closed by either side)."""
        return self._lost is not None

    # -- the API -----------------------------------------------------------------

    @overload
    async def publish(
        self, event_name: str, value: object, *, exclude_self: bool = ..., report: Literal[False] = ...
    ) -> int: ...
    @overload
    async def publish(
        self, event_name: str, value: object, *, exclude_self: bool = ..., report: Literal[True]
    ) -> PublishResult: ...
    async def publish(
        self, event_name: str, value: object, *, exclude_self: bool = True, report: bool = False
    ) -> int | PublishResult:
        """Publish ``value`` under ``event_name``; returns how many subscriptions it went to.

        ``value`` is anything JSON can represent (``TypeError`` otherwise).
        The count is of subscriptions, not clients, and leaves out the
        publisher's own unless ``exclude_self=False``.  With ``report=True``
        the whole ``PublishResult`` is returned, whose ``delivered`` and
        ``dropped`` count the deliveries queued and refused (slow consumers
        being cut off) on the server, and whose ``forwarded`` is False when
        the server could not pass the event on to the other servers of its
        cluster (``--redis`` out of reach).
        """
        result = await self._call(
            "publish",
            lambda: self._protocol.publish(event_name, value, exclude_self=exclude_self, report=report),
        )
        assert isinstance(result, PublishResult)
        return result if report else result.listeners

    async def subscribe(self, event_name: str) -> Subscription:
        """Subscribe to exactly ``event_name``; returns the ``Subscription`` to iterate (values)."""
        waiter = _Waiter(event_name)
        result = await self._call("subscribe", lambda: self._protocol.subscribe(event_name), waiter)
        assert isinstance(result, SubscribeResult) and isinstance(waiter.subscription, Subscription)
        return waiter.subscription

    async def psubscribe(self, pattern: str) -> PatternSubscription:
        """Subscribe to every name ``pattern`` matches; iterate the result for ``Event`` objects.

        A separate method (not ``subscribe(pattern=...)``) because what the
        iteration yields differs: a pattern subscriber needs each event's
        name.  ``PatternError`` (a ``ValueError``) at once if it is invalid.
        """
        waiter = _Waiter(pattern, pattern=True)
        result = await self._call("subscribe", lambda: self._protocol.psubscribe(pattern), waiter)
        assert isinstance(result, SubscribeResult) and isinstance(waiter.subscription, PatternSubscription)
        return waiter.subscription

    async def ping(self) -> None:
        """Ask the server to answer; proves the connection works end to end."""
        await self._call("ping", self._protocol.ping)

    async def stats(self) -> dict[str, Any]:
        """The server's live counters; ``RequestError`` unless this client may inspect."""
        result = await self._call("stats", self._protocol.stats)
        assert isinstance(result, StatsResult)
        return result.counters

    async def aclose(self) -> None:
        """Close the connection.  Waiting requests fail; subscriptions end cleanly."""
        self._connection_lost(_CLOSED_LOCALLY, local=True)
        await self._link.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- requests ------------------------------------------------------------------

    async def _call(
        self, method: str, build: Callable[[], tuple[int, Any]], waiter: _Waiter | None = None
    ) -> Result:
        self._check_open()
        key, message = build()
        waiter = waiter or _Waiter(None)
        self._waiters[key] = waiter
        self._outbox.append(message)
        self._output_ready.set()
        try:
            with trio.move_on_after(self.request_timeout):
                await waiter.done.wait()
        finally:
            if waiter.outcome is None:
                # Timed out or cancelled: a late answer must find nobody.
                self._waiters.pop(key, None)
                self._protocol.forget(key)
        outcome = waiter.outcome
        if outcome is None:
            raise RequestTimeoutError(
                f'The server did not answer the "{method}" request within {self.request_timeout:g} seconds.'
            )
        if isinstance(outcome, RequestFailed):
            error = outcome.error
            if isinstance(error, ConnectionClosedError):
                # One instance is shared by every pending request; raise a fresh one each.
                raise ConnectionClosedError(error.message, code=error.code)
            raise error
        return outcome.result

    def _check_open(self) -> None:
        if self._lost is not None:
            raise ConnectionClosedError(self._lost)

    async def _unsubscribe(self, subscription: _AnySubscription) -> None:
        await self._call("unsubscribe", lambda: self._protocol.unsubscribe(subscription.id))
        self._subscriptions.pop(subscription.id, None)
        subscription._end()

    def _unsubscribe_nowait(self, subscription: _AnySubscription, error: PubSubError | None = None) -> None:
        """End a subscription now and tell the server without waiting for its answer."""
        subscription._end(error)
        if self._subscriptions.pop(subscription.id, None) is None or self._lost is not None:
            return
        key, message = self._protocol.unsubscribe(subscription.id)
        self._ignored.add(key)
        self._outbox.append(message)
        self._output_ready.set()

    # -- the tasks -------------------------------------------------------------------

    async def _run(self) -> None:
        """Run the reader and the writer until the connection is gone."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop)
                if self.keepalive is not None:
                    nursery.start_soon(self._keepalive_loop, self.keepalive)
                await self._read_loop()

    async def _keepalive_loop(self, interval: float) -> None:
        # A ping every half interval, answered within the next half: a server
        # that stops answering at any moment is noticed within one interval.
        half = interval / 2
        while True:
            await trio.sleep(half)
            if self._lost is not None:
                return
            try:
                key, message = self._protocol.ping()
            except ConnectionClosedError:
                return  # the reader is ending the connection already
            waiter = _Waiter(None)
            self._waiters[key] = waiter
            self._outbox.append(message)
            self._output_ready.set()
            with trio.move_on_after(half):
                await waiter.done.wait()
            if waiter.outcome is None:
                self._waiters.pop(key, None)
                self._protocol.forget(key)
                _log.info("the server did not answer a keep-alive ping in time")
                self._connection_lost(f"The server did not answer a keep-alive ping within {half:g} seconds.")
                return

    async def _read_loop(self) -> None:
        reason = "The server closed the connection."
        try:
            while True:
                data = await self._link.receive()
                if data is None:
                    break
                self._dispatch(self._protocol.receive_data(data))
                if self._protocol.error is not None:
                    # What came before the damage was dispatched above; now the stream is over.
                    raise RemoteProtocolError(self._protocol.error)
        except ConnectionClosedError as exc:
            reason = exc.message
        except RemoteProtocolError as exc:
            reason = f"The server broke the protocol: {exc.message}"
        if self.server_closing is not None:
            reason = self.server_closing.message
        self._connection_lost(reason)

    async def _write_loop(self) -> None:
        try:
            while True:
                if self._outbox:
                    batch, self._outbox = self._outbox, []
                    await self._link.send(self._join(batch))
                else:
                    await self._output_ready.wait()
        except ConnectionClosedError as exc:
            self._connection_lost(exc.message)

    def _dispatch(self, events: list[ClientEvent]) -> None:
        for event in events:
            if type(event) is EventReceived:
                subscription_id = event.event.subscription_id
                subscription = self._subscriptions.get(subscription_id) if subscription_id else None
                if subscription is not None and not subscription._deliver(event.event):
                    self._overflowed(subscription)
            elif type(event) is RequestSucceeded or type(event) is RequestFailed:
                self._answered(event)
            elif type(event) is ServerClosing:
                self.server_closing = event.closing
                _log.info("the server is closing the connection (code %d)", event.closing.code)
            elif type(event) is PingRequested:
                self._outbox.append(event.reply)
                self._output_ready.set()

    def _answered(self, event: RequestSucceeded | RequestFailed) -> None:
        key = event.key
        waiter = self._waiters.pop(key, None)
        if waiter is None:
            self._ignored.discard(key)
            return
        if type(event) is RequestSucceeded and waiter.event_name is not None:
            result = event.result
            if isinstance(result, SubscribeResult):
                kind = PatternSubscription if waiter.pattern else Subscription
                subscription = kind(self, result.subscription_id, waiter.event_name, self.subscription_buffer)
                self._subscriptions[subscription.id] = subscription
                waiter.subscription = subscription
        waiter.outcome = event
        waiter.done.set()

    def _overflowed(self, subscription: _AnySubscription) -> None:
        _log.warning(
            "a subscription overflowed (%d values unread); it was ended and unsubscribed",
            self.subscription_buffer,
        )
        error = SubscriptionOverflowError(
            f'The subscription to "{subscription.event_name}" was ended: more than '
            f"{self.subscription_buffer} values were waiting to be read."
        )
        self._unsubscribe_nowait(subscription, error)

    def _connection_lost(self, reason: str, *, local: bool = False) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        self._gone.set()
        self._dispatch(self._protocol.receive_eof(reason))
        error = None if local else ConnectionClosedError(reason)
        for subscription in self._subscriptions.values():
            subscription._end(error)
        self._subscriptions.clear()
        self._scope.cancel()
