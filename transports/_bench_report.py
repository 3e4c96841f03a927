"""Turning the bench's runs into cells: medians, ranges, ratios to the floor, targets; table and JSON."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final


@dataclass(frozen=True)
class Metric:
    """One reported figure of a workload."""

    key: str
    label: str
    show: Callable[[float], str]
    higher_is_better: bool


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ours / floor against a bound, or an absolute bound on ours."""

    key: str
    bound: float
    at_least: bool  # True: value >= bound; False: value <= bound
    absolute: bool = False  # compare ours' median itself, not the ratio

    def text(self) -> str:
        sign = ">=" if self.at_least else "<="
        return f"{sign} {self.bound:g}{'' if self.absolute else ' x'}"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.bound if self.at_least else value <= self.bound


def _rate(value: float) -> str:
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.1f} k"


def _us(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _mib(value: float) -> str:
    return f"{value / 1048576:.1f} MiB"


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


def _plain(value: float) -> str:
    return f"{value:.2f}"


def _kib(value: float) -> str:
    return f"{value:.1f} KiB"


# Figures W1 and W3 both report: the same key and label, so the two tables read alike.
_DELIVERED_PER_S: Final = Metric("delivered_per_s", "delivered/s", _rate, True)
_SERVER_US_PER_DELIVERY: Final = Metric("server_us_per_delivery", "server CPU us/delivery", _us, False)
_RSS_PEAK: Final = Metric("rss_peak", "server peak RSS", _mib, False)

METRICS: Final[dict[str, list[Metric]]] = {
    "W1": [
        _DELIVERED_PER_S,
        Metric("published_per_s", "published/s", _rate, True),
        _SERVER_US_PER_DELIVERY,
        Metric("server_util", "server CPU util", _plain, False),
        _RSS_PEAK,
    ],
    "W2": [
        Metric("p50_us", "RTT p50 us", _us, False),
        Metric("p90_us", "RTT p90 us", _us, False),
        Metric("p99_us", "RTT p99 us", _us, False),
        Metric("server_us_per_round_trip", "server CPU us/round trip", _us, False),
    ],
    "W3": [
        Metric("time_s", "time to deliver all", _seconds, False),
        _DELIVERED_PER_S,
        _SERVER_US_PER_DELIVERY,
        Metric("kib_per_connection", "RSS per idle conn", _kib, False),
        Metric("setup_s", "setup (connect+subscribe)", _seconds, False),
        _RSS_PEAK,
    ],
    "W4": [
        Metric("published_per_s", "acked publishes/s", _rate, True),
        Metric("ack_p50_us", "ack p50 us", _us, False),
        Metric("ack_p99_us", "ack p99 us", _us, False),
        Metric("server_us_per_publish", "server CPU us/publish", _us, False),
    ],
}


def targets_for(workload: str, params: dict[str, int]) -> list[Target]:
    """The issue's targets for a cell (the W1 ones are stated for S=1 and S=100)."""
    if workload == "W1":
        return {
            1: [Target("delivered_per_s", 0.5, at_least=True)],
            100: [Target("delivered_per_s", 0.8, at_least=True)],
        }.get(params["S"], [])
    if workload == "W2":
        return [Target("p50_us", 1.25, at_least=False)]
    if workload == "W3":
        return [
            Target("time_s", 1.5, at_least=False),
            Target("kib_per_connection", 40, at_least=False, absolute=True),
        ]
    return [Target("published_per_s", 0.8, at_least=True)]


@dataclass
class Cell:
    """One workload configuration on one transport, with the runs of both systems."""

    transport: str
    workload: str
    params: dict[str, int]
    label: str
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"ours": [], "floor": []})


def _summary(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def summarise(cell: Cell) -> dict[str, Any]:
    """Medians, ranges and ratios of a cell, and whether each target is met."""
    metrics: dict[str, Any] = {}
    for metric in METRICS[cell.workload]:
        entry: dict[str, Any] = {}
        for system, runs in cell.runs.items():
            values = [
                run["figures"][metric.key]
                for run in runs
                if run["ok"] and run["figures"].get(metric.key) is not None
            ]
            entry[system] = _summary(values)
        ours, floor = entry["ours"], entry["floor"]
        entry["ratio"] = ours["median"] / floor["median"] if ours and floor and floor["median"] else None
        metrics[metric.key] = entry
    targets = []
    for target in targets_for(cell.workload, cell.params):
        entry = metrics[target.key]
        value = (entry["ours"] or {}).get("median") if target.absolute else entry["ratio"]
        targets.append(
            {"metric": target.key, "target": target.text(), "value": value, "met": target.met(value)}
        )
    failures = [
        {"system": system, "rep": run["rep"], "problems": run["problems"] or [run.get("error")]}
        for system, runs in cell.runs.items()
        for run in runs
        if not run["ok"]
    ]
    return {
        "transport": cell.transport,
        "workload": cell.workload,
        "label": cell.label,
        "params": cell.params,
        "metrics": metrics,
        "targets": targets,
        "failed_runs": failures,
        "all_delivered": not failures and all(cell.runs.values()),
    }


def _spread(summary: dict[str, Any] | None, show: Callable[[float], str]) -> str:
    if summary is None:
        return "n/a"
    return f"{show(summary['median'])} [{show(summary['min'])}-{show(summary['max'])}]"


def render(meta: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    """The human-readable table."""
    lines = [
        f"pubsub-rpc bench: {meta['mode']}, median [min-max] of {meta['repeat']} interleaved run(s); "
        f"ratio = ours / floor, measured in the same run",
        f"machine: {meta['cpus']} CPU(s), load average {meta['load_before']} before, "
        f"{meta['load_after']} after; {meta['pinning']}",
        f"python {meta['python']}, trio {meta['trio']}, orjson {meta['orjson']}",
        f"slow consumers (ours): {meta['policy']['ours']}",
        f"slow consumers (floor): {meta['policy']['floor']}",
        "rates compare only where both servers' CPU util is near 1 (the server is the bottleneck); "
        "server CPU us per delivery compares either way",
    ]
    header = f"{'cell':<16}{'metric':<28}{'ours':>30}{'floor':>30}{'ratio':>8}  target"
    transport = None
    for cell in cells:
        if cell["transport"] != transport:
            transport = cell["transport"]
            lines += ["", f"== {transport.upper()} ==", header, "-" * len(header)]
        goals = {target["metric"]: target for target in cell["targets"]}
        for number, metric in enumerate(METRICS[cell["workload"]]):
            entry = cell["metrics"][metric.key]
            if entry["ours"] is None and entry["floor"] is None:
                continue
            ratio = f"{entry['ratio']:.2f}" if entry["ratio"] is not None else "-"
            goal = goals.get(metric.key)
            verdict = ""
            if goal is not None:
                mark = {True: "met", False: "MISSED", None: "n/a"}[goal["met"]]
                verdict = f"{goal['target']}: {mark}"
            label = cell["label"] if number == 0 else ""
            lines.append(
                f"{label:<16}{metric.label:<28}{_spread(entry['ours'], metric.show):>30}"
                f"{_spread(entry['floor'], metric.show):>30}{ratio:>8}  {verdict}"
            )
        for failure in cell["failed_runs"]:
            problems = "; ".join(map(str, failure["problems"]))
            lines.append(f"{'':<16}FAILED {failure['system']} run {failure['rep']}: {problems}")
    return "\n".join(lines)
