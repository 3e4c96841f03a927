"""transports: the pub/sub protocol of ``pubsub_rpc`` on real I/O, with trio.

One ``Server`` serves every kind of connection at once, and events cross
between them::

    server = Server([tcp.Adapter("127.0.0.1", 7700), unix.Adapter("/run/app.sock"), inprocess.Adapter()])
    server.register_client(ClientInfo("s3cret-watcher", can_publish=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with tcp.connect("127.0.0.1", 7700, client_id="s3cret-watcher") as client:
            async with await client.subscribe("user::logged_in") as events:
                async for value in events:
                    ...

Transports: ``tcp`` (with optional TLS), ``unix``, ``stdio`` (serve or spawn
a peer over pipes), ``inprocess`` (trio tasks, Python objects), ``websocket``
(ws:// and wss://, for browsers too; it serves a JavaScript client);
``metrics`` serves the server's counters to Prometheus.  Anything
else that is a ``trio.abc.Stream`` works through ``Server.serve_stream`` and
``open_client``; a new kind of listener is an ``Adapter`` subclass.
``reconnecting(connect)`` turns any transport's ``connect`` into a client
that reconnects by itself and renews its subscriptions.
"""

from . import inprocess, metrics, stdio, tcp, unix, websocket
from ._adapter import Adapter
from ._client import DEFAULT_REQUEST_TIMEOUT, Client
from ._errors import ReconnectFailedError, SubscriptionOverflowError
from ._open_client import open_client
from ._reconnect import ReconnectingClient, reconnecting
from ._reconnect_subscription import Gap, ReconnectingSubscription
from ._server import DEFAULT_CLOSE_TIMEOUT, Server
from ._subscription import DEFAULT_SUBSCRIPTION_BUFFER, PatternSubscription, Subscription

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_SUBSCRIPTION_BUFFER",
    "Adapter",
    "Client",
    "Gap",
    "PatternSubscription",
    "ReconnectFailedError",
    "ReconnectingClient",
    "ReconnectingSubscription",
    "Server",
    "Subscription",
    "SubscriptionOverflowError",
    "inprocess",
    "metrics",
    "open_client",
    "reconnecting",
    "stdio",
    "tcp",
    "unix",
    "websocket",
]
