"""What the broker stores and talks to: ``Subscription``, ``Subscriber`` and ``Backplane``.

Kept apart from the broker's operations (``_broker``) so that a bridge or a
connection can be written against these three without reading the broker.
"""

from __future__ import annotations

from typing import Protocol

from ._patterns import Pattern
from ._registry import Party
from ._rules import Rule
from ._wire import EncodedEvent, subscription_tail

__all__ = ["Backplane", "Subscriber", "Subscription"]


class Subscriber(Party, Protocol):
    """What the broker needs from a connection (``trusted``, from ``Party``, and this)."""

    def push_event(self, event: EncodedEvent, subscription: Subscription) -> bool:
        """Queue one event for this connection; False if it takes no more events.

        Must not block or raise.  A connection that is closing (a slow
        consumer cut off during this very publish) answers False, so the
        publisher's ``listeners`` counts only deliveries actually queued.
        """


class Backplane(Protocol):
    """What the broker tells a bridge to other servers (the Redis bridge in ``transports``).

    Every method is called synchronously from the broker's operations, so it
    must not block or raise: a bridge queues what it has to send and deals
    with its network on its own time.
    """

    def subscription_added(self, subscription: Subscription) -> None:
        """A subscription was stored (also called for each one alive when attached).

        It may be a pattern subscription: see ``Subscription.pattern``.
        """

    def subscription_removed(self, subscription: Subscription) -> None:
        """A subscription is gone (unsubscribed, or its connection closed)."""

    def forward(self, event: EncodedEvent, exclude_client_id: str | None) -> int | None:
        """Send a locally published event to the other servers.

        ``exclude_client_id`` is the id whose subscriptions must not receive
        it (the publisher's; None when it published with ``exclude_self``
        false).  Returns how many subscriptions on other servers
        it is expected to reach, for ``listeners``; ``None`` if the other
        servers cannot be reached now, which the publish answer then says
        with ``"forwarded": false``.
        """


class Subscription:
    """One stored subscription (internal, mutable, owned by the broker).

    ``pattern`` is None for a subscription to exactly ``event_name``.  For a
    pattern subscription it is the parsed ``Pattern`` and ``event_name`` is
    the pattern's text, which is **not** an event name: a backplane that
    receives subscriptions through ``subscription_added``/``removed`` must
    look at ``pattern`` (e.g. to subscribe to a pattern channel, or to every
    name) instead of treating ``event_name`` as a channel.  ``filter`` is the
    owner's subscribe rule when a pattern could match names the owner may
    not receive (checked per delivery), else None.
    """

    # Slots are laid out in this order: the four every delivery reads come
    # first, so they share the object's first cache line.
    __slots__ = (  # noqa: RUF023
        "client_id",
        "connection",
        "tail",
        "tail_newline",
        "event_name",
        "filter",
        "id",
        "pattern",
        "sequence",
    )

    def __init__(
        self,
        subscription_id: str,
        event_name: str,
        client_id: str,
        connection: Subscriber,
        *,
        pattern: Pattern | None = None,
        filter: Rule | None = None,
        sequence: int = 0,
    ) -> None:
        self.id = subscription_id
        self.event_name = event_name
        self.client_id = client_id
        self.connection = connection
        #: The parsed pattern of a pattern subscription; None for an exact name.
        self.pattern = pattern
        #: The rule deliveries to this pattern subscription must pass; None: all pass.
        self.filter = filter
        #: Order of creation, which is delivery order among pattern subscriptions.
        self.sequence = sequence
        #: End of the event body for this subscription, and the same plus the
        #: newline delimiter, so newline-framed delivery is two list appends.
        self.tail = subscription_tail(subscription_id)
        self.tail_newline = self.tail + b"\n"

    def __repr__(self) -> str:
        kind = "pattern" if self.pattern is not None else "to"
        return f"<Subscription {self.id} {kind} {self.event_name!r}>"
