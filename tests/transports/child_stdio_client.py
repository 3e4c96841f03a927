"""A client program spoken to over its stdin/stdout (run as a subprocess by a test's server).

Usage: child_stdio_client.py CLIENT_ID EVENT

Subscribes to EVENT, publishes "child::ready" (value: EVENT) once
subscribed, then republishes every value it receives as "child::got", until
the server closes the connection.
"""

from __future__ import annotations

import logging
import sys

import trio

from pubsub_rpc import ConnectionClosedError
from transports import stdio


async def main(client_id: str, event: str) -> None:
    async with stdio.connect(client_id=client_id) as client:
        subscription = await client.subscribe(event)
        await client.publish("child::ready", event)
        try:
            async for value in subscription:
                await client.publish("child::got", value)
        except ConnectionClosedError:
            pass


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    trio.run(main, sys.argv[1], sys.argv[2])
