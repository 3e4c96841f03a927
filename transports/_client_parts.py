"""What ``Client`` (``_client``) is built from: the protocol object it drives, and its waiters."""

from __future__ import annotations

from typing import Any, Protocol

import trio

from pubsub_rpc import ClientEvent, RequestFailed, RequestSucceeded

from ._subscription import _Feed


class ClientProtocol(Protocol):
    """What ``Client`` needs from a sans-IO client connection (both flavours have it)."""

    @property
    def client_id(self) -> str | None: ...
    def publish(
        self, event_name: str, value: Any, *, exclude_self: bool = ..., report: bool = ...
    ) -> tuple[int, Any]: ...
    def subscribe(self, event_name: str) -> tuple[int, Any]: ...
    def psubscribe(self, pattern: str) -> tuple[int, Any]: ...
    def unsubscribe(self, subscription_id: str) -> tuple[int, Any]: ...
    def ping(self) -> tuple[int, Any]: ...
    def stats(self) -> tuple[int, Any]: ...
    def forget(self, key: int) -> None: ...
    def receive_data(self, data: Any) -> list[ClientEvent]: ...
    def receive_eof(self, reason: str) -> list[ClientEvent]: ...
    @property
    def error(self) -> str | None: ...


class Waiter:
    """A request awaiting its answer, and for a subscribe the subscription made for it."""

    __slots__ = ("done", "event_name", "outcome", "pattern", "subscription")

    def __init__(self, event_name: str | None, *, pattern: bool = False) -> None:
        self.done = trio.Event()
        self.outcome: RequestSucceeded | RequestFailed | None = None
        # For subscribe: the Subscription is made by the reader the moment the
        # answer arrives, so events right behind the answer are not lost.
        self.event_name = event_name
        self.pattern = pattern
        self.subscription: _Feed[Any] | None = None
