"""The four workloads of BENCH.md, each one run against one system on one transport.

A run starts a fresh server, its subscriber workers (waiting until every
subscription is confirmed), then its publisher, and says ``go``; it returns a
flat dict of figures.  Time stamps come from the workers (CLOCK_MONOTONIC,
shared by all processes): ``t0`` just before the first publish, ``t_last``
when the last subscriber has its last event.  The server's CPU is measured
from ``go`` until the subscribers' results are in (BENCH.md 2.1).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._bench_procs import BenchError, RssSampler, Server, Worker
from ._bench_wire import PUBLISHER_ID, SUBSCRIBER_ID, System

#: BENCH.md's sizes: W1 deliveries per run (N = this / S), W2 round trips (after a warm-up),
#: W3 connections, messages and the rest before measuring idle memory, W4 publishes.
FULL: Final = {
    "w1_deliveries": 1_000_000,
    "w2_n": 5_000,
    "w2_warmup": 500,
    "w3_c": 1_000,
    "w3_m": 1_000,
    "w3_idle_ms": 1_000,
    "w4_n": 20_000,
}
#: ``--quick``: a smoke test of every path; its figures are not comparable with anything.
QUICK: Final = {
    "w1_deliveries": 20_000,
    "w2_n": 500,
    "w2_warmup": 50,
    "w3_c": 100,
    "w3_m": 200,
    "w3_idle_ms": 200,
    "w4_n": 1_000,
}


@dataclass
class RunContext:
    """What every run needs besides its workload's parameters."""

    transport: str
    server_cpus: set[int] | None
    client_cpus: set[int] | None
    subscriber_processes: int
    timeout: float
    url: str | None = None  # an external server for ours (no CPU or memory figures then)
    publisher_id: str = PUBLISHER_ID
    subscriber_id: str = SUBSCRIBER_ID


@contextlib.contextmanager
def _started(system: System, ctx: RunContext) -> Iterator[tuple[Server, Path, list[Worker]]]:
    """A fresh server and a list the run adds its workers to; all ended on the way out."""
    workers: list[Worker] = []
    with tempfile.TemporaryDirectory(prefix="pubsub-bench-") as tmp:
        workdir = Path(tmp)
        if system == "ours" and ctx.url is not None:
            server = Server.external(ctx.url)
        else:
            server = Server(system, ctx.transport, workdir, ctx.server_cpus)
        try:
            yield server, workdir, workers
        finally:
            for worker in workers:
                worker.close()
            server.stop()


def _spawn_subscribers(
    system: System,
    ctx: RunContext,
    server: Server,
    workdir: Path,
    workers: list[Worker],
    *,
    connections: int,
    topics: list[str],
    delivered_topic: str,
    expect: int,
    processes: int,
) -> list[Worker]:
    processes = max(1, min(processes, connections))
    share, extra = divmod(connections, processes)
    subscribers: list[Worker] = []
    first = 0
    for number in range(processes):
        count = share + (1 if number < extra else 0)
        config = {
            "url": server.url,
            "system": system,
            "topics": topics,
            "delivered_topic": delivered_topic,
            "first": first,
            "count": count,
            "batch": 50,
            "expect": expect,
            "client_id": ctx.subscriber_id,
            "timeout": ctx.timeout,
        }
        first += count
        subscribers.append(Worker("subscribe", config, ctx.client_cpus, workdir))
    workers.extend(subscribers)
    return subscribers


def _problems(results: list[dict[str, Any]]) -> list[str]:
    return [problem for result in results for problem in result.get("problems", ())]


def _cpu_window(server: Server, cpu0: float | None, wall0: float) -> tuple[float | None, float]:
    cpu1 = server.cpu_seconds()
    wall = time.monotonic() - wall0
    if cpu0 is None or cpu1 is None:
        return None, wall
    return (cpu1 - cpu0) / wall, wall


