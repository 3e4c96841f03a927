"""``ReconnectingClient``'s request methods, made from ``Client``'s of the same name and signature."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._client import Client
    from ._reconnect import ReconnectingClient
    from ._reconnect_subscription import ReconnectingSubscription
    from ._subscription import _Feed

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


def relayed(
    method: Callable[Concatenate[Client, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[ReconnectingClient, _P], Coroutine[Any, Any, _R]]:
    """``ReconnectingClient``'s ``method``: sent once, on the connection that is up (see ``_send_once``).

    Same name and signature as the ``Client`` method, so options added to
    ``Client`` reach it with no change here.
    """

    @functools.wraps(method)
    async def relay(self: ReconnectingClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await self._send_once(method.__name__, lambda client: method(client, *args, **kwargs))

    return _renamed(relay, "see its docstring for what happens across reconnects")


def renewable(
    method: Callable[Concatenate[Client, _P], Coroutine[Any, Any, _Feed[_T]]],
) -> Callable[Concatenate[ReconnectingClient, _P], Coroutine[Any, Any, ReconnectingSubscription[_T]]]:
    """``ReconnectingClient``'s ``subscribe`` or ``psubscribe``: the call is repeated after each reconnect.

    A ``psubscribe`` is renewed as a pattern subscription, so what the
    ``ReconnectingSubscription`` yields (``Event`` objects) stays the same.
    """

    @functools.wraps(method)
    async def subscribe(
        self: ReconnectingClient, /, *args: _P.args, **kwargs: _P.kwargs
    ) -> ReconnectingSubscription[_T]:
        # The call is kept whole, method, arguments and all, and repeated after
        # each reconnect: whatever options subscribe grows, a renewal asks the same.
        return await self._subscribe(lambda client: method(client, *args, **kwargs))

    return _renamed(subscribe, "returns a ``ReconnectingSubscription``, renewed after every reconnect")


def _renamed(function: _F, note: str) -> _F:
    # functools.wraps copied Client's names; tracebacks should say whose method this is.
    function.__qualname__ = f"ReconnectingClient.{function.__name__}"
    function.__doc__ = (
        f"{(function.__doc__ or '').rstrip()}\n\n"
        f"        On a ``ReconnectingClient``: {note}.\n"
    )
    return function
