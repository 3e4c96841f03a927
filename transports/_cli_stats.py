"""``pubsub-rpc stats URL``, and ``serve --metrics``: the operator's view of a running server.

``stats`` asks the server for its live counters (the ``stats`` request; the
client must be registered with ``can_inspect = true``) and prints them as a
table, or as one JSON object per line with ``--json``; ``--watch S`` asks
again every S seconds until interrupted.  A refusal is one line on stderr
and exit status 1.  Nothing printed names a client: the server's answer
holds none.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress
from typing import Any

import orjson
import trio

from ._adapter import Adapter
from ._cli_client import UsageError, add_url_and_client_id, client_id_from, open_url
from ._urls import BadURLError, parse_host_port, parse_url
from .metrics import Adapter as MetricsAdapter

#: Table rows: (label, the stats members shown, how).
_ROWS = (
    ("uptime", "uptime_seconds", "{:.1f} s"),
    ("clients registered", "clients_registered", "{}"),
    ("connections open", "connections", "{}"),
    ("connections accepted", "connections_accepted", "{}"),
    ("connections refused", "connections_refused", "{}"),
    ("slow consumers closed", "slow_consumers", "{}"),
    ("idle connections closed", "idle_closed", "{}"),
    ("internal errors", "internal_errors", "{}"),
    ("request faults", "request_faults", "{}"),
    ("subscriptions", "subscriptions", "{}"),
    ("pattern subscriptions", "pattern_subscriptions", "{}"),
    ("event names subscribed", "event_names", "{}"),
    ("events published", "events_published", "{}"),
    ("events delivered", "events_delivered", "{}"),
    ("events dropped", "events_dropped", "{}"),
    ("requests", "requests", "{}"),
    ("requests refused", "requests_refused", "{}"),
    ("bytes received", "bytes_received", "{}"),
    ("bytes sent", "bytes_sent", "{}"),
)


def _shown(how: str, value: object) -> str:
    # Another implementation's server may send anything: show it as it came.
    if type(value) in (int, float):
        return how.format(value)
    return orjson.dumps(value).decode()


def format_table(stats: dict[str, Any]) -> str:
    """``stats`` as a table a person reads: one counter a line, then one adapter a line."""
    shown = {key for _, key, _ in _ROWS}
    rows = [(label, _shown(how, stats[key])) for label, key, how in _ROWS if key in stats]
    # Members from stats sources of the server's own (a bridge, say), by their names.
    rows += [
        (key.replace("_", " "), _shown("{}", value))
        for key, value in stats.items()
        if key not in shown and key != "adapters" and not isinstance(value, dict | list)
    ]
    width = max(len(label) for label, _ in rows) if rows else 0
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    adapters = [adapter for adapter in stats.get("adapters", ()) if isinstance(adapter, dict)]
    if adapters:
        columns = ("name", "kind", "connections", "accepted", "refused")
        table = [["adapter", "kind", "open", "accepted", "refused"]]
        table += [[str(adapter.get(column)) for column in columns] for adapter in adapters]
        widths = [max(len(row[column]) for row in table) for column in range(5)]
        lines.append("")
        for row in table:
            left = [f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:2])]
            right = [f"{cell:>{widths[i + 2]}}" for i, cell in enumerate(row[2:])]
            lines.append("  ".join(left + right).rstrip())
    return "\n".join(lines)


def _cmd_stats(args: argparse.Namespace) -> int:
    url = parse_url(args.url)
    client_id = client_id_from(args)
    if args.watch is not None and not args.watch > 0:
        raise UsageError("--watch must be a positive number of seconds")

    def show(stats: dict[str, Any], first: bool) -> None:
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(stats) + b"\n")
        else:
            sys.stdout.write(("" if first else "\n") + format_table(stats) + "\n")
        sys.stdout.flush()

    async def run() -> None:
        async with open_url(url, client_id) as client:
            show(await client.stats(), True)
            while args.watch is not None:
                await trio.sleep(args.watch)
                show(await client.stats(), False)

    with suppress(KeyboardInterrupt):
        trio.run(run)
    return 0


def add_stats_parser(commands: Any) -> None:
    """Add ``stats`` to the ``pubsub-rpc`` subcommands."""
    command = commands.add_parser("stats", help="print a server's live counters (needs can_inspect)")
    add_url_and_client_id(command)
    command.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    command.add_argument(
        "--watch", type=float, metavar="S", help="ask again every S seconds until interrupted"
    )
    command.set_defaults(handler=_cmd_stats)


def add_metrics_option(serve: argparse.ArgumentParser) -> None:
    """The ``serve --metrics HOST:PORT`` option."""
    serve.add_argument(
        "--metrics",
        action="append",
        metavar="HOST:PORT",
        help="serve GET /metrics (Prometheus text) on this address; keep it local (port 0: any)",
    )


def metrics_adapters(args: argparse.Namespace) -> list[Adapter]:
    """The metrics endpoints ``serve --metrics`` asked for."""
    adapters: list[Adapter] = []
    for spec in args.metrics or ():
        try:
            host, port = parse_host_port(spec)
        except BadURLError as exc:
            raise UsageError(f"--metrics {exc}") from None
        adapters.append(MetricsAdapter(host, port))
    return adapters
