"""``pubsub-rpc bench``: BENCH.md's workloads against our server and the floor, in one run.

Each run starts a fresh server process (ours, or the bare forwarder of
``_bench_floor``), load-generator processes (``_bench_workers``) and
measures (``_bench_workloads``); the runs are interleaved rep-major, and the
table (``_bench_report``) gives median [min-max] per system and our median as
a ratio of the floor's.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import sys
from importlib.metadata import version
from typing import Any, Final

import orjson

from pubsub_rpc import DEFAULT_MAX_OUTBOUND

from . import _bench_floor, _pump
from ._bench_cluster import run_cluster, summary_lines
from ._bench_procs import BenchError, cpu_plan
from ._bench_report import Cell, render, summarise
from ._bench_wire import SYSTEMS
from ._bench_workloads import FULL, QUICK, RUNNERS, RunContext, run_into

WORKLOADS: Final = ("W1", "W2", "W3", "W4")


def _usage(message: str) -> None:
    print(f"pubsub-rpc: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def add_bench_parser(commands: Any) -> None:
    """Add the ``bench`` subcommand to the CLI's subparsers."""
    bench = commands.add_parser(
        "bench",
        help="measure the server against a bare forwarder (BENCH.md workloads)",
        description="Run BENCH.md's workloads W1-W4 against a fresh server process and against the floor "
        "(a bare trio forwarder) in the same run; print median [min-max] and ours / floor.",
    )
    bench.add_argument(
        "--transport", action="append", choices=("tcp", "unix"), help="tcp (default) and/or unix; repeatable"
    )
    bench.add_argument("--workload", action="append", choices=WORKLOADS, help="default: all four; repeatable")
    bench.add_argument(
        "--subscribers", metavar="S,...", help="W1 subscriber counts (default 1,10,100; with --quick 1,10)"
    )
    bench.add_argument(
        "--repeat", type=int, metavar="R", help="interleaved repetitions (default 3; --quick 1)"
    )
    bench.add_argument(
        "--quick", action="store_true", help="small N for a smoke test (figures not comparable)"
    )
    bench.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    bench.add_argument(
        "--url", help="measure this running server instead of starting ours (no CPU/RSS figures)"
    )
    bench.add_argument(
        "--client-ids",
        metavar="PUBLISHER,SUBSCRIBER",
        help="with --url: two registered client ids (a publisher's own subscriptions get no events)",
    )
    bench.add_argument("--no-pin", action="store_true", help="do not pin the server and the clients to CPUs")
    bench.add_argument(
        "--subscriber-processes",
        type=int,
        default=2,
        metavar="P",
        help="processes the subscribers are spread over",
    )
    bench.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="also run W1 and W2 across N servers joined by Redis (publisher on node 1)",
    )
    bench.add_argument(
        "--redis", metavar="URL", help="with --cluster: this Redis (default: start a private redis-server)"
    )
    bench.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="give up on a stalled run"
    )
    bench.set_defaults(handler=run_bench_command)


