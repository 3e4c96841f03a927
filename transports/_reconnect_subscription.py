"""``ReconnectingSubscription``: a subscription that outlives its connection, and the ``Gap`` it yields.

A reconnecting client gives each of the application's subscriptions one
object that stays the same across reconnects.  Behind it is one
``Subscription`` per connection.  When a connection is lost, the values its
subscription received and nobody read yet move to a backlog, followed by a
``Gap``; the next connection's subscription is read once the backlog is.
The backlog and the open subscription share one bound, the client's
``subscription_buffer``, however many reconnects a slow reader sleeps through.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from pubsub_rpc import ConnectionClosedError, PubSubError, RequestError

from ._subscription import _Ending, _Feed

if TYPE_CHECKING:
    from ._client import Client
    from ._reconnect import ReconnectingClient

_log = logging.getLogger("pubsub_rpc.transports.reconnect")

#: What a subscription yields between its ``Gap`` markers: values, or ``Event`` objects for a pattern.
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """Where a subscription's values were interrupted by a lost connection.

    A ``ReconnectingSubscription`` yields a ``Gap`` after the last value
    received before the connection was lost and before the first value
    received after it was re-subscribed.  Events published while the client
    was disconnected are not replayed: delivery is at most once, and a
    ``Gap`` is where values may be missing.  Resynchronise there (read the
    current state from wherever your application keeps it) if it matters.

    Reconnects with no value between them that the application has not read
    yet make one ``Gap`` (``reconnects`` says how many it covers), so a slow
    reader finds at most one ``Gap`` per value waiting, plus one.
    """

    #: Which reconnect of the client this was: 1 for the first (the latest one it covers).
    reconnect_number: int
    #: Seconds from noticing the loss to being subscribed again (summed over the reconnects it covers).
    disconnected_for: float
    #: Why the connection was lost (the server's closing message, or what broke), the latest time.
    reason: str
    #: How many reconnects in a row it covers: ``reconnect_number - reconnects + 1`` was the first.
    reconnects: int = 1

    def merged(self, later: Gap) -> Gap:
        """One ``Gap`` covering this one and ``later`` (the next reconnect), with no value between."""
        return dataclasses.replace(
            later,
            disconnected_for=self.disconnected_for + later.disconnected_for,
            reconnects=self.reconnects + later.reconnects,
        )


class ReconnectingSubscription(_Ending, Generic[T]):
    """A subscription that is renewed after every reconnect; iterate it for values and ``Gap`` markers.

    ::

        async with await client.subscribe("user::logged_in") as events:
            async for item in events:
                if isinstance(item, Gap):
                    ...  # values published during item.disconnected_for seconds are lost
                else:
                    ...  # a value

    One from ``psubscribe(pattern)`` yields ``Event`` objects (name, value)
    instead of values, with the same ``Gap`` markers between them; after a
    reconnect it is renewed as a pattern subscription again.

    Leaving the ``async with`` block unsubscribes.  Iteration ends cleanly
    (after the values already received) when you ``unsubscribe()`` or close
    the client.  At most the client's ``subscription_buffer`` values wait to
    be read, counted across reconnects: values received before a reconnect
    and not read yet leave that much less room after it.  It ends by raising:

    * ``RequestError`` when the server refused to renew the subscription after
      a reconnect (for example ``Unrecognized client ID`` from a server that
      restarted without this client registered): no retry would change that;
    * ``ReconnectFailedError`` when the client gave up reconnecting;
    * ``SubscriptionOverflowError`` as for a ``Subscription``: values were not
      read fast enough.  Every value buffered before is yielded first, and it
      is not renewed after that.  Subscribe again to resume.
    """

    __slots__ = (
        "_backlog",
        "_backlog_values",
        "_bound",
        "_client",
        "_newest",
        "_renew",
    )

    def __init__(
        self,
        client: ReconnectingClient,
        first: _Feed[T],
        renew: Callable[[Client], Awaitable[_Feed[T]]],
    ) -> None:
        # Subscribes again on a new connection, with the original call's arguments.
        self._renew = renew
        self._client = client
        # What earlier connections left unread, oldest first: their values,
        # each reconnect's Gap (consecutive ones merged), then the newest
        # connection's Subscription, read directly.
        self._backlog: deque[T | Gap] = deque()
        self._backlog_values = 0
        self._newest = first
        # The client's subscription_buffer: the backlog's values and the
        # newest's buffer together never hold more.
        self._bound = first._max_buffer
        super().__init__()

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        return f"<ReconnectingSubscription to {self.event_name!r}, {state}, {self._newest!r}>"

    @property
    def event_name(self) -> str:
        """The event name it receives (for a pattern subscription: the pattern)."""
        return self._newest.event_name

    @property
    def id(self) -> str:
        """The server's id of the subscription on the current connection (it changes on reconnect)."""
        return self._newest.id

    @property
    def active(self) -> bool:
        """Whether values may still arrive (not unsubscribed, refused, given up or closed)."""
        return not self._ended

    @property
    def buffered(self) -> int:
        """Values received and not yet read, from every connection (``Gap`` markers not counted)."""
        return self._backlog_values + self._newest.buffered

    # -- reading ---------------------------------------------------------------

    def __aiter__(self) -> ReconnectingSubscription[T]:
        return self

    async def __anext__(self) -> T | Gap:
        """The next value (``Event``), or a ``Gap`` where the connection was lost; waits for one."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._backlog:
                return self._pop_backlog()
            subscription = self._newest
            try:
                return await subscription.__anext__()
            except (StopAsyncIteration, ConnectionClosedError):
                # This connection's part is over (lost, or closed by us):
                # what follows is in the backlog, the next connection's, or the end.
                pass
            except PubSubError as exc:
                # Overflow: the connection's client already unsubscribed it.
                self._end(exc)
                self._client._forget(self)
                raise
            if self._backlog or self._newest is not subscription:
                continue
            await self._wait_unless_ended()

    def _pop_backlog(self) -> T | Gap:
        item = self._backlog.popleft()
        if not isinstance(item, Gap):
            self._backlog_values -= 1
            # The room this value leaves goes to the open subscription.
            self._newest._limit(self._bound - self._backlog_values)
        return item

    # -- ending ----------------------------------------------------------------

    async def unsubscribe(self) -> None:
        """Cancel the subscription; values already received can still be read.

        Does nothing if it has already ended.  While the client is
        disconnected there is nothing to tell the server (a lost connection's
        subscriptions are gone there); otherwise raises as
        ``Subscription.unsubscribe`` does.
        """
        await self.__aexit__(None, None, None)

    async def __aenter__(self) -> ReconnectingSubscription[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ended:
            return
        self._end(None)
        self._client._forget(self)
        # Unsubscribes the open one at the server, waiting for the answer only
        # when not unwinding, as Subscription does.  If the connection goes
        # meanwhile, the subscription went with it.
        with contextlib.suppress(ConnectionClosedError):
            await self._newest.__aexit__(exc_type, exc, tb)

    # -- called by the client ----------------------------------------------------

    def _lost(self) -> None:
        """The connection is gone: keep its unread values; end here if it had overflowed."""
        values, error = self._newest._take()
        self._backlog.extend(values)
        self._backlog_values += len(values)
        if error is not None and not isinstance(error, ConnectionClosedError):
            # It overflowed before the loss: renewing it would only delay the error.
            self._client._forget(self)
            self._end(error)
        self._wake.set()

    def _renewed(self, gap: Gap, subscription: _Feed[T]) -> None:
        """The reconnect made ``subscription``: read it after the backlog and ``gap``."""
        if self._ended:
            # Unsubscribed while the reconnect renewed it.
            subscription._client._unsubscribe_nowait(subscription)
            return
        last = self._backlog[-1] if self._backlog else None
        if isinstance(last, Gap):
            self._backlog.pop()
            gap = last.merged(gap)
        self._backlog.append(gap)
        self._newest = subscription
        self._bound = subscription._max_buffer  # its connection's subscription_buffer
        # It may only fill what the backlog leaves of the one bound; values it
        # got before now (between its answer and this) may already be too many.
        if not subscription._limit(max(0, self._bound - self._backlog_values)):
            subscription._client._overflowed(subscription)
        self._wake.set()


async def renew_all(
    client: Client, subscriptions: list[ReconnectingSubscription[Any]]
) -> list[tuple[ReconnectingSubscription[Any], _Feed[Any]]]:
    """Subscribe each of ``subscriptions`` again on ``client``, all requests in flight at once.

    Returns each still-open one with its new ``Subscription``.  One the
    server refuses is ended with the refusal (a ``RequestError`` such as
    ``Unrecognized client ID`` would come back on every attempt).  Raises
    the first connection failure or timeout: this connection is no good.
    """
    renewals: list[tuple[ReconnectingSubscription[Any], _Feed[Any]]] = []
    trouble: list[PubSubError] = []

    async def renew(subscription: ReconnectingSubscription[Any]) -> None:
        try:
            renewed = await subscription._renew(client)
        except RequestError as exc:
            # Logged by code only: the server's text may quote the client id.
            _log.warning("the server refused to renew a subscription (code %d); it was ended", int(exc.code))
            subscription._client._forget(subscription)
            subscription._end(exc)
            return
        except PubSubError as exc:
            trouble.append(exc)  # the others fail the same way at once
            return
        if subscription.active:
            renewals.append((subscription, renewed))
        else:
            client._unsubscribe_nowait(renewed)  # unsubscribed while this was on its way

    async with trio.open_nursery() as nursery:
        for subscription in subscriptions:
            nursery.start_soon(renew, subscription)
    if trouble:
        raise trouble[0]
    return renewals
