"""The HTTP in front of the WebSocket adapter: read one request head, then upgrade or answer.

trio-websocket's server answers anything that is not a WebSocket handshake
with a bare 400, so it cannot serve ``/client.js``.  The adapter therefore
reads the request head itself, and either

* hands the connection to trio-websocket, replaying the bytes it read
  (``ReplayStream``), when the request asks for a WebSocket upgrade from an
  allowed origin; or
* answers a plain ``GET``/``HEAD`` of a known file (``/client.js``) with 200,
  anything else with 403 / 404 / 405 / 400, one request per connection.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

import trio

#: The request head (request line and headers) may not be longer than this.
MAX_HEAD: Final = 16 * 1024
_HEAD_END: Final = b"\r\n\r\n"
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
}


@cache
def client_js() -> bytes:
    """The JavaScript client shipped in this package (``transports/static/client.js``)."""
    return resources.files("transports").joinpath("static", "client.js").read_bytes()


def content_type(path: str) -> str:
    """The Content-Type a served file gets, from its name."""
    if path.endswith((".js", ".mjs")):
        return "text/javascript; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def normalise_origin(origin: str) -> str:
    """An origin as compared: lower case, no trailing slash."""
    return origin.strip().rstrip("/").lower()


class BadRequest(Exception):
    """The request head cannot be understood: answered with 400."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the adapter needs of an HTTP request: method, path, headers (names lower case)."""

    method: str
    target: str
    headers: Mapping[str, str]

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.partition("?")[0]

    def tokens(self, name: str) -> set[str]:
        """A comma-separated header's tokens, lower case."""
        return {token.strip().lower() for token in self.headers.get(name, "").split(",")}

    @property
    def wants_websocket(self) -> bool:
        """Whether this is a request to upgrade to a WebSocket."""
        return "websocket" in self.tokens("upgrade")


def parse_head(head: bytes) -> RequestHead:
    """Parse a request head (without the blank line); raises ``BadRequest``."""
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise BadRequest("malformed request line") from None
    if not version.startswith("HTTP/1.") or not target.startswith("/"):
        raise BadRequest("unsupported request line")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest("malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return RequestHead(method, target, headers)


async def read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes] | None:
    """Read up to the end of the request head: ``(head, everything read)``.

    ``None`` if the peer closed first or the head is longer than ``MAX_HEAD``.
    The caller bounds the time.
    """
    buffer = bytearray()
    searched = 0
    while True:
        end = buffer.find(_HEAD_END, max(searched - 3, 0))
        if end >= 0:
            return bytes(buffer[:end]), bytes(buffer)
        if len(buffer) > MAX_HEAD:
            return None
        searched = len(buffer)
        data = await stream.receive_some(4096)
        if not data:
            return None
        buffer += data


def handshake_problem(head: RequestHead) -> tuple[int, str] | None:
    """Why an upgrade request cannot be a WebSocket handshake (status, text), or None."""
    if head.method != "GET":
        return 405, "A WebSocket handshake is a GET request.\n"
    if "upgrade" not in head.tokens("connection") or not head.headers.get("sec-websocket-key"):
        return 400, "Incomplete WebSocket handshake.\n"
    if head.headers.get("sec-websocket-version") != "13":
        return 426, "Only WebSocket version 13 is supported.\n"
    return None


def origin_allowed(head: RequestHead, allowed: frozenset[str] | None) -> bool:
    """Whether a handshake's Origin passes the allowed list.

    No list allows everything.  A request without an Origin header is not
    from a browser page (browsers always send one), so it is not the
    cross-site attack the list guards against, and it passes.
    """
    origin = head.headers.get("origin")
    return allowed is None or origin is None or normalise_origin(origin) in allowed


def response(
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra: Iterable[tuple[str, str]] = (),
    include_body: bool = True,
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-cache",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if include_body else head


def file_response(head: RequestHead, files: Mapping[str, bytes], allowed: frozenset[str] | None) -> bytes:
    """The answer to a plain (non-upgrade) request: a known file, or an error."""
    body = files.get(head.path)
    with_body = head.method != "HEAD"
    if body is None:
        return response(404, b"Not found.\n", include_body=with_body)
    if head.method not in ("GET", "HEAD"):
        return response(405, b"Only GET and HEAD.\n", extra=[("Allow", "GET, HEAD")])
    extra: list[tuple[str, str]] = []
    # A module script from another origin needs CORS; grant it to the origins
    # that may also open the WebSocket.
    origin = head.headers.get("origin")
    if allowed is None:
        extra.append(("Access-Control-Allow-Origin", "*"))
    elif origin is not None and normalise_origin(origin) in allowed:
        extra += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    return response(200, body, content_type=content_type(head.path), extra=extra, include_body=with_body)


class ReplayStream(trio.abc.Stream):
    """A stream that first gives back bytes already read from it, then reads on."""

    def __init__(self, stream: trio.abc.Stream, replay: bytes) -> None:
        self.stream = stream
        self._replay = replay

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._replay:
            await trio.lowlevel.checkpoint()
            size = len(self._replay) if max_bytes is None else max_bytes
            data, self._replay = self._replay[:size], self._replay[size:]
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()
