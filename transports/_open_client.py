"""Opening a ``Client``: over any trio stream (``open_client``), and running one (``run_client``).

Every byte-stream transport's ``connect`` is ``open_client`` plus opening
its stream; ``ClientOptions`` are the keywords they all pass on unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import trio

from pubsub_rpc import DEFAULT_MAX_FRAME_SIZE, ClientConnection, Dialect, Framing

from ._client import DEFAULT_REQUEST_TIMEOUT, Client
from ._errors import unwrap_single_exception
from ._pump import Link, StreamLink
from ._subscription import DEFAULT_SUBSCRIPTION_BUFFER


@asynccontextmanager
async def run_client(client: Client) -> AsyncIterator[Client]:
    """Run ``client``'s tasks around the body, and close it after.

    An exception from the body is re-raised as itself, not inside an
    ``ExceptionGroup``, so ``except RequestError`` works as written.
    """
    with unwrap_single_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._run)
            try:
                yield client
            finally:
                await client.aclose()


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of ``open_client`` that every ``connect`` passes on unchanged."""

    client_id: str | None
    dialect: Dialect
    framing: Framing
    request_timeout: float
    subscription_buffer: int
    max_frame_size: int
    keepalive: float | None


@asynccontextmanager
async def open_client(
    stream: trio.abc.Stream,
    *,
    client_id: str | None = None,
    dialect: Dialect = Dialect.JSONRPC,
    framing: Framing = Framing.NEWLINE,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    subscription_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    keepalive: float | None = None,
) -> AsyncIterator[Client]:
    """Open a ``Client`` over any ``trio.abc.Stream``; the stream is closed on exit.

    Every byte-stream transport's ``connect`` is this plus opening the
    stream, so a transport of your own needs only a stream::

        async with open_client(await open_my_stream(), client_id="s3cret") as client:
            await client.publish("greeting", "hello")

    ``client_id`` None asks a trusted server for an ad-hoc identity.
    ``dialect`` picks standard JSON-RPC requests (default) or the original
    ``pub_sub`` notifications; ``framing`` newline-delimited JSON (default)
    or ``Content-Length`` headers.  ``keepalive`` (seconds) makes a server
    that dies or hangs noticed within that interval (see ``Client``).
    """
    async with open_link_client(
        StreamLink(stream),
        client_id=client_id,
        dialect=dialect,
        framing=framing,
        request_timeout=request_timeout,
        subscription_buffer=subscription_buffer,
        max_frame_size=max_frame_size,
        keepalive=keepalive,
    ) as client:
        yield client


@asynccontextmanager
async def open_link_client(
    link: Link[bytes, bytes],
    *,
    client_id: str | None,
    dialect: Dialect,
    framing: Framing,
    request_timeout: float,
    subscription_buffer: int,
    max_frame_size: int,
    keepalive: float | None,
) -> AsyncIterator[Client]:
    """Build a ``Client`` over ``link`` (frames of bytes) and run it around the body.

    The one place a byte-framed client meets its protocol state machine:
    ``open_client`` passes a ``StreamLink``, the WebSocket ``connect`` a
    ``WebSocketLink``.
    """
    protocol = ClientConnection(
        client_id=client_id, dialect=dialect, framing=framing, max_frame_size=max_frame_size
    )
    client = Client(
        link,
        protocol,
        join=b"".join,
        request_timeout=request_timeout,
        subscription_buffer=subscription_buffer,
        keepalive=keepalive,
    )
    async with run_client(client):
        yield client
