"""The run store at scale: ten million runs (by default one million) of 20,000 jobs in
1,000 projects of 100 orgs of Zipf-like sizes (the biggest holds ~19% of the runs), over a
year, built by bench/_store_build.py once into a file (``--db``) and reused.

Measures, through the functions the API calls:
- a job's newest 50 runs (``RunRepo.page`` with org, project, job), p50/p95;
- the job status endpoint (``RunService.status``, plain and with a 7-day window);
- org-wide run lists of the biggest org (``RunService.list_runs``): all, status=failed,
  since 7 days, one job, and pages 20 cursors deep;
- runs per second through insert + running + finished (``RunRepo.insert``, ``RunTracker``);
- retention (``RetentionWorker.prune_once``) deleting the oldest day while a writer thread
  inserts and finishes runs: the longest a write waited, and the deletion rate;
- bytes per run: the file, and per part (the run row, its indexes, its log, its model-history
  rows and artifact rows), from the database's own page counts (dbstat).
Writes bench/results/store.json; exits 1 when a goal is missed: newest-50 p95 < 5 ms, status
p95 < 10 ms, org list p95 < 20 ms, no write waiting over 100 ms during retention, >= 2,000
status updates per second.

    python bench/store.py [--runs 10000000] [--db /tmp/runs-10m.db]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.container import Container
from app.ids import from_text, new_id
from app.models import Principal
from app.ports import Outcome
from app.services.retention import RetentionWorker
from app.settings import Settings
from app.tracker import RunTracker
from bench._store_build import Seeded, build, load

RESULTS = Path(__file__).parent / "results" / "store.json"
SAMPLES = 1000
LIST_SAMPLES = 300
INSERTS = 5000
WARM_UP = 500
GOALS = {
    "newest_50_p95_ms": 5.0,
    "status_p95_ms": 10.0,
    "org_list_p95_ms": 20.0,
    "retention_max_write_wait_ms": 100.0,
    "status_updates_per_second": 2000,
}


def timings(fn: Callable[[int], Any], samples: int) -> dict[str, float]:
    durations = []
    for i in range(samples):
        started = time.perf_counter()
        fn(i)
        durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    return {
        "p50_ms": round(statistics.median(durations), 3),
        "p95_ms": round(durations[int(len(durations) * 0.95) - 1], 3),
        "max_ms": round(durations[-1], 3),
    }


def measure_reads(container: Container, seeded: Seeded) -> dict[str, Any]:
    rng = random.Random(11)
    picks = [rng.choice(seeded.jobs) for _ in range(SAMPLES)]
    slugs = dict(seeded.orgs)
    runs = container.store.runs

    def newest(i: int) -> None:
        org_id, project_id, job_id = picks[i]
        page = runs.page(org_id, project_id=project_id, job_id=job_id, limit=50)
        assert len(page.runs) == 50 and page.next_cursor is not None

    def status(i: int) -> None:
        org_id, project_id, job_id = picks[i]
        result = container.runs.status(principal(slugs, org_id), project_id, job_id)
        assert result.total_runs >= 1

    def windowed(i: int) -> None:
        org_id, project_id, job_id = picks[i]
        container.runs.status(
            principal(slugs, org_id), project_id, job_id, window=timedelta(days=7), window_text="7d"
        )

    return {
        "newest_50": timings(newest, SAMPLES),
        "status": timings(status, SAMPLES),
        "status_7d_window": timings(windowed, SAMPLES),
    }


def principal(slugs: dict[str, str], org_id: str) -> Principal:
    return Principal(org_id=org_id, org_slug=slugs[org_id], role="viewer", token_id="b")


def measure_lists(container: Container, seeded: Seeded) -> dict[str, Any]:
    """The biggest org's run lists, as GET /api/v1/runs serves them."""
    org_id, slug = seeded.orgs[0]
    who = Principal(org_id=org_id, org_slug=slug, role="viewer", token_id="b")
    rng = random.Random(13)
    jobs = [j for j in seeded.jobs if j[0] == org_id]
    newest = from_text(seeded.newest)
    service = container.runs
    filters: dict[str, Callable[[int], dict[str, Any]]] = {
        "all": lambda i: {},
        "status=failed": lambda i: {"status": "failed"},
        "since=7d": lambda i: {"since": newest - timedelta(days=7)},
        "since=1d,status=failed": lambda i: {
            "since": newest - timedelta(days=1),
            "status": "failed",
        },
        "job=": lambda i: {"job_id": rng.choice(jobs)[2]},
    }
    found: dict[str, Any] = {}
    for name, make in filters.items():

        def one(i: int, make: Callable[[int], dict[str, Any]] = make) -> None:
            page = service.list_runs(who, limit=50, **make(i))
            assert page.runs

        found[name] = timings(one, LIST_SAMPLES)
        found[name]["total"] = service.list_runs(who, limit=1, **make(0)).total
    # Pages 20 cursors deep: each page costs what the first does (no OFFSET).
    cursor = None
    for _ in range(20):
        cursor = service.list_runs(who, limit=50, cursor=cursor).next_cursor
    deep = cursor

    def deep_page(i: int) -> None:
        assert service.list_runs(who, limit=50, cursor=deep).runs

    found["all, page 21"] = timings(deep_page, LIST_SAMPLES)
    plans = {}
    for name, sql in {
        "org page": "SELECT seq FROM runs WHERE org_id = ? ORDER BY seq DESC LIMIT 51",
        "org failed count": "SELECT count(*) FROM (SELECT 1 FROM runs WHERE org_id = ?"
        " AND status = 'failed' LIMIT 10001)",
        "org since count": "SELECT count(*) FROM (SELECT 1 FROM runs WHERE org_id = ?"
        " AND created_at >= '2025-12-24' LIMIT 10001)",
        "org since page": "SELECT seq, results FROM runs WHERE org_id = ?"
        " AND +created_at >= '2025-12-24' ORDER BY seq DESC LIMIT 51",
    }.items():
        rows = container.store.database.rows(f"EXPLAIN QUERY PLAN {sql}", (org_id,))
        plans[name] = "; ".join(r["detail"] for r in rows)
    found["plans"] = plans
    found["org_runs"] = int(
        container.store.database.scalar("SELECT count(*) FROM runs WHERE org_id = ?", (org_id,))
    )
    return found


