"""Reconnecting clients over TCP, Unix sockets and in-process: a server stopped and started again.

Each test restarts a real server at the same address (the same TCP port, the
same socket file, a new in-process adapter) and checks what the application
sees: renewed subscriptions, one ``Gap`` per disconnect in its place, requests
that wait for the reconnect or fail clearly, never one sent twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from reconnect_helpers import FAST, KINDS, PUBLISHER, SUBSCRIBER, Gaps, Restartable
from transport_helpers import wait_until

from pubsub_rpc import ConnectionClosedError, ErrorCode, RequestError
from transports import (
    Gap,
    ReconnectFailedError,
    ReconnectingSubscription,
    Server,
    SubscriptionOverflowError,
    reconnecting,
)

SHUTDOWN = "The server is shutting down."


@pytest.fixture(params=KINDS)
async def restartable(request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery) -> Restartable:
    """A running server over the transport under test, which the test may restart."""
    restartable = Restartable(str(request.param), tmp_path, nursery)
    await restartable.start()
    return restartable


async def restart(restartable: Restartable) -> None:
    await restartable.stop()
    await restartable.start()


async def test_subscriptions_are_renewed_with_one_gap_per_disconnect(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client:
            events = await client.subscribe("e")
            other = await client.subscribe(event_name="other")  # keywords are replayed too
            assert await restartable.publish("e", 1) == 1
            assert await restartable.publish("e", 2) == 1
            await restart(restartable)
            await gaps.wait_for(1)
            assert client.connected and client.reconnects == 1
            # Renewed on the new server before on_gap was called: nothing after it is lost.
            assert await restartable.publish("e", 3) == 1
            assert await restartable.publish("other", "x") == 1
            await restart(restartable)
            await gaps.wait_for(2)
            assert await restartable.publish("e", 4) == 1
            # Read only now: the values from before each disconnect were kept, in order.
            items = [await events.__anext__() for _ in range(6)]
            assert items == [1, 2, gaps.seen[0], 3, gaps.seen[1], 4]
            assert [await other.__anext__() for _ in range(3)] == [gaps.seen[0], "x", gaps.seen[1]]
            assert events.active and events.event_name == "e"
            await events.unsubscribe()
            assert [item async for item in events] == []
        assert client.closed
    first, second = gaps.seen
    assert isinstance(first, Gap) and (first.reconnect_number, first.reason) == (1, SHUTDOWN)
    assert (second.reconnect_number, second.reason) == (2, SHUTDOWN)
    assert first.disconnected_for >= 0 and second.disconnected_for >= 0
    assert restartable.server is not None and restartable.server.broker.subscription_count == 0


async def test_a_request_made_while_disconnected_waits_and_is_sent_once(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(PUBLISHER), on_gap=gaps, **FAST) as client:
            await restartable.stop()
            await wait_until(lambda: not client.connected)
            results: list[int] = []

            async def publish() -> None:
                results.append(await client.publish("e", "while down"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish)
                await trio.sleep(0.05)  # the publish is waiting, not sent, not failed
                assert results == []
                server = await restartable.start()
            assert results == [0]
            assert server.broker.events_published == 1
            assert gaps.seen[0].reconnect_number == 1


async def test_a_request_fails_clearly_when_no_connection_comes_back_in_time(restartable: Restartable) -> None:
    with trio.fail_after(20):
        connect = restartable.connector(PUBLISHER, request_timeout=0.2)
        async with reconnecting(connect, **FAST) as client:
            await restartable.stop()
            await wait_until(lambda: not client.connected)
            with pytest.raises(ConnectionClosedError) as caught:
                await client.publish("e", 1)
            assert caught.value.message == (
                "Not connected: the connection to the server was not re-established within 0.2 seconds, "
                "and the publish request was not sent."
            )
            assert not client.closed  # still trying


async def test_gives_up_after_max_attempts(restartable: Restartable) -> None:
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), max_attempts=3, **FAST) as client:
            events = await client.subscribe("e")
            assert await restartable.publish("e", "before") == 1
            await restartable.stop()  # and never again
            await wait_until(lambda: client.closed)
            # The value from before the loss first, then the end, no Gap.
            assert await events.__anext__() == "before"
            with pytest.raises(ReconnectFailedError) as caught:
                await events.__anext__()
            assert caught.value.message.startswith(
                "Gave up reconnecting to the server after 3 failed attempts; the last: "
            )
            assert not events.active
            with pytest.raises(ReconnectFailedError):
                await client.publish("e", 1)
            with pytest.raises(ReconnectFailedError):
                await client.subscribe("e")
            assert isinstance(caught.value, ConnectionClosedError)
            assert client.reconnects == 0


async def test_aclose_during_backoff_returns_at_once(restartable: Restartable) -> None:
    with trio.fail_after(20):
        slow = {"initial_delay": 1000.0, "max_delay": 1000.0}
        async with reconnecting(restartable.connector(SUBSCRIBER), **slow) as client:
            events = await client.subscribe("e")
            await restartable.stop()
            ended = trio.Event()

            async def read() -> None:
                assert [item async for item in events] == []
                ended.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await wait_until(lambda: not client.connected)
                with trio.fail_after(5):  # a guard: the backoff alone would take minutes
                    await client.aclose()
                    await ended.wait()
            assert client.closed
            with pytest.raises(ConnectionClosedError, match=r"^The client was closed\.$"):
                await client.publish("e", 1)


async def test_cancelling_during_backoff_returns_at_once(restartable: Restartable) -> None:
    with trio.fail_after(20):
        slow = {"initial_delay": 1000.0, "max_delay": 1000.0}
        with trio.CancelScope() as scope:
            async with reconnecting(restartable.connector(SUBSCRIBER), **slow) as client:
                await restartable.stop()
                await wait_until(lambda: not client.connected)
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught and client.closed


async def test_unknown_client_id_on_renewal_ends_the_subscription(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client:
            events = await client.subscribe("e")
            assert await restartable.publish("e", "before") == 1
            await restartable.stop()
            await restartable.start(client_ids=(PUBLISHER,))  # it forgot the subscriber
            await gaps.wait_for(1)
            assert await events.__anext__() == "before"
            with pytest.raises(RequestError) as caught:
                await events.__anext__()
            assert caught.value.code == ErrorCode.UNKNOWN_CLIENT
            assert caught.value.message == f'Unrecognized client ID "{SUBSCRIBER}".'
            assert not events.active
            # It ended that subscription instead of reconnecting over and over.
            await trio.sleep(0.05)
            assert client.reconnects == 1 and client.connected


async def test_unsubscribe_while_disconnected(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client:
            dropped = await client.subscribe("dropped")
            async with await client.subscribe("kept") as kept:
                await restartable.stop()
                await wait_until(lambda: not client.connected)
                await dropped.unsubscribe()  # nothing to tell a server that is gone
                assert not dropped.active
                server = await restartable.start()
                await gaps.wait_for(1)
                assert server.broker.subscription_count == 1
                assert await restartable.publish("dropped", 1) == 0
                assert await restartable.publish("kept", 2) == 1
                assert [await kept.__anext__() for _ in range(2)] == [gaps.seen[0], 2]
            assert [item async for item in dropped] == []
            await wait_until(lambda: server.broker.subscription_count == 0)


async def test_an_overflow_before_a_disconnect_is_not_renewed(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        connect = restartable.connector(SUBSCRIBER, subscription_buffer=2)
        async with reconnecting(connect, on_gap=gaps, **FAST) as client:
            events = await client.subscribe("e")
            for value in range(3):
                await restartable.publish("e", value)
            server = restartable.server
            assert server is not None
            await wait_until(lambda: server.broker.subscription_count == 0)  # overflowed, unsubscribed
            # Overflowed but not read yet when the connection goes: renewing it
            # would only delay the error, so the new server never sees it.
            server = await _restart_and_wait(restartable, gaps)
            assert server.broker.subscription_count == 0
            assert events.buffered == 2
            assert [await events.__anext__() for _ in range(2)] == [0, 1]
            with pytest.raises(SubscriptionOverflowError):
                await events.__anext__()
            assert not events.active
            server = await _restart_and_wait(restartable, gaps)
            assert server.broker.subscription_count == 0


async def test_a_slow_reader_holds_at_most_subscription_buffer_values_across_reconnects(
    restartable: Restartable,
) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        connect = restartable.connector(SUBSCRIBER, subscription_buffer=4)
        async with reconnecting(connect, on_gap=gaps, **FAST) as client:
            events = await client.subscribe("e")
            for value in range(4):
                assert await restartable.publish("e", value) == 1
                await wait_until(lambda: events.buffered == value + 1)  # noqa: B023 (awaited here)
                if value % 2:  # two values from each connection, all unread
                    server = await _restart_and_wait(restartable, gaps)
                    assert server.broker.subscription_count == 1
            # The earlier connections' unread values fill the one bound: a
            # fifth value is an overflow, as it would be on one connection.
            assert await restartable.publish("e", 4) == 1
            await wait_until(lambda: server.broker.subscription_count == 0)
            assert events.buffered == 4
            assert [await events.__anext__() for _ in range(6)] == [0, 1, gaps.seen[0], 2, 3, gaps.seen[1]]
            with pytest.raises(SubscriptionOverflowError, match="more than 4 values were waiting"):
                await events.__anext__()
            assert not events.active
            server = await _restart_and_wait(restartable, gaps)
            assert server.broker.subscription_count == 0


async def test_reading_the_values_from_before_a_reconnect_frees_their_room(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        connect = restartable.connector(SUBSCRIBER, subscription_buffer=4)
        async with reconnecting(connect, on_gap=gaps, **FAST) as client:
            events = await client.subscribe("e")
            for value in range(3):
                assert await restartable.publish("e", value) == 1
            await wait_until(lambda: events.buffered == 3)
            server = await _restart_and_wait(restartable, gaps)
            assert [await events.__anext__() for _ in range(2)] == [0, 1]
            # One old value left: the new connection may hold three, the bound's rest.
            for value in range(3, 6):
                assert await restartable.publish("e", value) == 1
            await wait_until(lambda: events.buffered == 4)
            assert [await events.__anext__() for _ in range(5)] == [2, gaps.seen[0], 3, 4, 5]
            assert events.active and server.broker.subscription_count == 1


async def test_reconnects_with_no_value_between_make_one_gap(restartable: Restartable) -> None:
    gaps = Gaps()
    with trio.fail_after(20):
        async with reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client:
            events = await client.subscribe("e")
            for _ in range(3):
                await _restart_and_wait(restartable, gaps)
            assert await restartable.publish("e", "between") == 1
            await wait_until(lambda: events.buffered == 1)
            for _ in range(2):
                await _restart_and_wait(restartable, gaps)
            first, value, second = [await events.__anext__() for _ in range(3)]
            assert value == "between"
            assert isinstance(first, Gap) and isinstance(second, Gap)
            assert (first.reconnect_number, first.reconnects, first.reason) == (3, 3, SHUTDOWN)
            assert (second.reconnect_number, second.reconnects, second.reason) == (5, 2, SHUTDOWN)
            spans = [gap.disconnected_for for gap in gaps.seen]
            assert first.disconnected_for == pytest.approx(sum(spans[:3]))
            assert second.disconnected_for == pytest.approx(sum(spans[3:]))
            # on_gap still hears of every reconnect, one at a time.
            assert [gap.reconnects for gap in gaps.seen] == [1] * 5
            # A Gap already read is not merged into: the next reconnect has its own.
            await _restart_and_wait(restartable, gaps)
            assert await events.__anext__() == gaps.seen[5]
            assert events.buffered == 0 and events.active


async def _restart_and_wait(restartable: Restartable, gaps: Gaps) -> Server:
    await restart(restartable)
    await gaps.wait_for(len(gaps.seen) + 1)
    assert restartable.server is not None
    return restartable.server


async def test_many_subscriptions_read_live_each_get_one_gap_per_disconnect(restartable: Restartable) -> None:
    gaps = Gaps()
    names = [f"topic-{number}" for number in range(50)]
    seen: dict[str, list[object]] = {name: [] for name in names}

    async def read(events: ReconnectingSubscription) -> None:
        async for item in events:
            seen[events.event_name].append(item)
            if item == "end":
                return

    with trio.fail_after(30):
        async with (
            reconnecting(restartable.connector(SUBSCRIBER), on_gap=gaps, **FAST) as client,
            trio.open_nursery() as readers,
        ):
            for name in names:
                readers.start_soon(read, await client.subscribe(name))
            for step, value in enumerate(["start", "middle", "end"]):
                if step:
                    await _restart_and_wait(restartable, gaps)
                async with restartable.connect(PUBLISHER) as publisher:
                    for name in names:
                        assert await publisher.publish(name, value) == 1
        first, second = gaps.seen
        assert all(items == ["start", first, "middle", second, "end"] for items in seen.values()), seen
        assert client.reconnects == 2
