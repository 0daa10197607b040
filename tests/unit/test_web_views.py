"""The web UI's formatting and server-drawn charts (app/web/format.py, charts.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.services.history import TimelineNode
from app.web.charts import gantt, run_history, sparkline
from app.web.format import clip, duration, ordinal, percent, run_status, status_class, when
from tests.factories import run_record


def test_durations_and_times() -> None:
    assert duration(None) == "—"
    assert duration(3.25) == "3.2s"
    assert duration(42.4) == "42s"
    assert duration(95) == "1m 35s"
    assert duration(3 * 3600 + 61) == "3h 01m"
    assert when(datetime(2026, 4, 28, 2, 0, tzinfo=UTC)) == "2026-04-28 02:00:00 UTC"
    assert percent(0.856) == "86%" and percent(None) == "—"
    assert clip("abcdef", 4) == "abc…" and clip(None, 4) == ""


def test_queued_runs_say_their_place_in_line() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"
    ]  # fmt: skip
    assert run_status("queued", 2) == "queued, 2nd in line"
    assert run_status("queued", None) == "queued"  # read before its place was known
    assert run_status("running", 3) == "running"  # a place only means something queued
    assert run_status(None) == "no runs"
    assert status_class("queued") == "status status-queued"


def test_status_classes_cannot_break_out_of_the_attribute() -> None:
    assert status_class("timed_out") == "status status-timed_out"
    assert status_class("runtime error") == "status status-runtimeerror"
    assert status_class('x" onload="y') == "status status-xonloady"
    assert status_class(None) == "status status-unknown"


def test_run_history_bars_link_to_runs_oldest_first() -> None:
    runs = [
        run_record(org_id="o", run_id="run_now", status="running"),
        run_record(org_id="o", run_id="run_new", status="failed", duration_seconds=10.0),
        run_record(org_id="o", run_id="run_old", status="success", duration_seconds=40.0),
    ]
    chart = run_history(runs)  # newest first, as the services list them
    assert [b.href for b in chart.bars] == [
        "/ui/runs/run_old",
        "/ui/runs/run_new",
        "/ui/runs/run_now",
    ]
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.href == "/ui/runs/run_old" and "success" in tallest.label
    assert all(b.height >= 2 for b in chart.bars)  # an unfinished run is still clickable
    assert chart.bars[1].css == "status status-failed" and "10s" in chart.bars[1].label
    assert sparkline([]).paths == [] and sparkline([]).label == "No runs"


def test_sparkline_is_one_path_per_status() -> None:
    runs = [
        run_record(org_id="o", status="failed", duration_seconds=10.0),
        run_record(org_id="o", status="success", duration_seconds=20.0),
        run_record(org_id="o", status="success", duration_seconds=5.0),
    ]
    spark = sparkline(runs)  # newest first: oldest (5 s) drawn at x=0
    assert [(p.css, p.label) for p in spark.paths] == [
        ("status status-failed", "1 failed"),
        ("status status-success", "2 success"),
    ]
    success = spark.paths[1].d
    assert success == "M0 20v-5h4V20zM5 20v-20h4V20z"
    assert spark.label == "The last 3 runs, oldest first: 1 failed, 2 success"


def _node(i: int, offset: float | None, seconds: float | None) -> TimelineNode:
    return TimelineNode(
        unique_id=f"model.p.m{i}",
        name=f"m{i}",
        resource_type="model",
        status="success",
        started_at=None,
        completed_at=None,
        offset_seconds=offset,
        duration_seconds=seconds,
        thread_id=None,
        rows_affected=None,
        adapter_response=None,
        message=None,
    )


def test_gantt_keeps_the_longest_nodes_in_start_order() -> None:
    nodes = [_node(i, float(i), float(i % 10 + 1)) for i in range(300)] + [_node(999, None, 5.0)]
    chart = gantt(nodes, limit=50)
    assert chart is not None
    assert chart.shown == 50 and chart.total == 300  # the untimed node is left out
    offsets = [row.x for row in chart.rows]
    assert offsets == sorted(offsets)
    # The 30 nodes of 10 seconds and 20 of the 30 of 9 seconds: the longest.
    assert sum(", 10s," in row.label for row in chart.rows) == 30
    assert sum(", 9.0s," in row.label for row in chart.rows) == 20
    assert gantt([_node(1, None, None)]) is None