def _fan_out(
    system: System,
    ctx: RunContext,
    *,
    subscribers: int,
    messages: int,
    topics: list[str],
    topic: str,
    idle_ms: int = 0,
) -> dict[str, Any]:
    """W1 and W3: one publisher, ``subscribers`` connections each expecting ``messages`` events."""
    deadline = time.monotonic() + ctx.timeout * 4
    with _started(system, ctx) as (server, workdir, workers):
        setup_start = time.monotonic()
        subs = _spawn_subscribers(
            system,
            ctx,
            server,
            workdir,
            workers,
            connections=subscribers,
            topics=topics,
            delivered_topic=topic,
            expect=messages,
            processes=ctx.subscriber_processes,
        )
        ready = [sub.message(deadline) for sub in subs]
        setup_s = time.monotonic() - setup_start
        figures: dict[str, Any] = {"setup_s": max(r["setup_s"] for r in ready), "setup_wall_s": setup_s}
        if idle_ms:  # W3: the idle-connections memory, after a rest
            time.sleep(idle_ms / 1000)
            figures["rss_empty"] = server.rss_empty
            figures["rss_idle"] = server.memory("VmRSS")
        publisher = Worker(
            "publish",
            {
                "url": server.url,
                "system": system,
                "topic": topic,
                "n": messages,
                "client_id": ctx.publisher_id,
                "timeout": ctx.timeout,
            },
            ctx.client_cpus,
            workdir,
        )
        workers.append(publisher)
        publisher.message(deadline)
        sampler = RssSampler(server)
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        publisher.go()
        results = [sub.message(deadline) for sub in subs]
        util, _ = _cpu_window(server, cpu0, wall0)
        published = publisher.message(deadline)
        figures["rss_sampled_peak"] = sampler.stop()
        figures["rss_peak"] = server.memory("VmHWM")
    deliveries = subscribers * messages
    received = sum(r["received"] for r in results)
    t0, t_last = published["t0"], max(r["t_last"] for r in results)
    elapsed = (t_last - t0) / 1e9
    figures.update(
        {
            "deliveries": deliveries,
            "received": received,
            "time_s": elapsed,
            "delivered_per_s": deliveries / elapsed if elapsed > 0 else None,
            "published_per_s": messages / ((published["t_end"] - t0) / 1e9),
            "server_util": util,
            "server_us_per_delivery": util * elapsed / deliveries * 1e6 if util is not None else None,
            "client_cpu_s": published["cpu_s"] + sum(r["cpu_s"] for r in results),
            "problems": _problems([*results, published])
            or ([] if received == deliveries else [f"received {received} of {deliveries}"]),
        }
    )
    return figures


def run_w1(system: System, ctx: RunContext, params: dict[str, int]) -> dict[str, Any]:
    """W1 fan-out: S subscriber connections on ``bench.w1``, N = deliveries / S publishes."""
    return _fan_out(
        system, ctx, subscribers=params["S"], messages=params["N"], topics=["bench.w1"], topic="bench.w1"
    )


def run_w3(system: System, ctx: RunContext, params: dict[str, int]) -> dict[str, Any]:
    """W3 many connections: C connections on ``bench.c.<i>`` and ``bench.shared``; M publishes."""
    figures = _fan_out(
        system,
        ctx,
        subscribers=params["C"],
        messages=params["M"],
        topics=["bench.c.{i}", "bench.shared"],
        topic="bench.shared",
        idle_ms=params["idle_ms"],
    )
    if figures.get("rss_idle") is not None and figures.get("rss_empty") is not None:
        figures["kib_per_connection"] = (figures["rss_idle"] - figures["rss_empty"]) / 1024 / params["C"]
    return figures


