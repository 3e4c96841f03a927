"""The ``serve`` options that join a server to others through Redis, and TLS to Redis.

``--redis``, ``--redis-prefix`` and ``--redis-ca``.  A ``rediss://`` URL
gets a TLS context of ours (``tls_context``) rather than coredis's default,
which does not check the server's host name: ours verifies the certificate
against the system's authorities, or the CA file given, and the host name.
"""

from __future__ import annotations

import argparse
import ssl
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

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
    group.add_argument(
        "--redis-ca",
        metavar="FILE",
        help="with rediss://: the CA certificate(s) Redis's certificate must chain to "
        "(default: the system's); the host name is checked too",
    )


def tls_context(url: str, ca_file: str | None = None) -> ssl.SSLContext | None:
    """The TLS context for a ``rediss://`` URL; None for other schemes.

    The certificate must chain to ``ca_file`` (else the URL's
    ``ssl_ca_certs``, else the system's authorities) and name the URL's
    host.  ``ssl_certfile`` and ``ssl_keyfile`` in the URL give a client
    certificate, for a Redis that asks for one (``tls-auth-clients``);
    ``ssl_check_hostname=false`` turns the host-name check off.
    ``BadURLError`` when a file cannot be used.
    """
    parts = urlsplit(url)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    if parts.scheme != "rediss":
        if ca_file is not None:
            raise BadURLError("--redis-ca goes with a rediss:// URL")
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file or query.get("ssl_ca_certs"))
        if "ssl_certfile" in query:
            context.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile"))
    except (OSError, ssl.SSLError) as exc:
        # The file names are the operator's own; the URL (maybe a password) is not repeated.
        raise BadURLError(f"--redis: cannot use the TLS files: {exc}") from None
    if query.get("ssl_check_hostname", "").lower() in ("false", "0", "no"):
        context.check_hostname = False
    return context


def bridge_from_args(args: argparse.Namespace, broker: Broker) -> RedisBridge | None:
    """The bridge ``--redis`` asks for, or None; ``BadURLError`` for a URL coredis cannot use."""
    url: str | None = args.redis
    ca_file: str | None = getattr(args, "redis_ca", None)
    if url is None:
        if args.redis_prefix != DEFAULT_PREFIX or ca_file is not None:
            raise BadURLError("--redis-prefix and --redis-ca go with --redis")
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

    return RedisBridge(broker, url, prefix=args.redis_prefix, ssl_context=tls_context(url, ca_file))
