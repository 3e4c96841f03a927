"""The ``serve`` options that join a server to others through Redis (``--redis``, ``--redis-prefix``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pubsub_rpc import Broker

from ._redis_wire import DEFAULT_PREFIX
from ._urls import BadURLError

if TYPE_CHECKING:
    from ._redis_bridge import RedisBridge

_SCHEMES = ("redis", "rediss", "unix")


def add_redis_options(serve: argparse.ArgumentParser) -> None:
    """Add ``--redis`` and ``--redis-prefix`` to the ``serve`` parser."""
    group = serve.add_argument_group("several servers")
    group.add_argument(
        "--redis",
        metavar="URL",
        help="share events with every server on this Redis: redis://[:PASSWORD@]HOST:PORT/DB, "
        "rediss://... for TLS, unix:///PATH",
    )
    group.add_argument(
        "--redis-prefix",
        metavar="P",
        default=DEFAULT_PREFIX,
        help=f"channel prefix; servers share events only with the same prefix (default: {DEFAULT_PREFIX})",
    )


def bridge_from_args(args: argparse.Namespace, broker: Broker) -> RedisBridge | None:
    """The bridge ``--redis`` asks for, or None; ``BadURLError`` for a URL coredis cannot use."""
    url: str | None = args.redis
    if url is None:
        if args.redis_prefix != DEFAULT_PREFIX:
            raise BadURLError("--redis-prefix goes with --redis")
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadURLError("--redis: not a URL (redis://HOST:PORT/DB)") from None
    # The message never repeats the URL: it may hold a password.
    if parts.scheme not in _SCHEMES:
        raise BadURLError("--redis: the URL must start with redis://, rediss:// or unix://")
    if parts.scheme != "unix" and not parts.hostname:
        raise BadURLError("--redis: the URL has no host")
    if port == 0:
        raise BadURLError("--redis: port 0 is not a Redis server")
    if not args.redis_prefix:
        raise BadURLError("--redis-prefix must not be empty")
    # Imported here: coredis costs every other command a third of a second to load.
    from ._redis_bridge import RedisBridge

    return RedisBridge(broker, url, prefix=args.redis_prefix)
