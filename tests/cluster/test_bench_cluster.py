"""``pubsub-rpc bench --cluster 3`` runs W1 and W2 across servers and delivers everything.

A smoke test of the cluster mode of the benchmark tool: small sizes, figures
not asserted (timings on a shared machine are not test material), only that
every run completed and every event arrived exactly as many times as expected.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

SCRIPT = Path(sys.executable).with_name("pubsub-rpc")


def test_bench_cluster_mode_delivers_everything_across_servers(shared_redis_url: str) -> None:
    done = subprocess.run(
        [
            *(str(SCRIPT), "bench", "--quick", "--json", "--cluster", "3", "--redis", shared_redis_url),
            *("--workload", "W1", "--workload", "W2", "--subscribers", "4", "--timeout", "20"),
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    report = orjson.loads(done.stdout)
    runs = report["cluster_runs"]
    assert {run["label"] for run in runs} == {"W1 S=4 cluster of 3", "W2 cluster of 3"}
    for run in runs:
        assert run["ok"] and run["problems"] == [], run
    w1 = next(run for run in runs if run["label"].startswith("W1"))
    assert w1["figures"]["received"] == w1["figures"]["deliveries"] > 0
    w2 = next(run for run in runs if run["label"].startswith("W2"))
    assert w2["figures"]["p50_us"] > 0
