"""Reconnecting clients against scripted fake servers on real loopback sockets: a server that
accepts, answers and drops at once (it must back off and give up, not be retried forever), and
values that arrive with a renewal's answer when the earlier connections' values fill the buffer.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
from reconnect_helpers import FAST, SUBSCRIBER, Gaps, answer, event
from transport_helpers import wait_until

from pubsub_rpc import FrameDecoder
from transports import ReconnectFailedError, ReconnectingClient, SubscriptionOverflowError, reconnecting, tcp
from transports._reconnect import backoff_delay

Handler = Callable[[int, trio.SocketStream], Awaitable[None]]


async def fake_server(nursery: trio.Nursery, handler: Handler) -> tuple[int, list[int]]:
    """Serve ``handler(index, stream)`` for each connection on a loopback port; the port and the indexes."""
    connections: list[int] = []

    async def serve_one(stream: trio.SocketStream) -> None:
        index = len(connections)
        connections.append(index)
        # A client closing first is no failure of the fake server.
        with contextlib.suppress(trio.BrokenResourceError):
            await handler(index, stream)

    listeners = await nursery.start(trio.serve_tcp, serve_one, 0)
    return listeners[0].socket.getsockname()[1], connections


def flapping(held: dict[int, trio.Event]) -> Handler:
    """Answer the ping, then close at once; connection ``n`` in ``held`` first waits for its event."""

    async def handler(index: int, stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        while data := await stream.receive_some(65536):
            for request in decoder.feed(data):
                assert isinstance(request, dict) and request["method"] == "ping", request
                await stream.send_all(answer(request, {}))
                if index in held:
                    await held[index].wait()
                await stream.aclose()
                return

    return handler


def record_backoff(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``failures`` each backoff was computed from, in order (the real delays are still used)."""
    seen: list[int] = []

    def recording(failures: int, initial: float, maximum: float, rng: random.Random) -> float:
        seen.append(failures)
        return backoff_delay(failures, initial, maximum, rng)

    monkeypatch.setattr("transports._reconnect.backoff_delay", recording)
    return seen


async def test_a_server_that_drops_every_connection_at_once_is_backed_off_and_given_up(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    backoffs = record_backoff(monkeypatch)
    port, connections = await fake_server(nursery, flapping({}))
    with trio.fail_after(20):
        connect = partial(tcp.connect, "127.0.0.1", port, client_id=SUBSCRIBER)
        async with reconnecting(connect, max_attempts=4, stable_after=10.0, **FAST) as client:
            await wait_until(lambda: client.closed)
            with pytest.raises(ReconnectFailedError) as caught:
                await client.ping()
    # Every reconnect succeeded, and every one counted as a failure: the backoff grew.
    assert backoffs == [0, 1, 2, 3]
    assert len(connections) == 5 and client.reconnects == 4
    assert caught.value.message.startswith(
        "Gave up reconnecting to the server after 4 failed attempts; the last: the connection was lost "
    )
    assert "seconds after it was made, before it counted as stable (10 seconds): " in caught.value.message


async def test_a_connection_that_stays_up_resets_the_backoff_and_the_count(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    backoffs = record_backoff(monkeypatch)
    release = trio.Event()
    port, connections = await fake_server(nursery, flapping({2: release}))
    with trio.fail_after(20):
        connect = partial(tcp.connect, "127.0.0.1", port, client_id=SUBSCRIBER)
        async with reconnecting(connect, max_attempts=2, stable_after=0.1, **FAST) as client:
            await wait_until(lambda: client.reconnects == 2)  # on the held connection
            await trio.sleep(0.2)  # longer than stable_after: it proved healthy
            release.set()
            await wait_until(lambda: client.closed)
    # The held connection's loss started afresh: two more failures were allowed.
    assert backoffs == [0, 1, 0, 1]
    assert len(connections) == 5 and client.reconnects == 4


async def test_stable_after_defaults_to_a_second_or_initial_delay(nursery: trio.Nursery) -> None:
    connect = partial(tcp.connect, "127.0.0.1", 1, client_id=SUBSCRIBER)
    assert ReconnectingClient(connect).stable_after == 1.0
    assert ReconnectingClient(connect, initial_delay=2.0, max_delay=5.0).stable_after == 2.0
    assert ReconnectingClient(connect, stable_after=0.25).stable_after == 0.25
    with pytest.raises(ValueError, match="stable_after must be positive"):
        reconnecting(connect, stable_after=0)


async def test_values_that_come_with_a_renewal_count_towards_the_one_bound(nursery: trio.Nursery) -> None:
    release = trio.Event()
    unsubscribed: list[str] = []

    async def handler(index: int, stream: trio.SocketStream) -> None:
        # Every subscribe is answered with its values in the same write, so
        # the client has them before the renewal is handed over.
        decoder = FrameDecoder()
        while data := await stream.receive_some(65536):
            for request in decoder.feed(data):
                assert isinstance(request, dict)
                if request["method"] == "subscribe":
                    sid = f"sub-{index}"
                    values = ["a", "b", "c"] if index == 0 else ["d"]
                    result = {"subscription_id": sid, "client_id": SUBSCRIBER}
                    await stream.send_all(
                        answer(request, result) + b"".join(event(sid, "e", v) for v in values)
                    )
                    if index == 0:
                        await release.wait()
                        await stream.aclose()
                        return
                else:
                    if request["method"] == "unsubscribe":
                        unsubscribed.append(request["params"]["subscription_id"])
                    await stream.send_all(answer(request, {}))

    port, _ = await fake_server(nursery, handler)
    gaps = Gaps()
    with trio.fail_after(20):
        connect = partial(tcp.connect, "127.0.0.1", port, client_id=SUBSCRIBER, subscription_buffer=3)
        async with reconnecting(connect, on_gap=gaps, **FAST) as client:
            events = await client.subscribe("e")
            await wait_until(lambda: events.buffered == 3)
            release.set()
            await gaps.wait_for(1)
            # "d" made four unread values: the renewal overflowed and was unsubscribed at once.
            await wait_until(lambda: unsubscribed == ["sub-1"])
            assert events.buffered == 3
            assert [await events.__anext__() for _ in range(4)] == ["a", "b", "c", gaps.seen[0]]
            with pytest.raises(SubscriptionOverflowError, match="more than 3 values were waiting"):
                await events.__anext__()
            assert not events.active
