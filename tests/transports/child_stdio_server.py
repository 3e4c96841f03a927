"""A stdio server program for the transport tests (run as a subprocess).

Usage: child_stdio_server.py PREFIX [UNIX_SOCKET_PATH]

Serves its parent over stdin/stdout (trusted), and optionally a Unix socket
so other clients can reach the same broker.  Registers the original test
suite's clients under PREFIX.  Exits when the stdio peer disconnects.
"""

from __future__ import annotations

import logging
import sys

import trio

from pubsub_rpc import ClientInfo
from transports import Adapter, Server, stdio, unix


async def main(prefix: str, socket_path: str | None) -> None:
    adapter = stdio.Adapter(trusted=True)
    adapters: list[Adapter] = []
    if socket_path:
        # First: adapters start in order, and the stdio peer is served as soon
        # as its adapter starts, so the socket is listening before it hears a word.
        adapters.append(unix.Adapter(socket_path, trusted=True))
    adapters.append(adapter)
    server = Server(adapters)
    for name in ("secret", "secret2", "secret3"):
        server.register_client(ClientInfo(prefix + name))
    server.register_client(ClientInfo(prefix + "no_publish", can_publish=False))
    server.register_client(ClientInfo(prefix + "no_subscribe", can_subscribe=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        await adapter.wait_disconnected()
        await server.aclose()


if __name__ == "__main__":
    # stdout is the protocol: logs go to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    trio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
