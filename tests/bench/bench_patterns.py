"""Benchmark of pattern subscriptions in the sans-IO core: publishes/s against 0 to 10,000 patterns.

One publisher connection feeds pipelined ``publish`` requests (100-byte
values, 64 KiB chunks, as bench_core.py) into a ``ServerConnection``; one
subscriber connection holds an exact subscription to the published name and
drains its output after every chunk.  Another connection holds N pattern
subscriptions of mixed shapes (``app17.*``, ``app17.>``, ``*.evt17``,
``app17.*.state``, ``app::17::*::x``, ``*.*.k17``):

* ``miss``: none of them matches the published name, so the figure is the
  cost of consulting the trie on every publish;
* ``hit``: the same plus 4 patterns that do match (``bench.*``, ``bench.>``,
  ``*.*``, ``>``), so each publish is delivered 5 times;
* ``cold``: as ``hit``, but every publish names a different event
  (``bench.<seq>``), so the per-name match cache never helps and every
  publish walks the trie; only the 4 patterns receive (4 deliveries).

The first row (``exact``, no patterns at all) is the path every server
without patterns takes.  Prints publishes/s and delivered events/s, median
of the repetitions (CPU time of this process).

    python tests/bench/bench_patterns.py [--publishes N] [--repeat R]

Not a test: figures go in closing notes, never into assertions.
"""

from __future__ import annotations

import argparse
import statistics
import time

# Run as a script, this directory is on sys.path: reuse bench_core's frames.
import orjson
from bench_core import CHUNK, frames, payload

from pubsub_rpc import Broker, ClientInfo, Pattern, ServerConnection

SHAPES = ("app{i}.*", "app{i}.>", "*.evt{i}", "app{i}.*.state", "app::{i}::*::x", "*.*.k{i}")
MATCHING = ("bench.*", "bench.>", "*.*", ">")


def cold_frames(count: int) -> list[bytes]:
    """Like bench_core.frames (request dialect), but each publish names its own event."""
    lines = [
        orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "publish",
                "params": {"client_id": "publisher", "event_name": f"bench.{seq}", "value": payload(seq)},
                "id": seq,
            }
        )
        + b"\n"
        for seq in range(count)
    ]
    step = max(1, CHUNK // len(lines[0]))
    return [b"".join(lines[i : i + step]) for i in range(0, count, step)]


def run_once(patterns: int, hit: bool, publishes: int, cold: bool = False) -> tuple[float, int]:
    """Returns (CPU seconds, events delivered) for one run."""
    broker = Broker(max_subscriptions=patterns + len(MATCHING) + 1)
    broker.register_client(ClientInfo("publisher"))
    broker.register_client(ClientInfo("subscriber"))
    broker.start()
    exact = ServerConnection(broker)
    exact.receive_data(
        b'{"jsonrpc":"2.0","method":"subscribe","params":{"client_id":"subscriber","event_name":"bench.w1"},"id":0}\n'
    )
    holder = ServerConnection(broker)
    for i in range(patterns):
        broker.subscribe_pattern(holder, "subscriber", Pattern.parse(SHAPES[i % len(SHAPES)].format(i=i)))
    if hit:
        for text in MATCHING:
            broker.subscribe_pattern(holder, "subscriber", Pattern.parse(text))
    exact.data_to_send()
    holder.data_to_send()
    publisher = ServerConnection(broker, max_outbound=1 << 40)
    chunks = cold_frames(publishes) if cold else frames(publishes, "request")
    start = time.process_time()
    for chunk in chunks:
        publisher.receive_data(chunk)
        publisher.data_to_send()
        exact.data_to_send()
        holder.data_to_send()
    elapsed = time.process_time() - start
    expected = publishes * ((0 if cold else 1) + (len(MATCHING) if hit else 0))
    assert broker.events_delivered == expected, (broker.events_delivered, expected)
    return elapsed, expected


def main() -> None:
    """Run every cell and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'case':<7}{'patterns':>9}{'publishes/s':>14}{'delivered/s':>14}   (median of {args.repeat}, CPU time)"
    )
    cells = [("exact", 0, False)]
    cells += [("miss", n, False) for n in (1_000, 10_000)]
    cells += [("hit", n, True) for n in (0, 1_000, 10_000)]
    cells += [("cold", n, True) for n in (0, 1_000, 10_000)]
    for name, patterns, hit in cells:
        runs = [run_once(patterns, hit, args.publishes, name == "cold") for _ in range(args.repeat)]
        median = statistics.median(elapsed for elapsed, _ in runs)
        delivered = runs[0][1]
        print(f"{name:<7}{patterns:>9,}{args.publishes / median:>14,.0f}{delivered / median:>14,.0f}")


if __name__ == "__main__":
    main()