def run_w2(system: System, ctx: RunContext, params: dict[str, int]) -> dict[str, Any]:
    """W2 round-trip latency: publish, wait for this very event on the subscriber connection."""
    deadline = time.monotonic() + ctx.timeout * 4
    with _started(system, ctx) as (server, workdir, workers):
        publisher_id, subscriber_id = ctx.publisher_id, ctx.subscriber_id
        config = {
            "url": server.url,
            "system": system,
            "topic": "bench.w2",
            "n": params["n"],
            "warmup": params["warmup"],
            "client_id": publisher_id,
            "subscriber_id": subscriber_id,
            "timeout": ctx.timeout,
        }
        client = Worker("rtt", config, ctx.client_cpus, workdir)
        workers.append(client)
        client.message(deadline)
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        client.go()
        result = client.message(deadline)
        util, wall = _cpu_window(server, cpu0, wall0)
        rss_peak = server.memory("VmHWM")
    rounds = params["n"] + params["warmup"]
    figures: dict[str, Any] = {f"{key}_us": value for key, value in result["latency_us"].items()}
    figures.update(
        {
            "server_util": util,
            "server_us_per_round_trip": util * wall / rounds * 1e6 if util is not None else None,
            "rss_peak": rss_peak,
            "problems": result["problems"],
        }
    )
    return figures


def run_w4(system: System, ctx: RunContext, params: dict[str, int]) -> dict[str, Any]:
    """W4 acknowledged publish: N sequential publishes, each awaited; one subscriber gets them all."""
    deadline = time.monotonic() + ctx.timeout * 4
    with _started(system, ctx) as (server, workdir, workers):
        (sub,) = _spawn_subscribers(
            system,
            ctx,
            server,
            workdir,
            workers,
            connections=1,
            topics=["bench.w4"],
            delivered_topic="bench.w4",
            expect=params["N"],
            processes=1,
        )
        sub.message(deadline)
        config = {
            "url": server.url,
            "system": system,
            "topic": "bench.w4",
            "n": params["N"],
            "receivers": 1,
            "client_id": ctx.publisher_id,
            "timeout": ctx.timeout,
        }
        publisher = Worker("ack", config, ctx.client_cpus, workdir)
        workers.append(publisher)
        publisher.message(deadline)
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        publisher.go()
        published = publisher.message(deadline)
        delivered = sub.message(deadline)
        util, wall = _cpu_window(server, cpu0, wall0)
        rss_peak = server.memory("VmHWM")
    elapsed = (published["t_end"] - published["t0"]) / 1e9
    received = delivered["received"]
    problems = _problems([published, delivered])
    if received != params["N"]:
        problems.append(f"the subscriber received {received} of {params['N']}")
    return {
        "published_per_s": params["N"] / elapsed,
        "ack_p50_us": published["latency_us"]["p50"],
        "ack_p99_us": published["latency_us"]["p99"],
        "received": received,
        "server_util": util,
        "server_us_per_publish": util * wall / params["N"] * 1e6 if util is not None else None,
        "rss_peak": rss_peak,
        "problems": problems,
    }


RUNNERS: Final[dict[str, Callable[[System, RunContext, dict[str, int]], dict[str, Any]]]] = {
    "W1": run_w1,
    "W2": run_w2,
    "W3": run_w3,
    "W4": run_w4,
}

__all__ = ["FULL", "QUICK", "RUNNERS", "BenchError", "RunContext"]


def run_into(
    record: dict[str, Any],
    measure: Callable[[], dict[str, Any]],
    progress: Any,
    headline: Callable[[dict[str, Any]], str],
) -> None:
    """Run one cell through ``measure`` and fill ``record`` with its figures or its error.

    A :class:`BenchError` fails only this cell (the bench goes on with the
    next); ``progress`` ends the cell's line with ``headline(figures)`` and the
    time the cell took, or with the error.
    """
    started = time.monotonic()
    try:
        figures = measure()
    except BenchError as exc:
        record.update(ok=False, figures={}, problems=[], error=str(exc))
        progress.end(f"FAILED: {exc}")
    else:
        record.update(ok=not figures["problems"], figures=figures, problems=figures["problems"])
        progress.end(f"{headline(figures)} ({time.monotonic() - started:.1f} s)")
