"""The transport scenarios of tests/transports, run over WebSockets in both dialects.

The test functions and the ``suite`` fixture are the very ones tests/transports
runs over TCP, Unix sockets, pipes and in-process; this directory's conftest
gives them a ``harness`` whose clients connect with ``websocket.connect``.
"""

from __future__ import annotations

from test_transport_client import test_subscription_overflow_policy
from test_transport_disconnect import test_clean_disconnect_removes_subscriptions
from test_transport_lifecycle import test_orderly_shutdown_clients_see_it
from test_transport_scenarios import (
    suite,
    test_can_unsubscribe,
    test_reject_unknown_client_id,
    test_reject_unprivileged_publish,
    test_reject_unprivileged_subscribe,
    test_subscribers_are_not_sent_their_own_events,
    test_subscribers_receive_published_events,
    test_trusted_can_publish,
    test_trusted_can_sub_unsub,
)

__all__ = [
    "suite",
    "test_can_unsubscribe",
    "test_clean_disconnect_removes_subscriptions",
    "test_orderly_shutdown_clients_see_it",
    "test_reject_unknown_client_id",
    "test_reject_unprivileged_publish",
    "test_reject_unprivileged_subscribe",
    "test_subscribers_are_not_sent_their_own_events",
    "test_subscribers_receive_published_events",
    "test_subscription_overflow_policy",
    "test_trusted_can_publish",
    "test_trusted_can_sub_unsub",
]
