"""``Subscription`` and ``PatternSubscription``: one subscription's events, as an async iterator.

Both share one bounded buffer (``_Feed``); a ``Subscription`` (to an exact
event name) yields values, a ``PatternSubscription`` yields ``Event`` objects,
because the event name is what a pattern subscriber needs to know.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Final, Generic, Self, TypeVar

import trio

from pubsub_rpc import Event, JSONValue, PubSubError

if TYPE_CHECKING:
    from ._client import Client

#: Values one subscription holds for a slow reader before it is ended.
DEFAULT_SUBSCRIPTION_BUFFER: Final = 1000

T = TypeVar("T")


class _Ending:
    """How a subscription ends and wakes its reader: for ``_Feed`` and ``ReconnectingSubscription`` alike."""

    __slots__ = ("_ended", "_error", "_wake")

    def __init__(self) -> None:
        self._wake = trio.Event()
        self._ended = False
        self._error: PubSubError | None = None

    async def _wait_unless_ended(self) -> None:
        """Raise the end (its error, else ``StopAsyncIteration``) if it has come; else wait for news."""
        if self._ended:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        await self._wake.wait()
        if self._wake.is_set():
            self._wake = trio.Event()

    def _end(self, error: PubSubError | None = None) -> None:
        """No more values will come; iteration ends after those received, cleanly or with ``error``."""
        if not self._ended:
            self._ended = True
            self._error = error
            self._wake.set()


class _Feed(_Ending, Generic[T]):
    """The buffer, iteration and ending that both kinds of subscription share."""

    __slots__ = ("_buffer", "_client", "_max_buffer", "event_name", "id")
    #: Whether ``_deliver`` buffers the whole ``Event`` rather than its value.
    _whole_events = False

    def __init__(self, client: Client, subscription_id: str, event_name: str, max_buffer: int) -> None:
        #: The server's id of this subscription.
        self.id = subscription_id
        #: The event name it receives (for a ``PatternSubscription``: the pattern).
        self.event_name = event_name
        self._client = client
        self._max_buffer = max_buffer
        self._buffer: deque[T] = deque()
        super().__init__()

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        kind = "pattern" if self._whole_events else "to"
        return (
            f"<{type(self).__name__} {self.id} {kind} {self.event_name!r}, {state}, "
            f"{len(self._buffer)} buffered>"
        )

    @property
    def active(self) -> bool:
        """Whether values may still arrive (not unsubscribed, overflowed or disconnected)."""
        return not self._ended

    @property
    def buffered(self) -> int:
        """Values received and not yet read."""
        return len(self._buffer)

    # -- reading ---------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        """The next item; waits for one to arrive."""
        # A cancellation point always, but no schedule point while values are
        # buffered: the reader hands over values in bursts of hundreds, and a
        # task switch per value (as trio's channels make) would let a busy
        # subscription overflow although its reader keeps up.  A consumer runs
        # at most ``subscription_buffer`` values before it has to wait.
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._buffer:
                return self._buffer.popleft()
            await self._wait_unless_ended()

    # -- ending ----------------------------------------------------------------

    async def unsubscribe(self) -> None:
        """Cancel the subscription at the server; values already received can still be read.

        Does nothing if the subscription has already ended.  Raises
        ``RequestError`` if the server refuses, ``RequestTimeoutError`` or
        ``ConnectionClosedError`` if it cannot be reached.
        """
        if not self._ended:
            await self._client._unsubscribe(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ended:
            return
        if exc_type is None:
            await self.unsubscribe()
        else:
            # Unwinding (an error, a cancellation): do not wait for an answer here.
            self._client._unsubscribe_nowait(self)

    # -- called by the client ----------------------------------------------------

    def _deliver(self, event: Event) -> bool:
        """Buffer one event (or its value); False when the buffer is full (the caller ends it)."""
        if self._ended:
            return True
        if len(self._buffer) >= self._max_buffer:
            return False
        self._buffer.append(event if self._whole_events else event.value)  # type: ignore[arg-type]
        self._wake.set()
        return True

    def _limit(self, max_buffer: int) -> bool:
        """Hold at most ``max_buffer`` values from now on; False if it already held more.

        A reconnecting subscription lends each connection's subscription the
        room its older connections' unread values leave.  The values past
        the limit are dropped (they are the overflow), and the caller ends
        the subscription as ``_deliver`` refusing one would.
        """
        self._max_buffer = max_buffer
        if len(self._buffer) <= max_buffer:
            return True
        while len(self._buffer) > max_buffer:
            self._buffer.pop()
        return False

    def _take(self) -> tuple[list[T], PubSubError | None]:
        """An ended subscription's unread values, removed from it, and the error it ended with."""
        values = list(self._buffer)
        self._buffer.clear()
        return values, self._error


class Subscription(_Feed[JSONValue]):
    """An open subscription: iterate it for the values published under ``event_name``.

    ::

        async with await client.subscribe("user::logged_in") as events:
            async for value in events:
                ...

    Leaving the ``async with`` block unsubscribes.  Iteration ends (cleanly,
    after the values already received) when you ``unsubscribe()`` or close
    the client.  It ends by raising instead:

    * ``ConnectionClosedError`` when the connection to the server is lost;
    * ``SubscriptionOverflowError`` when more than the client's
      ``subscription_buffer`` values were waiting to be read.  The client
      reads the connection for every subscription and every answer, so one
      slow reader must not stall the rest: rather than block, or silently
      drop values (which hides the loss), the client ends this subscription,
      unsubscribes it from the server and lets everything else carry on.
      Every value buffered before the overflow is still yielded first.
      Subscribe again to resume; values published in between are lost.
    """

    __slots__ = ()


class PatternSubscription(_Feed[Event]):
    """An open pattern subscription: iterate it for ``Event`` objects (name, value, id).

    ::

        async with await client.psubscribe("user.>") as events:
            async for event in events:
                print(event.event_name, event.value)

    Everything else (ending, ``unsubscribe``, overflow, errors) is as for
    ``Subscription``; ``event_name`` holds the pattern's text.
    """

    __slots__ = ()
    _whole_events = True
