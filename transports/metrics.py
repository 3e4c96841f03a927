"""The server's live counters as Prometheus metrics, on a small local HTTP endpoint.

Add the endpoint to a ``Server`` like any listener::

    server = Server([tcp.Adapter("127.0.0.1", 7700), metrics.Adapter("127.0.0.1", 9100)])
    # GET http://127.0.0.1:9100/metrics -> text exposition format 0.0.4

or run ``pubsub-rpc serve ... --metrics 127.0.0.1:9100``.  The metrics are
the ``stats`` request's counters (spec/README.md, "stats"): totals as
``pubsub_rpc_<name>_total`` counters, current values as gauges, and one
series per adapter labelled with its address.  They never name a client.

The HTTP side is deliberately tiny: it answers ``GET /metrics`` and nothing
else (404 for another path, 405 for another method, 400 for a malformed
request, 431 for a head over 8 KiB), reads nothing but the request head,
closes every connection after one answer, gives each ``request_timeout``
seconds and serves at most ``max_connections`` at a time.  It has no
authentication: bind it to loopback (the default) or a private interface.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import trio

from ._adapter import Adapter as _BaseAdapter
from .tcp import BoundAddress

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["CONTENT_TYPE", "Adapter", "render"]

_log = logging.getLogger("pubsub_rpc.transports.metrics")

#: The media type of the text exposition format, version 0.0.4.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "pubsub_rpc_"
_MAX_HEAD: Final = 8192

#: Totals that only grow: exposed as ``pubsub_rpc_<name>_total``.
COUNTERS: Final = {
    "events_published": "Events accepted for publishing.",
    "events_delivered": "Event copies queued to subscribers.",
    "events_dropped": "Event copies refused by connections that were closing.",
    "requests": "Requests handled.",
    "requests_refused": "Requests answered with an error.",
    "bytes_received": "Bytes read from byte-stream connections.",
    "bytes_sent": "Bytes written to byte-stream connections.",
    "connections_accepted": "Connections accepted.",
    "connections_refused": "Connections refused at an adapter's connection limit.",
    "slow_consumers": "Connections closed as slow consumers.",
    "idle_closed": "Connections closed for sending no valid request in time.",
    "internal_errors": "Connections ended by a fault in the server.",
    "request_faults": "Requests answered INTERNAL_ERROR by a fault in the server (counted at close).",
}
#: Values that go up and down.
GAUGES: Final = {
    "clients_registered": "Registered clients.",
    "subscriptions": "Live subscriptions.",
    "pattern_subscriptions": "Live pattern subscriptions (also counted in subscriptions).",
    "event_names": "Event names with at least one subscription.",
    "connections": "Connections open now.",
    "uptime_seconds": "Seconds since the server started.",
}
#: Per-adapter series: stats member -> (metric name, type, help).
ADAPTER_SERIES: Final = {
    "connections": ("adapter_connections", "gauge", "Connections open now, per adapter."),
    "accepted": ("adapter_connections_accepted_total", "counter", "Connections accepted, per adapter."),
    "refused": (
        "adapter_connections_refused_total",
        "counter",
        "Connections refused at the connection limit, per adapter.",
    ),
}
_NOT_A_NAME_CHARACTER: Final = re.compile(r"[^a-zA-Z0-9_]")


def _number(value: object) -> str | None:
    if type(value) is int:
        return str(value)
    if type(value) is float:
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return None  # bools, strings and structures are not samples


def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(stats: Mapping[str, Any]) -> str:
    """``stats`` (a ``stats`` result) in the Prometheus text exposition format 0.0.4.

    Numeric members not listed in ``COUNTERS`` or ``GAUGES`` (from stats
    sources of your own) become gauges of the same name; anything else
    except ``adapters`` is left out.
    """
    lines: list[str] = []

    def family(name: str, kind: str, text: str, samples: list[tuple[str, str]]) -> None:
        lines.append(f"# HELP {PREFIX}{name} {text}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.extend(f"{PREFIX}{name}{labels} {value}" for labels, value in samples)

    for key, value in stats.items():
        shown = _number(value)
        if shown is None:
            continue
        if key in COUNTERS:
            family(f"{key}_total", "counter", COUNTERS[key], [("", shown)])
        else:
            text = GAUGES.get(key, "Reported by a stats source.")
            family(_NOT_A_NAME_CHARACTER.sub("_", key), "gauge", text, [("", shown)])
    adapters = stats.get("adapters")
    if isinstance(adapters, list) and adapters:
        for member, (name, kind, text) in ADAPTER_SERIES.items():
            samples = []
            for adapter in adapters:
                shown = _number(adapter.get(member)) if isinstance(adapter, dict) else None
                if shown is not None:
                    labels = (
                        f'{{adapter="{_label(adapter.get("name"))}",kind="{_label(adapter.get("kind"))}"}}'
                    )
                    samples.append((labels, shown))
            if samples:
                family(name, kind, text, samples)
    return "\n".join(lines) + "\n"


def _response(status: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


def _plain(status: str, text: str, extra: str = "") -> bytes:
    return _response(status, text.encode() + b"\n", "text/plain; charset=utf-8", extra)


class Adapter(_BaseAdapter, BoundAddress):
    """Serve ``GET /metrics`` for the server it is added to (see the module docstring).

    ``port`` 0 lets the OS pick one; read ``port`` or ``url`` once the server
    has started.  It serves no pub/sub peers, so ``stats`` does not list it.
    """

    kind = "metrics"
    listed_in_stats = False

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        request_timeout: float = 5.0,
        max_connections: int = 16,
    ) -> None:
        super().__init__(trusted=False)
        if not request_timeout > 0 or max_connections < 1:
            raise ValueError("request_timeout must be positive and max_connections at least 1")
        self.host = host
        self.requested_port = port
        #: Seconds one scrape may take, from connect to the last byte of the answer.
        self.request_timeout = request_timeout
        #: Scrapes served at once; connections beyond are closed unanswered.
        self.max_connections = max_connections
        self._limiter = trio.CapacityLimiter(max_connections)

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics`` once the server has started."""
        return self.url_with("http", "/metrics")

    async def serve(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and answer scrapes until cancelled (scrapes in flight are cut off then)."""
        listeners = await trio.open_tcp_listeners(self.requested_port, host=self.host)
        if self.requested_port == 0:
            # Each address would get a different port; one URL means one listener.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        try:
            self._address = listeners[0].socket.getsockname()[:2]
            _log.info("serving metrics on %s", self.url)
            async with trio.open_nursery() as nursery:
                # Scrapes are short and hold no state: they live in this
                # nursery, so stopping the listener stops them too.
                await nursery.start(trio.serve_listeners, lambda s: self._scrape(server, s), listeners)
                task_status.started()
        finally:
            for listener in listeners:
                await listener.aclose()

    async def _scrape(self, server: Server, stream: trio.abc.Stream) -> None:
        async with stream:
            if self._limiter.available_tokens < 1:
                return  # over the limit: closed unanswered
            async with self._limiter:
                with trio.move_on_after(self.request_timeout):
                    try:
                        head = await self._read_head(stream)
                        if head is not None:
                            await stream.send_all(self._answer(server, head))
                            await self._linger(stream)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass  # the scraper went away; nothing to tell it

    @staticmethod
    async def _read_head(stream: trio.abc.Stream) -> bytes | None:
        head = bytearray()
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            if len(head) > _MAX_HEAD:
                return b""
            data = await stream.receive_some(1024)
            if not data:
                return None
            head += data
        return bytes(head)

    @staticmethod
    async def _linger(stream: trio.abc.Stream) -> None:
        # Closing with unread request bytes makes the kernel send a reset,
        # which can destroy the answer before the scraper reads it: say we
        # are done, then read (a bounded amount) until the scraper closes.
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        left = 8 * _MAX_HEAD
        while left > 0 and (data := await stream.receive_some(4096)):
            left -= len(data)

    @staticmethod
    def _answer(server: Server, head: bytes) -> bytes:
        if not head:
            return _plain("431 Request Header Fields Too Large", "The request head is too large.")
        parts = head.split(b"\n", 1)[0].strip().split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _plain("400 Bad Request", "Expected: GET /metrics HTTP/1.1")
        method, target = parts[0], parts[1]
        if target.split(b"?", 1)[0] != b"/metrics":
            return _plain("404 Not Found", "Only /metrics is served here.")
        if method != b"GET":
            return _plain("405 Method Not Allowed", "Use GET.", "Allow: GET\r\n")
        try:
            body = render(server.broker.stats()).encode()
        except Exception as exc:
            # A failing stats source of the application's must cost one
            # scrape, never the server (this task runs beside its listeners).
            _log.error("reading the counters failed: %s", type(exc).__name__)
            return _plain("500 Internal Server Error", "The counters could not be read.")
        return _response("200 OK", body, CONTENT_TYPE)