def measure_writes(container: Container, seeded: Seeded, count: int) -> dict[str, Any]:
    """Runs through insert, running and finished (a bare RunTracker: the store's cost)."""
    store = container.store
    tracker = RunTracker(store, container.settings.log_cap_bytes)
    last = store.runs.last(seeded.jobs[0][2])
    record = store.runs.record(last.id) if last else None
    assert record is not None
    now = datetime.now(UTC)
    prefix = new_id("bench")  # a kept database may hold an earlier pass's runs
    started = time.perf_counter()
    for i in range(-WARM_UP, count):  # the first few warm the caches; not counted
        if i == 0:
            started = time.perf_counter()
        run = msgspec.structs.replace(
            record,
            id=new_id("run"),
            job_name=f"{prefix}-{i}",
            status="pending",
            start_time=None,
            end_time=None,
            duration_seconds=None,
            exit_code=None,
            error=None,
            scheduled_for=None,
            created_at=now,
            updated_at=now,
        )
        assert store.runs.insert(run)
        tracker.started(run.id, now)
        tracker.finished(run.id, Outcome(status="success", end_time=now, exit_code=0))
    seconds = time.perf_counter() - started
    return {
        "runs": count,
        "seconds": round(seconds, 3),
        "runs_per_second": round(count / seconds),  # each: an insert and two status updates
        "status_updates_per_second": round(2 * count / seconds),
        "writes_per_second": round(3 * count / seconds),
    }


