"""The client commands of ``pubsub-rpc``: publish and subscribe, and what every client command shares.

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

from . import tcp, unix, websocket
from ._client import Client
from ._urls import ServerURL, parse_url

#: Where ``--client-id`` may come from instead, to keep it out of shell history.
CLIENT_ID_ENV: Final = "PUBSUB_RPC_CLIENT_ID"
#: What a client command's URL may be.
URL_HELP: Final = "tcp://HOST:PORT, tls://HOST:PORT, unix:///PATH, ws://HOST:PORT/ or wss://..."


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

    async def run() -> int:
        async with open_url(url, client_id_from(args)) as client:
            return await client.publish(args.event, value)

    listeners = trio.run(run)
    print(listeners, flush=True)
    return 0


def _cmd_subscribe(args: argparse.Namespace) -> int:
    url = parse_url(args.url)
    client_id = client_id_from(args)
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")

    async def pump(client: Client, event_name: str, send: trio.MemorySendChannel[bytes]) -> None:
        # A synchronous close: an awaited one is a checkpoint where a
        # cancellation could replace (and so hide) a subscribe error.
        try:
            async with await client.subscribe(event_name) as subscription:
                async for value in subscription:
                    await send.send(orjson.dumps({"event_name": event_name, "value": value}))
        finally:
            send.close()

    async def run() -> None:
        async with open_url(url, client_id) as client, trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[bytes](64)
            with send:
                for event_name in args.events:
                    nursery.start_soon(pump, client, event_name, send.clone())
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
    for name, help_text in (("publish", "publish one event"), ("subscribe", "print events as JSON lines")):
        command = commands.add_parser(name, help=help_text)
        add_url_and_client_id(command)
        if name == "publish":
            command.add_argument("event", metavar="EVENT")
            command.add_argument("value", metavar="VALUE_JSON", nargs="?", help="default: read from stdin")
            command.set_defaults(handler=_cmd_publish)
        else:
            command.add_argument("events", metavar="EVENT", nargs="+")
            command.add_argument("--count", type=int, metavar="N", help="exit after N events")
            command.set_defaults(handler=_cmd_subscribe)
