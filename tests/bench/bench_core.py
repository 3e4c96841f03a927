"""Benchmark of the sans-IO core alone: bytes in -> bytes out, no sockets.

One publisher connection feeds pipelined ``publish`` frames (100-byte JSON
values, 64 KiB chunks) into a ``ServerConnection``; 1, 10 or 100 subscriber
connections each drain their output after every chunk, as a transport's
writer would.  Prints publishes/s and delivered events/s, median of the
repetitions (CPU time of this process, so other load on the machine matters
less).

    python tests/bench/bench_core.py [--publishes N] [--repeat R]

Not a test: figures go in closing notes, never into assertions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from pubsub_rpc import Broker, ClientInfo, ServerConnection

CHUNK = 64 * 1024


def payload(seq: int) -> dict[str, object]:
    """A JSON object of exactly 100 bytes, as BENCH.md's workloads use."""
    base = {"seq": seq, "ts": 1_000_000_000_000_000_000, "src": "bench", "pad": ""}
    pad = 100 - len(orjson.dumps(base))
    base["pad"] = "x" * pad
    return base


def frames(count: int, dialect: str) -> list[bytes]:
    """Pre-built publish frames, joined into ~64 KiB chunks."""
    lines = []
    for seq in range(count):
        params = {"client_id": "publisher", "event_name": "bench.w1", "value": payload(seq)}
        message: dict[str, object] = {"jsonrpc": "2.0", "method": "publish", "params": params}
        if dialect == "request":
            message["id"] = seq
        lines.append(orjson.dumps(message) + b"\n")
    chunks, current, size = [], [], 0
    for line in lines:
        current.append(line)
        size += len(line)
        if size >= CHUNK:
            chunks.append(b"".join(current))
            current, size = [], 0
    if current:
        chunks.append(b"".join(current))
    return chunks


def run_once(subscribers: int, publishes: int, dialect: str) -> tuple[float, int]:
    """Returns (CPU seconds, bytes delivered) for one run."""
    broker = Broker()
    broker.register_client(ClientInfo("publisher"))
    broker.register_client(ClientInfo("subscriber"))
    broker.start()
    subs = [ServerConnection(broker) for _ in range(subscribers)]
    subscribe = b'{"jsonrpc":"2.0","method":"subscribe","params":{"client_id":"subscriber","event_name":"bench.w1"},"id":0}\n'
    for sub in subs:
        sub.receive_data(subscribe)
        sub.data_to_send()
    publisher = ServerConnection(broker, max_outbound=1 << 40)
    chunks = frames(publishes, dialect)
    delivered = 0
    start = time.process_time()
    for chunk in chunks:
        publisher.receive_data(chunk)
        publisher.data_to_send()
        for sub in subs:
            delivered += len(sub.data_to_send())
    elapsed = time.process_time() - start
    assert broker.events_delivered == publishes * subscribers
    return elapsed, delivered


def main() -> None:
    """Run every cell and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'dialect':<13}{'subs':>5}{'publishes/s':>14}{'delivered/s':>14}   (median of {args.repeat}, CPU time)"
    )
    for dialect in ("request", "notification"):
        for subscribers in (1, 10, 100):
            publishes = max(args.publishes // subscribers, 2_000) if subscribers > 1 else args.publishes
            times = [run_once(subscribers, publishes, dialect)[0] for _ in range(args.repeat)]
            median = statistics.median(times)
            print(
                f"{dialect:<13}{subscribers:>5}{publishes / median:>14,.0f}"
                f"{publishes * subscribers / median:>14,.0f}"
            )


if __name__ == "__main__":
    main()