def measure_retention(container: Container, seeded: Seeded) -> dict[str, Any]:
    """Retention deletes the runs of the oldest day while a writer records runs."""
    store = container.store
    cutoff = from_text(str(store.database.scalar("SELECT min(created_at) FROM runs")))
    cutoff += timedelta(days=1)
    days = 30
    worker = RetentionWorker(store, days, clock=lambda: cutoff + timedelta(days=days))
    tracker = RunTracker(store, container.settings.log_cap_bytes)
    last = store.runs.last(seeded.jobs[1][2])
    record = store.runs.record(last.id) if last else None
    assert record is not None
    prefix = new_id("retention")
    waits: list[float] = []
    stop = threading.Event()

    def timed(step: Callable[..., object], *args: Any) -> None:
        started = time.perf_counter()
        step(*args)
        waits.append((time.perf_counter() - started) * 1000)

    def writer() -> None:
        i = 0
        while not stop.is_set():
            now = datetime.now(UTC)
            run = msgspec.structs.replace(
                record,
                id=new_id("run"),
                job_name=f"{prefix}-{i}",
                status="pending",
                start_time=None,
                end_time=None,
                duration_seconds=None,
                exit_code=None,
                scheduled_for=None,
                created_at=now,
                updated_at=now,
            )
            timed(store.runs.insert, run)
            timed(tracker.started, run.id, now)
            timed(tracker.finished, run.id, Outcome(status="success", end_time=now))
            i += 1
            time.sleep(0.005)  # a steady writer (~100 writes/s), not a flood

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(3)  # the same writer alone first: what a write costs on this machine now
    alone = sorted(waits[20:])  # the first few warm up
    before = len(waits)
    started = time.perf_counter()
    removed = worker.prune_once()
    seconds = time.perf_counter() - started
    during = waits[before:]
    stop.set()
    thread.join()
    during.sort()
    return {
        "removed": removed,
        "seconds": round(seconds, 1),
        "runs_deleted_per_second": round(removed / seconds) if seconds else None,
        "writes_during": len(during),
        "max_write_wait_ms": round(during[-1], 1) if during else None,
        "p99_write_wait_ms": round(during[int(len(during) * 0.99) - 1], 1) if during else None,
        "writes_over_100_ms": sum(1 for w in during if w > 100),
        "without_retention": {
            "writes": len(alone),
            "max_write_ms": round(alone[-1], 1) if alone else None,
            "p99_write_ms": round(alone[int(len(alone) * 0.99) - 1], 1) if alone else None,
        },
    }


