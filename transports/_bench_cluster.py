"""``pubsub-rpc bench --cluster N``: W1 fan-out and W2 latency across servers joined by Redis.

Each run starts a fresh cluster: N ``pubsub-rpc serve --redis`` processes
sharing one Redis under a fresh prefix (the Redis given by ``--redis``, or a
private ``redis-server`` the bench starts on a free loopback port, without
persistence, and stops at the end).  The publisher is always on node 1 and
the subscribers on the others: W1 spreads its S subscriber connections over
nodes 2..N; W2 subscribes on node 2 and publishes on node 1, so every event
crosses Redis.  The clock starts only when node 1 counts every remote
subscription (read through ``stats`` over a trusted connection).

The servers are not pinned to CPUs (N servers and Redis share the machine),
so compare these figures with the single-node ones of the same run, not with
another machine's.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ._bench_procs import BenchError, Server, Worker
from ._bench_wire import connect, read_line
from ._bench_workloads import RunContext, run_into


@contextlib.contextmanager
def redis_for_bench(url: str | None) -> Iterator[str]:
    """``url``, or a private ``redis-server`` on a free loopback port for the bench's duration."""
    if url is not None:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("--cluster needs --redis URL or a redis-server on PATH (Debian: redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise BenchError("the bench's redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def _remote_subscriptions(url: str) -> int:
    """What a server counts of the other servers' subscriptions (its ``stats``)."""
    sock = connect(url)
    try:
        sock.settimeout(5)
        sock.sendall(b'{"jsonrpc":"2.0","method":"stats","id":1}\n')
        answer = orjson.loads(read_line(sock, bytearray()))
    finally:
        sock.close()
    if "result" not in answer:
        raise BenchError(f"stats refused: {answer}")
    count: int = answer["result"]["backplane_remote_subscriptions"]
    return count


def _wait_counted(url: str, expected: int, deadline: float) -> None:
    while _remote_subscriptions(url) != expected:
        if time.monotonic() > deadline:
            raise BenchError(f"node 1 never counted the {expected} remote subscriptions")
        time.sleep(0.02)


@contextlib.contextmanager
def _cluster(ctx: RunContext, redis_url: str, size: int) -> Iterator[tuple[list[Server], Path, list[Worker]]]:
    workers: list[Worker] = []
    servers: list[Server] = []
    trust = "unix" if ctx.transport == "unix" else "tcp"
    options = ("--trust", trust, "--redis", redis_url, "--redis-prefix", f"bench-{uuid.uuid4().hex[:8]}:")
    with tempfile.TemporaryDirectory(prefix="pubsub-bench-cluster-") as tmp:
        workdir = Path(tmp)
        try:
            for number in range(1, size + 1):
                servers.append(Server("ours", ctx.transport, workdir, None, options, name=f"-{number}"))
            yield servers, workdir, workers
        finally:
            for worker in workers:
                worker.close()
            for server in servers:
                server.stop()


def run_w1_cluster(ctx: RunContext, params: dict[str, int], redis_url: str, size: int) -> dict[str, Any]:
    """W1 across servers: publisher on node 1, S subscriber connections spread over nodes 2..N."""
    deadline = time.monotonic() + ctx.timeout * 4
    subscribers, messages = params["S"], params["N"]
    with _cluster(ctx, redis_url, size) as (servers, workdir, workers):
        others = servers[1:]
        share, extra = divmod(subscribers, len(others))
        subs: list[Worker] = []
        first = 0
        for number, server in enumerate(others):
            count = share + (1 if number < extra else 0)
            if not count:
                continue
            config = {
                "url": server.url,
                "system": "ours",
                "topics": ["bench.w1"],
                "delivered_topic": "bench.w1",
                "first": first,
                "count": count,
                "batch": 50,
                "expect": messages,
                "client_id": ctx.subscriber_id,
                "timeout": ctx.timeout,
            }
            first += count
            subs.append(Worker("subscribe", config, None, workdir))
        workers.extend(subs)
        for sub in subs:
            sub.message(deadline)
        _wait_counted(servers[0].url, subscribers, deadline)
        publisher = Worker(
            "publish",
            {
                "url": servers[0].url,
                "system": "ours",
                "topic": "bench.w1",
                "n": messages,
                "client_id": ctx.publisher_id,
                "timeout": ctx.timeout,
            },
            None,
            workdir,
        )
        workers.append(publisher)
        publisher.message(deadline)
        publisher.go()
        results = [sub.message(deadline) for sub in subs]
        published = publisher.message(deadline)
    deliveries = subscribers * messages
    received = sum(r["received"] for r in results)
    elapsed = (max(r["t_last"] for r in results) - published["t0"]) / 1e9
    problems = [p for r in [*results, published] for p in r.get("problems", ())]
    if received != deliveries:
        problems.append(f"received {received} of {deliveries}")
    return {
        "deliveries": deliveries,
        "received": received,
        "time_s": elapsed,
        "delivered_per_s": deliveries / elapsed if elapsed > 0 else None,
        "published_per_s": messages / ((published["t_end"] - published["t0"]) / 1e9),
        "problems": problems,
    }


def run_w2_cluster(ctx: RunContext, params: dict[str, int], redis_url: str, size: int) -> dict[str, Any]:
    """W2 through Redis: subscribe on node 2, publish on node 1, one event at a time."""
    deadline = time.monotonic() + ctx.timeout * 4
    with _cluster(ctx, redis_url, size) as (servers, workdir, workers):
        config = {
            "url": servers[1].url,
            "publish_url": servers[0].url,
            "system": "ours",
            "topic": "bench.w2",
            "n": params["n"],
            "warmup": params["warmup"],
            "client_id": ctx.publisher_id,
            "subscriber_id": ctx.subscriber_id,
            "timeout": ctx.timeout,
        }
        client = Worker("rtt", config, None, workdir)
        workers.append(client)
        client.message(deadline)
        _wait_counted(servers[0].url, 1, deadline)
        client.go()
        result = client.message(deadline)
    figures: dict[str, Any] = {f"{key}_us": value for key, value in result["latency_us"].items()}
    figures["problems"] = result["problems"]
    return figures


def summary_lines(cluster: list[dict[str, Any]], single: dict[str, list[float]]) -> list[str]:
    """The cluster figures as text, each beside the single-node median of the same run."""
    lines = ["", "Several servers through Redis (publisher on node 1, subscribers on the others):"]
    by_label: dict[str, list[dict[str, Any]]] = {}
    for run in cluster:
        by_label.setdefault(run["label"], []).append(run)
    for label, runs in by_label.items():
        key = "delivered_per_s" if label.startswith("W1") else "p50_us"
        values = sorted(r["figures"][key] for r in runs if r["ok"] and r["figures"].get(key) is not None)
        failed = [r.get("error") or r["problems"] for r in runs if not r["ok"]]
        text = f"  {label}: {key} "
        if values:
            text += f"{values[len(values) // 2]:,.1f} [{values[0]:,.1f}-{values[-1]:,.1f}]"
        else:
            text += "n/a"
        base = sorted(single.get(f"{runs[0]['transport']} {runs[0]['single']}", []))
        if base:
            text += f"; single node: {base[len(base) // 2]:,.1f}"
        if label.startswith("W2"):
            p99 = sorted(r["figures"]["p99_us"] for r in runs if r["ok"])
            if p99:
                text += f" (p99 {p99[len(p99) // 2]:,.1f})"
        lines.append(text + (f"; FAILED: {failed}" if failed else ""))
    return lines


def run_cluster(
    size: int,
    redis_url: str | None,
    contexts: list[RunContext],
    layout: list[tuple[str, dict[str, int], str]],
    repeat: int,
    progress: Any,
) -> list[dict[str, Any]]:
    """Every W1 and W2 cell of ``layout`` on a cluster of ``size``, ``repeat`` times per transport."""
    runners = {"W1": run_w1_cluster, "W2": run_w2_cluster}
    runs: list[dict[str, Any]] = []
    with redis_for_bench(redis_url) as url:
        for rep in range(1, repeat + 1):
            for ctx in contexts:
                for workload, params, label in layout:
                    if workload not in runners:
                        continue
                    progress.start(f"rep {rep}/{repeat} {ctx.transport} {label} cluster of {size}")
                    record: dict[str, Any] = {
                        "rep": rep,
                        "transport": ctx.transport,
                        "label": f"{label} cluster of {size}",
                        "single": label,
                        "system": "ours",
                    }
                    run_into(
                        record,
                        functools.partial(runners[workload], ctx, params, url, size),
                        progress,
                        lambda figures: "done",
                    )
                    runs.append(record)
    return runs
