"""Many clients publishing and subscribing at once: exactly-once, per-publisher order, no echo."""

from __future__ import annotations

from typing import Any

import trio
from transport_helpers import running

from pubsub_rpc import ClientInfo
from transports import Client, Server, tcp

CLIENTS = 50
EVENTS = 200


async def test_fifty_clients_each_publishing_two_hundred_events() -> None:
    adapter = tcp.Adapter("127.0.0.1", 0)
    server = Server([adapter])
    for number in range(CLIENTS):
        server.register_client(ClientInfo(f"client{number}"))
    received: dict[int, list[Any]] = {}
    all_subscribed = trio.Event()
    subscribed = 0

    async def participant(number: int) -> None:
        nonlocal subscribed
        async with tcp.connect("127.0.0.1", adapter.port, client_id=f"client{number}") as client:
            subscription = await client.subscribe("shared")
            subscribed += 1
            if subscribed == CLIENTS:
                all_subscribed.set()
            await all_subscribed.wait()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_all, client, number)
                values = received[number] = []
                async for value in subscription:
                    values.append(value)
                    if len(values) == (CLIENTS - 1) * EVENTS:
                        break

    async def publish_all(client: Client, number: int) -> None:
        for seq in range(EVENTS):
            assert await client.publish("shared", [number, seq]) == CLIENTS - 1

    async with running(server), trio.open_nursery() as nursery:
        for number in range(CLIENTS):
            nursery.start_soon(participant, number)

    expected_order = list(range(EVENTS))
    for number, values in received.items():
        by_publisher: dict[int, list[int]] = {}
        for publisher, seq in values:
            by_publisher.setdefault(publisher, []).append(seq)
        assert number not in by_publisher, "a client received its own event"
        assert sorted(by_publisher) == [other for other in range(CLIENTS) if other != number]
        for seqs in by_publisher.values():
            assert seqs == expected_order  # each exactly once, in the publisher's order
    assert len(received) == CLIENTS