def measure_bytes(path: Path, runs: int) -> dict[str, Any]:
    """Bytes per run by part. Every b-tree but the runs table is measured with dbstat; the
    runs table is the rest of the file (it is most of it, and walking it reads it all)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        owners = dict(
            conn.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
            )
        )
        measured: dict[str, int] = {}
        for name in owners:
            if name == "runs":
                continue
            size = conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name = ? AND aggregate = TRUE", (name,)
            ).fetchone()[0]
            measured[name] = int(size or 0)
        runs_table = (pages - free) * page_size - sum(measured.values())
        run_indexes = sum(b for n, b in measured.items() if owners[n] == "runs")
        with_log = conn.execute("SELECT count(DISTINCT run_id) FROM run_log_chunks").fetchone()[0]
        sample = conn.execute(
            "SELECT avg(length(CAST(results AS BLOB))), avg(length(CAST(snapshot AS BLOB)))"
            " FROM (SELECT results, snapshot FROM runs WHERE results IS NOT NULL"
            " ORDER BY seq DESC LIMIT 10000)"
        ).fetchone()
        missing = (
            conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM runs WHERE status IN ('success', 'failed')"
                " AND results IS NULL)"
            ).fetchone()[0]
            if runs <= 1_000_000
            else None
        )
    finally:
        conn.close()

    def of(*tables: str) -> int:
        return sum(b for n, b in measured.items() if owners[n] in tables)

    found: dict[str, Any] = {
        "file_bytes_per_run": round(pages * page_size / runs),
        "run_row_bytes_per_run": round(runs_table / runs),
        "run_index_bytes_per_run": round(run_indexes / runs),
        "results_list_bytes": round(sample[0] or 0),
        "snapshot_bytes": round(sample[1] or 0),
        "runs_with_extras": with_log,
    }
    if with_log:
        found["log_bytes_per_run"] = round(of("run_log_chunks") / with_log)
        found["model_history_bytes_per_run"] = round(of("node_results", "node_names") / with_log)
        found["artifact_rows_bytes_per_run"] = round(of("run_artifacts") / with_log)
    # The file holds results lists on its newest and oldest runs only (disk space); a run
    # without one is short by about the list's bytes.
    share = _store_share_without_results(missing, runs)
    found["runs_without_results_share"] = round(share, 3)
    found["realistic_bytes_per_run"] = round(
        found["run_row_bytes_per_run"]
        + share * found["results_list_bytes"]
        + found["run_index_bytes_per_run"]
        + found.get("log_bytes_per_run", 0)
        + found.get("model_history_bytes_per_run", 0)
        + found.get("artifact_rows_bytes_per_run", 0)
    )
    return found


def _store_share_without_results(missing: int | None, runs: int) -> float:
    from bench._store_build import DAYS, EXTRAS_DAYS, RESULTS_DAYS

    if missing is not None:
        return missing / runs
    # 97% of runs succeed or fail (bench/_store_build.py _status); those of the middle
    # days carry no list.
    return 0.97 * (DAYS - RESULTS_DAYS - EXTRAS_DAYS) / DAYS


def open_database(path: Path, runs: int) -> tuple[Seeded, float, float]:
    """The database at ``path``, built if missing; (what it holds, build s, migrate s)."""
    built = 0.0
    if not Path(f"{path}.json").exists():
        started = time.perf_counter()
        build(path, runs)
        built = time.perf_counter() - started
    seeded = load(path)
    if seeded.runs != runs:
        sys.exit(f"{path} holds {seeded.runs} runs, not {runs}: pass another --db")
    # Applies migrations a kept database lacks (migration 14's indexes on an older one).
    started = time.perf_counter()
    Container(Settings(database=str(path), executor="local")).stop()
    return seeded, built, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument(
        "--db", type=Path, help="build the database here once and reuse it (never commit it)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "runs.db"
        seeded, built, migrated = open_database(path, args.runs)
        load_before = os.getloadavg()
        container = Container(Settings(database=str(path), executor="local"))
        try:
            reads = measure_reads(container, seeded)
            lists = measure_lists(container, seeded)
            writes = measure_writes(container, seeded, INSERTS)
            sizes = measure_bytes(path, args.runs)
            retention = measure_retention(container, seeded)
        finally:
            container.stop()
        load_after = os.getloadavg()
    list_p95 = max(v["p95_ms"] for k, v in lists.items() if isinstance(v, dict) and "p95_ms" in v)
    figures = {
        "runs": args.runs,
        "jobs": len(seeded.jobs),
        "orgs": len(seeded.orgs),
        "build": seeded.build | {"seconds": round(built, 1)},
        "open_and_migrate_seconds": round(migrated, 1),
        "load_average_1m": [round(load_before[0], 1), round(load_after[0], 1)],
        "newest_50_p95_ms": reads["newest_50"]["p95_ms"],
        "status_p95_ms": max(reads["status"]["p95_ms"], reads["status_7d_window"]["p95_ms"]),
        "org_list_p95_ms": list_p95,
        "retention_max_write_wait_ms": retention["max_write_wait_ms"],
        "status_updates_per_second": writes["status_updates_per_second"],
        "goals": GOALS,
        **reads,
        "org_lists": lists,
        "writes": writes,
        "retention": retention,
        "bytes": sizes,
    }
    print(
        f"{args.runs} runs, {len(seeded.jobs)} jobs, {len(seeded.orgs)} orgs; opened and"
        f" migrated in {migrated:.1f} s; load average {load_before[0]:.1f} -> {load_after[0]:.1f}"
        " (2 cores)"
    )
    for name in ("newest_50", "status", "status_7d_window"):
        t = reads[name]
        print(
            f"{name:24} p50 {t['p50_ms']:7.2f} ms  p95 {t['p95_ms']:7.2f} ms  "
            f"max {t['max_ms']:7.2f} ms"
        )
    print(f"org lists of the biggest org ({lists['org_runs']} runs), 50 a page:")
    for name, t in lists.items():
        if isinstance(t, dict) and "p95_ms" in t:
            total = f"  total {t['total']}" if "total" in t else ""
            print(
                f"  {name:22} p50 {t['p50_ms']:7.2f} ms  p95 {t['p95_ms']:7.2f} ms  "
                f"max {t['max_ms']:7.2f} ms{total}"
            )
    for name, plan in lists["plans"].items():
        print(f"  plan {name}: {plan}")
    print(
        f"insert + running + finished: {writes['runs_per_second']} runs/s "
        f"({writes['status_updates_per_second']} status updates/s, "
        f"{writes['writes_per_second']} writes/s)"
    )
    print(
        f"retention: {retention['removed']} runs in {retention['seconds']} s "
        f"({retention['runs_deleted_per_second']}/s) beside {retention['writes_during']} writes:"
        f" longest wait {retention['max_write_wait_ms']} ms, p99"
        f" {retention['p99_write_wait_ms']} ms, {retention['writes_over_100_ms']} over 100 ms"
        f" (the writer alone: longest {retention['without_retention']['max_write_ms']} ms,"
        f" p99 {retention['without_retention']['p99_write_ms']} ms)"
    )
    print("bytes per run: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    missed = [
        name
        for name, goal in GOALS.items()
        if (figures[name] > goal if name.endswith("_ms") else figures[name] < goal)
    ]
    for name in missed:
        print(f"FAIL: {name} = {figures[name]}, goal {GOALS[name]}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