def _cells(args: argparse.Namespace, sizes: dict[str, int]) -> list[tuple[str, dict[str, int], str]]:
    default_s = "1,10" if args.quick else "1,10,100"
    try:
        counts = [int(text) for text in (args.subscribers or default_s).split(",")]
    except ValueError:
        _usage("--subscribers takes numbers separated by commas, as in 1,10,100")
    if any(count < 1 for count in counts):
        _usage("--subscribers must be at least 1")
    cells: list[tuple[str, dict[str, int], str]] = []
    for workload in args.workload or WORKLOADS:
        if workload == "W1":
            for count in counts:
                n = max(sizes["w1_deliveries"] // count, 1)
                cells.append(("W1", {"S": count, "N": n}, f"W1 S={count}"))
        elif workload == "W2":
            cells.append(("W2", {"n": sizes["w2_n"], "warmup": sizes["w2_warmup"]}, "W2"))
        elif workload == "W3":
            c = sizes["w3_c"]
            cells.append(("W3", {"C": c, "M": sizes["w3_m"], "idle_ms": sizes["w3_idle_ms"]}, f"W3 C={c}"))
        else:
            cells.append(("W4", {"N": sizes["w4_n"]}, "W4"))
    return cells


def _loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as file:
            return " ".join(file.read().split()[:3])
    except OSError:
        return "unknown"


def policy() -> dict[str, str]:
    """The slow-consumer policies in force, in words."""
    ours = (
        f"publisher backpressure: a publisher's reads pause while a subscriber it feeds has more than "
        f"{_pump.FEED_HIGH_WATER // 1024} KiB unwritten; a subscriber whose writes make no progress for "
        f"{_pump.STALL_TIMEOUT:g} s stops holding publishers back, and is disconnected once more than "
        f"{DEFAULT_MAX_OUTBOUND // 1024} KiB are queued (max_outbound)"
    )
    floor = (
        f"publisher blocked while a subscriber has more than {_bench_floor.HIGH_WATER // 1024} KiB queued; "
        f"writes coalesced up to {_bench_floor.BATCH_CAP // 1024} KiB; never disconnects"
    )
    return {"ours": ours, "floor": floor}


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()

    def start(self, text: str) -> None:
        self.done += 1
        prefix = f"[{self.done}/{self.total}] {text} ..."
        if self.tty:
            sys.stderr.write(f"\r\033[K{prefix}")
        else:
            sys.stderr.write(prefix)
        sys.stderr.flush()

    def end(self, text: str) -> None:
        sys.stderr.write(f" {text}" + ("" if self.tty else "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _headline(workload: str, figures: dict[str, Any]) -> str:
    key = {"W1": "delivered_per_s", "W2": "p50_us", "W3": "time_s", "W4": "published_per_s"}[workload]
    value = figures.get(key)
    return f"{key}={value:,.1f}" if isinstance(value, float | int) else "done"


def run_bench_command(args: argparse.Namespace) -> int:
    """The ``bench`` handler: run, print the table (or JSON); exit 1 if a run failed."""
    quick = bool(args.quick)
    sizes = QUICK if quick else FULL
    repeat = args.repeat if args.repeat is not None else (1 if quick else 3)
    if repeat < 1 or args.subscriber_processes < 1:
        _usage("--repeat and --subscriber-processes must be at least 1")
    if args.cluster == 1 or args.cluster < 0 or (args.cluster and args.url is not None):
        _usage("--cluster takes 2 or more servers, and does not go with --url")
    publisher_id, subscriber_id = "bench-publisher", "bench-subscriber"
    if args.url is not None:
        ids = (args.client_ids or "").split(",")
        if len(ids) != 2 or not all(ids) or ids[0] == ids[1]:
            _usage("--url needs --client-ids PUBLISHER,SUBSCRIBER (two different registered ids)")
        publisher_id, subscriber_id = ids
    transports = list(dict.fromkeys(args.transport or ["tcp"]))
    server_cpus, client_cpus = cpu_plan(not args.no_pin)
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)  # this process sits with the clients
    layout = _cells(args, sizes)
    cells = {
        (transport, label): Cell(transport, workload, params, label)
        for transport in transports
        for workload, params, label in layout
    }
    meta: dict[str, Any] = {
        "mode": "quick (small N, not comparable)" if quick else "full (BENCH.md sizes)",
        "quick": quick,
        "repeat": repeat,
        "sizes": sizes,
        "cpus": os.cpu_count(),
        "pinning": (
            f"server pinned to CPU {sorted(server_cpus)}, clients to CPU {sorted(client_cpus)}"
            if server_cpus is not None and client_cpus is not None
            else "unpinned"
        ),
        "python": platform.python_version(),
        "trio": version("trio"),
        "orjson": version("orjson"),
        "policy": policy(),
        "url": args.url,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_before": _loadavg(),
    }
    cluster_cells = sum(1 for workload, _, _ in layout if workload in ("W1", "W2")) if args.cluster else 0
    progress = _Progress(repeat * len(transports) * (len(layout) * len(SYSTEMS) + cluster_cells))
    contexts: list[RunContext] = []
    runs: list[dict[str, Any]] = []
    for rep in range(1, repeat + 1):
        order = SYSTEMS if rep % 2 else tuple(reversed(SYSTEMS))
        for transport in transports:
            ctx = RunContext(
                transport=transport,
                server_cpus=server_cpus,
                client_cpus=client_cpus,
                subscriber_processes=args.subscriber_processes,
                timeout=args.timeout,
                url=args.url,
                publisher_id=publisher_id,
                subscriber_id=subscriber_id,
            )
            contexts.append(ctx)
            for workload, params, label in layout:
                for system in order:
                    progress.start(f"rep {rep}/{repeat} {transport} {label} {system}")
                    record: dict[str, Any] = {
                        "rep": rep,
                        "transport": transport,
                        "label": label,
                        "system": system,
                    }
                    run_into(
                        record,
                        functools.partial(RUNNERS[workload], system, ctx, params),
                        progress,
                        functools.partial(_headline, workload),
                    )
                    runs.append(record)
                    cells[(transport, label)].runs[system].append(record)
    cluster_runs: list[dict[str, Any]] = []
    if args.cluster:
        try:
            cluster_runs = run_cluster(
                args.cluster, args.redis, contexts[: len(transports)], layout, repeat, progress
            )
        except BenchError as exc:
            cluster_runs = [{"ok": False, "label": "cluster", "error": str(exc)}]
    progress.close()
    meta["load_after"] = _loadavg()
    summaries = [summarise(cell) for cell in cells.values()]
    if args.json:
        report = {"meta": meta, "cells": summaries, "runs": runs, "cluster_runs": cluster_runs}
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        sys.stdout.buffer.write(b"\n")
    else:
        print(render(meta, summaries))
        if cluster_runs:
            single = {
                f"{transport} {label}": [
                    run["figures"]["delivered_per_s" if label.startswith("W1") else "p50_us"]
                    for run in cell.runs["ours"]
                    if run["ok"]
                ]
                for (transport, label), cell in cells.items()
                if label.startswith(("W1", "W2"))
            }
            print("\n".join(summary_lines(cluster_runs, single)))
    sys.stdout.flush()
    return 0 if all(run["ok"] for run in runs + cluster_runs) else 1
