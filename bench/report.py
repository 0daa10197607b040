"""Collects bench/results/*.json into one table (bench/results/summary.md) with the date and
the machine, for the README's performance section. `just bench` runs it last."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
Row = tuple[str, str, str]  # figure, measured, goal


def _api(r: dict[str, Any]) -> list[Row]:
    routes = r["routes"]
    rows = [
        (f"{label}: req/s, p50, p99", f"{s['rps']} req/s, {s['p50_ms']} ms, {s['p99_ms']} ms", "")
        for label, s in routes.items()
    ]
    for label in ("list jobs (50)", "get job"):
        if "ratio_to_bare" in routes.get(label, {}):
            rows.append(
                (f"{label} / bare route throughput", str(routes[label]["ratio_to_bare"]), ">= 0.6")
            )
    return rows


def _k8s_sync(r: dict[str, Any]) -> list[Row]:
    first, second = r["first_deploy"], r["second_deploy"]
    return [
        (
            f"first deploy of {r['jobs']} jobs",
            f"{first['seconds']} s, {first['requests']} API requests ({first['writes']} writes)",
            "",
        ),
        (
            "second deploy",
            f"{second['seconds']} s, {second['requests']} requests, {second['writes']} writes",
            "0 writes",
        ),
    ]


def _local_overhead(r: dict[str, Any]) -> list[Row]:
    rows = [
        (
            "median direct / through runyard",
            f"{r['median_direct_seconds']} s / {r['median_runyard_seconds']} s",
            "",
        ),
        ("ratio (wall clock)", str(r["ratio"]), f"<= {r.get('goal', 1.1)}"),
    ]
    rows += [("ratio (CPU time)", str(r["cpu_ratio"]), "")] if "cpu_ratio" in r else []
    if "median_trigger_to_exec_ms" in r:
        rows.append(
            ("trigger to process start, median", f"{r['median_trigger_to_exec_ms']} ms", "< 100 ms")
        )
    return rows


def _notify(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"{r['runs']} runs finishing at once, {r['notifications']} notifications",
            f"all {r['delivered']} deliverable delivered in "
            f"{r['all_deliverable_delivered_seconds']} s",
            f"< {r.get('goal_seconds', 10)} s",
        ),
    ]


def _load(r: dict[str, Any]) -> list[Row]:
    rows = [
        (
            f"open loop at {r['rate']:.0f} req/s, {r['seconds']} s",
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['errors']} errors",
            "0 errors",
        ),
        ("runs acknowledged / lost", f"{r['triggers']} / {r['lost_runs']}", "0 lost"),
    ]
    if r.get("steps"):
        best = r.get("highest_rate_p99_under_goal")
        rows.append(
            (
                f"highest rate with p99 under {r['goal_ms']:.0f} ms",
                "none" if best is None else f"{best} req/s",
                ">= 300 req/s",
            )
        )
    return rows


def _tracker(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"{r['runs']} Jobs finishing within {r['finish_window_seconds']} s",
            f"all recorded with logs {r['recorded_after_last_finish_seconds']} s after the last "
            "finish",
            f"< {r.get('goal_seconds', 5)} s",
        ),
        (
            "Kubernetes API requests per run; single-Job reads",
            f"{r['requests_per_run']}; {r['single_job_reads']}",
            "no polling of single Jobs",
        ),
    ]


def _store(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"{r['runs']:,} runs over {r['jobs']:,} jobs: newest 50 of a job, p95",
            f"{r['newest_50_p95_ms']} ms",
            "< 5 ms",
        ),
        ("job status, p95", f"{r['status_p95_ms']} ms", "< 10 ms"),
        ("status updates per second", str(r["status_updates_per_second"]), ">= 2,000"),
    ]


def _ui(r: dict[str, Any]) -> list[Row]:
    run = r["run_page"]
    rows = [
        (
            f"run page of a {r['nodes']:,}-node run, p50 / p95",
            f"{run['p50_ms']} ms / {run['p95_ms']} ms"
            + (
                f" (server CPU {run['server_cpu_ms_per_request']} ms a request, load "
                f"{r.get('load_average_1m')})"
                if run.get("server_cpu_ms_per_request") is not None
                else ""
            ),
            f"p95 < {r['goal_p95_ms']:.0f} ms",
        )
    ]
    rows += [
        (
            f"{name} page weight (HTML, CSS, JS)",
            f"{page.get('total_bytes_before_log', page['total_bytes']) / 1024:.0f} KB"
            + (
                f" (+ {page['log_bytes_in_html'] / 1024:.0f} KB of log)"
                if page.get("log_bytes_in_html")
                else ""
            ),
            f"< {r['goal_page_bytes'] // 1024} KB",
        )
        for name, page in r["pages"].items()
    ]
    return rows


def _generic(r: dict[str, Any]) -> list[Row]:
    return [
        (key, str(value), "")
        for key, value in r.items()
        if isinstance(value, int | float | str) and key not in ("benchmark",)
    ][:8]


KNOWN: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "api": _api,
    "k8s_sync": _k8s_sync,
    "local_overhead": _local_overhead,
    "notify": _notify,
    "load": _load,
    "tracker": _tracker,
    "store": _store,
    "ui": _ui,
}


def main() -> int:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()} ({platform.system()}).",
        "",
        "| benchmark | figure | measured | goal |",
        "|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        try:
            result = json.loads(path.read_text())
            rows = KNOWN.get(path.stem, _generic)(result)
        except (ValueError, KeyError) as exc:
            rows = [("(unreadable)", repr(exc), "")]
        for figure, measured, goal in rows:
            lines.append(f"| `bench/{path.stem}.py` | {figure} | {measured} | {goal} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
