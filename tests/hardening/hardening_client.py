"""A client process for the fault tests, to be killed with SIGKILL mid-traffic.

python hardening_client.py subscribe PORT CLIENT_ID EVENT
    prints "ready", then each value received, one per line
python hardening_client.py publish PORT CLIENT_ID EVENT
    prints "ready", then publishes 0, 1, 2, ... without pause, printing each
    number once its publish is answered
"""

from __future__ import annotations

import sys

import trio

from transports import tcp


async def main(role: str, port: int, client_id: str, event_name: str) -> None:
    async with tcp.connect("127.0.0.1", port, client_id=client_id) as client:
        if role == "subscribe":
            async with await client.subscribe(event_name) as values:
                print("ready", flush=True)
                async for value in values:
                    print(value, flush=True)
        else:
            print("ready", flush=True)
            seq = 0
            while True:
                await client.publish(event_name, seq)
                print(seq, flush=True)
                seq += 1


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
