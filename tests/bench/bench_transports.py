"""Benchmark of the trio transports over real TCP on loopback.

Two measurements:

* latency: one TCP client publishes, another receives; one event in flight at
  a time; the time from starting the publish to the value arriving at the
  subscriber, p50 and p99 over 5,000 events;
* fan-out: one publisher (64 publishes in flight) to 10 subscribers; events
  delivered per second, all subscribers together, from the first publish to
  the last delivery.

The server runs in a child process by default (the clients and the server
then have a core each); ``--same-process`` runs it in the benchmark's own
trio.run (one core for everything).

    python tests/bench/bench_transports.py [--events 5000] [--fanout-events 20000] [--same-process]

Not a test: figures go in closing notes, never into assertions.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from pubsub_rpc import ClientInfo
from transports import Server, tcp

SUBSCRIBERS = 10
IN_FLIGHT = 64
VALUE = {"seq": 0, "src": "bench", "pad": "x" * 60}  # about 100 bytes of JSON


def make_server(port: int = 0) -> tuple[Server, tcp.Adapter]:
    adapter = tcp.Adapter("127.0.0.1", port)
    server = Server([adapter])
    server.register_client(ClientInfo("publisher"))
    for number in range(SUBSCRIBERS):
        server.register_client(ClientInfo(f"subscriber{number}"))
    return server, adapter


async def serve_forever() -> None:
    """Child-process mode: serve, print the port, run until stdin closes."""
    server, adapter = make_server()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        print(adapter.port, flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        await server.aclose()


@asynccontextmanager
async def server_port(same_process: bool) -> AsyncIterator[int]:
    if same_process:
        server, adapter = make_server()
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            yield adapter.port
            await server.aclose()
        return
    root = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": root, "PATH": ""},
    )
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())
    try:
        yield port
    finally:
        child.stdin.close()
        child.wait(10)


async def latency(port: int, events: int) -> list[float]:
    """Microseconds from publish to delivery, one event in flight."""
    samples: list[float] = []
    async with (
        tcp.connect("127.0.0.1", port, client_id="publisher") as publisher,
        tcp.connect("127.0.0.1", port, client_id="subscriber0") as subscriber,
        await subscriber.subscribe("bench.latency") as values,
        trio.open_nursery() as nursery,
    ):
        go_send, go_receive = trio.open_memory_channel[int](1)

        async def publish_on_demand() -> None:
            async for seq in go_receive:
                await publisher.publish("bench.latency", seq)

        nursery.start_soon(publish_on_demand)
        for seq in range(events + 100):
            start = time.perf_counter()
            go_send.send_nowait(seq)
            value = await values.__anext__()
            elapsed = time.perf_counter() - start
            assert value == seq
            if seq >= 100:  # warm-up excluded
                samples.append(elapsed * 1e6)
        await go_send.aclose()
    return samples


async def fanout(port: int, events: int) -> float:
    """Delivered events per second, one publisher to SUBSCRIBERS subscribers."""
    async with trio.open_nursery() as nursery:
        ready = trio.Semaphore(0)
        done = trio.Semaphore(0)

        async def subscriber(number: int) -> None:
            async with tcp.connect(
                "127.0.0.1", port, client_id=f"subscriber{number}", subscription_buffer=events
            ) as client:
                values = await client.subscribe("bench.fanout")
                ready.release()
                count = 0
                async for _ in values:
                    count += 1
                    if count == events:
                        break
                done.release()

        for number in range(SUBSCRIBERS):
            nursery.start_soon(subscriber, number)
        for _ in range(SUBSCRIBERS):
            await ready.acquire()
        async with tcp.connect("127.0.0.1", port, client_id="publisher") as publisher:
            start = time.perf_counter()

            async def publish_share(share: int) -> None:
                for _ in range(share):
                    await publisher.publish("bench.fanout", VALUE)

            async with trio.open_nursery() as publishers:
                for task in range(IN_FLIGHT):
                    share = events // IN_FLIGHT + (1 if task < events % IN_FLIGHT else 0)
                    publishers.start_soon(publish_share, share)
            for _ in range(SUBSCRIBERS):
                await done.acquire()
            elapsed = time.perf_counter() - start
    return SUBSCRIBERS * events / elapsed


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(arguments: argparse.Namespace) -> None:
    where = "same process" if arguments.same_process else "server in a child process"
    async with server_port(arguments.same_process) as port:
        samples = await latency(port, arguments.events)
        print(
            f"latency ({where}, {len(samples)} events, one in flight): "
            f"p50 {statistics.median(samples):.0f} us, p99 {percentile(samples, 0.99):.0f} us, "
            f"mean {statistics.fmean(samples):.0f} us"
        )
        rate = await fanout(port, arguments.fanout_events)
        print(
            f"fan-out ({where}, 1 publisher -> {SUBSCRIBERS} subscribers, "
            f"{arguments.fanout_events} publishes, {IN_FLIGHT} in flight): {rate:,.0f} delivered events/s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--fanout-events", type=int, default=20000)
    parser.add_argument("--same-process", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve_forever)
    else:
        trio.run(main, args)
