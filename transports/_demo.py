"""``pubsub-rpc demo``: a server, a subscriber and a publisher, all in one process.

Nothing to install or configure: it registers two generated client ids (one
may only subscribe, one may only publish), serves them on a TCP port chosen by
the OS on 127.0.0.1, and shows a few events flowing over real sockets.
"""

from __future__ import annotations

import secrets
import sys

import trio

from pubsub_rpc import ClientInfo, RequestError

from . import tcp
from ._server import Server


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(events: int = 5) -> None:
    """Run the demo; prints what happens, returns when every event arrived."""
    watcher_id = "demo-watcher-" + secrets.token_urlsafe(12)
    publisher_id = "demo-publisher-" + secrets.token_urlsafe(12)
    adapter = tcp.Adapter("127.0.0.1", 0)
    server = Server([adapter])
    server.register_client(ClientInfo(watcher_id, can_publish=False))
    server.register_client(ClientInfo(publisher_id, can_subscribe=False))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            _say(f"server   listening on {adapter.url} with 2 registered clients")
            async with (
                tcp.connect("127.0.0.1", adapter.port, client_id=watcher_id) as watcher,
                tcp.connect("127.0.0.1", adapter.port, client_id=publisher_id) as publisher,
                await watcher.subscribe("user::logged_in") as logins,
            ):
                _say("watcher  subscribed to 'user::logged_in' (it may not publish)")
                for number in range(1, events + 1):
                    user = {"user": f"user{number}", "seq": number}
                    listeners = await publisher.publish("user::logged_in", user)
                    _say(f"publisher sent {user} -> {listeners} listener(s)")
                    value = await anext(logins)
                    _say(f"watcher  received {value}")
                try:
                    await watcher.publish("user::logged_in", {"user": "mallory"})
                except RequestError as refused:
                    _say(f"watcher  tried to publish and was refused: {refused.message}")
            await server.aclose()
            _say("server   closed; demo finished")
    sys.stdout.flush()
