"""A server process for the fault tests: TCP on a free port, stats on request.

    python hardening_server.py CLIENT_ID...

Prints ``listening on tcp://HOST:PORT`` once serving.  On SIGUSR1 it collects garbage and
prints one JSON line of stats (open connections, what the broker holds, its own RSS).
SIGTERM shuts it down in order (exit status 0).
"""

from __future__ import annotations

import gc
import signal
import sys
from pathlib import Path

import orjson
import trio

from pubsub_rpc import ClientInfo
from transports import Server, tcp


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def main(client_ids: list[str]) -> None:
    adapter = tcp.Adapter("127.0.0.1", 0)
    server = Server([adapter])
    for client_id in client_ids:
        server.register_client(ClientInfo(client_id))
    with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print(f"listening on {adapter.url}", flush=True)
            async for signum in signals:
                if signum == signal.SIGTERM:
                    await server.aclose()
                    break
                gc.collect()
                stats = {
                    "connections": server.connection_count,
                    "broker_connections": server.broker.connections_held,
                    "subscriptions": server.broker.subscription_count,
                    "published": server.broker.events_published,
                    "rss_kib": rss_kib(),
                }
                print(orjson.dumps(stats).decode(), flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
