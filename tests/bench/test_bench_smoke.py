"""``pubsub-rpc bench --quick --json`` runs every workload against both systems and delivers everything.

A smoke test of the benchmark tool itself, part of the normal suite: it
checks the structure of the JSON and that no run lost, duplicated or
reordered an event.  It asserts nothing about speed: timings on a shared
machine are not test material.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

SCRIPT = Path(sys.executable).with_name("pubsub-rpc")
WORKLOADS = {"W1", "W2", "W3", "W4"}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run(
        [
            str(SCRIPT),
            "bench",
            "--quick",
            "--json",
            "--transport",
            "tcp",
            "--transport",
            "unix",
            "--subscribers",
            "1,3",
            "--timeout",
            "20",
        ],
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def test_meta_states_the_conditions(report: dict[str, Any]) -> None:
    meta = report["meta"]
    assert meta["quick"] is True
    assert meta["repeat"] == 1
    assert meta["load_before"] and meta["load_after"]
    assert "backpressure" in meta["policy"]["ours"]
    assert "256 KiB" in meta["policy"]["floor"]


def test_every_cell_ran_on_both_transports(report: dict[str, Any]) -> None:
    cells = report["cells"]
    labels = {(cell["transport"], cell["label"]) for cell in cells}
    for transport in ("tcp", "unix"):
        assert {label for where, label in labels if where == transport} == {
            "W1 S=1",
            "W1 S=3",
            "W2",
            "W3 C=100",
            "W4",
        }
    assert {cell["workload"] for cell in cells} == WORKLOADS


def test_every_workload_delivered_every_event(report: dict[str, Any]) -> None:
    runs = report["runs"]
    assert len(runs) == 2 * 2 * 5  # systems x transports x cells
    for run in runs:
        assert run["ok"], run
        assert run["problems"] == [], run
        figures = run["figures"]
        if run["label"].startswith(("W1", "W3")):
            assert figures["received"] == figures["deliveries"] > 0, run
        if run["label"] == "W4":
            assert figures["received"] == 1_000, run
    for cell in report["cells"]:
        assert cell["all_delivered"], cell["label"]
        assert cell["failed_runs"] == []


def test_ratios_and_targets_are_reported(report: dict[str, Any]) -> None:
    for cell in report["cells"]:
        primary = {"W1": "delivered_per_s", "W2": "p50_us", "W3": "time_s", "W4": "published_per_s"}[
            cell["workload"]
        ]
        entry = cell["metrics"][primary]
        for system in ("ours", "floor"):
            summary = entry[system]
            assert summary["min"] <= summary["median"] <= summary["max"]
            assert len(summary["values"]) == 1
        assert entry["ratio"] == pytest.approx(entry["ours"]["median"] / entry["floor"]["median"])
        for target in cell["targets"]:
            assert target["met"] in (True, False)
    w3 = [cell for cell in report["cells"] if cell["workload"] == "W3"]
    assert all(cell["metrics"]["kib_per_connection"]["ours"]["median"] > 0 for cell in w3)
