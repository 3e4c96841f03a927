"""The client commands of ``pubsub-rpc``: publish and subscribe, and what every client command shares.

``subscribe`` prints one JSON line per event a subscription receives (the
shape is ``SUBSCRIBE_DESCRIPTION``); ``publish`` prints the count of
subscriptions reached, or with ``--report`` the whole report as JSON.
Shared: ``--client-id`` (or ``PUBSUB_RPC_CLIENT_ID``, to keep the secret out
of shell history), ``open_url`` for any server URL, and ``UsageError``.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Final

import orjson
import trio

from pubsub_rpc import Pattern, PatternError

from . import tcp, unix, websocket
from ._client import Client
from ._urls import ServerURL, parse_url

#: Where ``--client-id`` may come from instead, to keep it out of shell history.
CLIENT_ID_ENV: Final = "PUBSUB_RPC_CLIENT_ID"
#: What a client command's URL may be.
URL_HELP: Final = "tcp://HOST:PORT, tls://HOST:PORT, unix:///PATH, ws://HOST:PORT/ or wss://..."
#: What ``subscribe`` prints (its ``--help`` and the README say the same).
SUBSCRIBE_DESCRIPTION: Final = (
    "Subscribe to each EVENT (an exact name) and each --pattern, and print every event received "
    'as one JSON line: {"event_name": NAME, "value": VALUE} for an EVENT, and '
    '{"event_name": NAME, "value": VALUE, "pattern": PATTERN} for a pattern, where NAME is the '
    "name the event was published under and PATTERN the --pattern that matched it. An event that "
    "several of these subscriptions receive is printed once for each. Patterns: * is one segment, "
    "> the rest; segments are separated by . and ::."
)
#: What ``publish`` prints.
PUBLISH_DESCRIPTION: Final = (
    "Publish one event and print how many subscriptions it reached (subscriptions of the same "
    'client id are left out unless --include-self). With --report, print {"listeners": N, '
    '"delivered": N, "dropped": N} as one JSON line instead: delivered counts the deliveries queued '
    "on the server, dropped those refused because the subscriber was being cut off as too slow."
)


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


def add_url_and_client_id(command: argparse.ArgumentParser) -> None:
    """The URL argument and ``--client-id`` option every client command takes."""
    command.add_argument("url", metavar="URL", help=URL_HELP)
    command.add_argument("--client-id", metavar="ID", help=f"or set {CLIENT_ID_ENV}")


def client_id_from(args: argparse.Namespace) -> str:
    """The ``--client-id`` option, or the environment variable; ``UsageError`` if neither."""
    client_id = args.client_id or os.environ.get(CLIENT_ID_ENV, "")
    if not client_id:
        raise UsageError(f"give --client-id ID or set {CLIENT_ID_ENV}")
    return str(client_id)


@asynccontextmanager
async def open_url(url: ServerURL, client_id: str | None, *, timeout: float = 10.0) -> AsyncIterator[Client]:
    """Connect a ``Client`` to a server URL."""
    if url.scheme == "unix":
        async with unix.connect(url.path, client_id=client_id, request_timeout=timeout) as client:
            yield client
    elif url.scheme in ("ws", "wss"):
        async with websocket.connect(str(url), client_id=client_id, request_timeout=timeout) as client:
            yield client
    else:
        context = ssl.create_default_context() if url.scheme == "tls" else None
        async with tcp.connect(
            url.host, url.port, client_id=client_id, ssl_context=context, request_timeout=timeout
        ) as client:
            yield client


def _parse_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"the value is not valid JSON ({exc})") from None


def _cmd_publish(args: argparse.Namespace) -> int:
    url = parse_url(args.url)
    value = _parse_value(args.value if args.value is not None else sys.stdin.read())

    client_id = client_id_from(args)

    async def run() -> str:
        async with open_url(url, client_id) as client:
            exclude_self = not args.include_self
            if not args.report:
                return str(await client.publish(args.event, value, exclude_self=exclude_self))
            result = await client.publish(args.event, value, exclude_self=exclude_self, report=True)
            counts = {"listeners": result.listeners, "delivered": result.delivered, "dropped": result.dropped}
            return orjson.dumps(counts).decode()

    print(trio.run(run), flush=True)
    return 0


def _checked_patterns(patterns: list[str]) -> list[str]:
    # Checked before connecting: a typo is a usage error, not a server's refusal.
    for pattern in patterns:
        try:
            Pattern.parse(pattern)
        except PatternError as exc:
            raise UsageError(f"--pattern: {exc}") from None
    return patterns


def _cmd_subscribe(args: argparse.Namespace) -> int:
    url = parse_url(args.url)
    client_id = client_id_from(args)
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    patterns = _checked_patterns(args.patterns or [])
    if not args.events and not patterns:
        raise UsageError("give at least one EVENT or --pattern PATTERN")

    async def pump(client: Client, event_name: str, send: trio.MemorySendChannel[bytes]) -> None:
        # A synchronous close: an awaited one is a checkpoint where a
        # cancellation could replace (and so hide) a subscribe error.
        try:
            async with await client.subscribe(event_name) as subscription:
                async for value in subscription:
                    await send.send(orjson.dumps({"event_name": event_name, "value": value}))
        finally:
            send.close()

    async def pump_pattern(client: Client, pattern: str, send: trio.MemorySendChannel[bytes]) -> None:
        try:
            async with await client.psubscribe(pattern) as subscription:
                async for event in subscription:
                    line = {"event_name": event.event_name, "value": event.value, "pattern": pattern}
                    await send.send(orjson.dumps(line))
        finally:
            send.close()

    async def run() -> None:
        async with open_url(url, client_id) as client, trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[bytes](64)
            with send:
                for event_name in args.events:
                    nursery.start_soon(pump, client, event_name, send.clone())
                for pattern in patterns:
                    nursery.start_soon(pump_pattern, client, pattern, send.clone())
            seen = 0
            # Ends early when every subscription has ended (their errors then
            # propagate from the nursery), or after --count events.
            async for line in receive:
                sys.stdout.buffer.write(line + b"\n")
                sys.stdout.flush()
                seen += 1
                if args.count is not None and seen >= args.count:
                    nursery.cancel_scope.cancel()
                    break

    with suppress(KeyboardInterrupt):
        trio.run(run)
    return 0


def add_client_parsers(commands: Any) -> None:
    """Add ``publish`` and ``subscribe`` to the ``pubsub-rpc`` subcommands."""
    publish = commands.add_parser("publish", help="publish one event", description=PUBLISH_DESCRIPTION)
    add_url_and_client_id(publish)
    publish.add_argument("event", metavar="EVENT")
    publish.add_argument("value", metavar="VALUE_JSON", nargs="?", help="default: read from stdin")
    publish.add_argument(
        "--include-self",
        action="store_true",
        help="deliver to this client id's own subscriptions too (exclude_self false)",
    )
    publish.add_argument(
        "--report",
        action="store_true",
        help="print listeners, delivered and dropped as one JSON line instead of the count",
    )
    publish.set_defaults(handler=_cmd_publish)

    subscribe = commands.add_parser(
        "subscribe", help="print events as JSON lines", description=SUBSCRIBE_DESCRIPTION
    )
    add_url_and_client_id(subscribe)
    subscribe.add_argument("events", metavar="EVENT", nargs="*", help="an exact event name")
    subscribe.add_argument(
        "--pattern",
        dest="patterns",
        action="append",
        metavar="PATTERN",
        help="also subscribe to every name PATTERN matches (as in user.>); repeatable",
    )
    subscribe.add_argument("--count", type=int, metavar="N", help="exit after N events")
    subscribe.set_defaults(handler=_cmd_subscribe)
