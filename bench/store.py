"""The run store at scale: a SQLite database of 1,000,000 runs over 10,000 jobs (10 orgs x
10 projects x 100 jobs, 100 runs each over 100 days), built in bulk.

Prints p50/p95 of a job's newest 50 runs (``RunRepo.page`` as the runs endpoint calls it,
with the org, project and job), of the job status endpoint (``RunService.status``, plain and
with a 7-day window), and how many runs per second go through insert + running + finished
(``RunRepo.insert`` and a ``RunTracker``: two status updates each). Writes
bench/results/store.json; exits 1 when a goal is missed: newest-50 p95 < 5 ms, status
p95 < 10 ms, >= 2,000 status updates per second.

    python bench/store.py [--runs 1000000] [--jobs 10000] [--keep path/to/db]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.container import Container
from app.ids import new_id, to_text
from app.models import Job, JobConfig, Principal, Project, RunSnapshot
from app.ports import Outcome
from app.settings import Settings
from app.store import Store
from app.tracker import RunTracker

RESULTS = Path(__file__).parent / "results" / "store.json"
ORGS, PROJECTS = 10, 10  # per org
SAMPLES = 1000
INSERTS = 5000
WARM_UP = 500
GOALS = {"newest_50_p95_ms": 5.0, "status_p95_ms": 10.0, "status_updates_per_second": 2000}
BASE = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 100
STATUSES = ["success"] * 90 + ["failed"] * 8 + ["timed_out", "cancelled"]
_RUN_INSERT = (
    "INSERT INTO runs (seq, id, org_id, project_id, job_id, job_name, cronjob_name, namespace,"
    " job_type, status, start_time, end_time, duration_seconds, triggered_by, command,"
    " exit_code, error, job_version, executor, scheduled_for, snapshot, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Seeded(msgspec.Struct):
    orgs: list[tuple[str, str]]  # (org id, slug)
    jobs: list[tuple[str, str, str]]  # (org id, project id, job id)


def build(path: Path, runs: int, jobs: int) -> Seeded:
    store = Store(path)
    store.migrate()
    now = BASE + timedelta(days=DAYS)
    seeded = Seeded([], [])
    snapshots: dict[str, str] = {}
    per_project = max(1, jobs // (ORGS * PROJECTS))
    with store.database.write():
        for o in range(ORGS):
            org = store.orgs.get_or_create(f"org{o}")
            seeded.orgs.append((org.id, org.slug))
            for p in range(PROJECTS):
                project = Project(
                    id=new_id("proj"),
                    org_id=org.id,
                    org_slug=org.slug,
                    name=f"project-{p}",
                    kind="dbt",
                    image="ghcr.io/acme/warehouse:1",
                    created_at=BASE,
                    updated_at=BASE,
                )
                store.projects.save(project)
                for j in range(per_project):
                    job = Job(
                        id=new_id("job"),
                        org_id=org.id,
                        project_id=project.id,
                        name=f"job-{j:03d}",
                        command=f"dbt build --select tag:g{j}",
                        schedule=f"{j % 60} * * * *",
                        version=1,
                        created_at=BASE,
                        updated_at=BASE,
                    )
                    store.jobs.insert(job)
                    seeded.jobs.append((org.id, project.id, job.id))
                    snapshots[job.id] = _snapshot(project, job)
    conn = store.database.db.conn
    conn.execute("PRAGMA synchronous = OFF")  # a throwaway database: no need to survive a crash
    span = (now - BASE).total_seconds()
    rng = random.Random(7)
    chunk = 100_000
    for start in range(0, runs, chunk):
        rows = []
        for k in range(start, min(runs, start + chunk)):
            org_id, project_id, job_id = seeded.jobs[k % len(seeded.jobs)]
            created = BASE + timedelta(seconds=span * k / runs)
            newest = k >= runs - len(seeded.jobs)
            status = "running" if newest and k % 50 == 0 else rng.choice(STATUSES)
            duration = rng.uniform(30, 900)
            end = created + timedelta(seconds=duration) if status != "running" else None
            stamp = to_text(created)
            rows.append(
                (
                    k + 1,
                    f"run_{k:016d}",
                    org_id,
                    project_id,
                    job_id,
                    f"{job_id[4:14]}-{k}",
                    "cronjob",
                    "org-ns",
                    "build",
                    status,
                    stamp,
                    to_text(end) if end else None,
                    duration if end else None,
                    "scheduled",
                    "dbt build",
                    0 if status == "success" else (None if end is None else 1),
                    None if status in ("success", "running") else "model x failed",
                    1,
                    "kubernetes",
                    stamp,
                    snapshots[job_id],
                    stamp,
                    to_text(end or created),
                )
            )
        with store.database.write():
            conn.executemany(_RUN_INSERT, rows)
    conn.execute("ANALYZE")
    # Leave no build traffic in the WAL for the measurements to pay for.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return seeded


def _snapshot(project: Project, job: Job) -> str:
    config = msgspec.convert(job, JobConfig, from_attributes=True)
    snapshot = RunSnapshot(
        project_name=project.name,
        project_kind=project.kind,
        image=project.image,
        path=None,
        service_account=None,
        template_overrides={},
        project_environment={},
        project_resources={},
        job=config,
        job_version=1,
        argv=["dbt", "build", "--select", job.command.rsplit(" ", 1)[-1]],
    )
    return msgspec.json.encode(snapshot).decode()


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

    def principal(org_id: str) -> Principal:
        return Principal(org_id=org_id, org_slug=slugs[org_id], role="viewer", token_id="b")

    def status(i: int) -> None:
        org_id, project_id, job_id = picks[i]
        result = container.runs.status(principal(org_id), project_id, job_id)
        assert result.total_runs >= 1

    def windowed(i: int) -> None:
        org_id, project_id, job_id = picks[i]
        container.runs.status(
            principal(org_id), project_id, job_id, window=timedelta(days=7), window_text="7d"
        )

    plan = container.store.database.rows(
        "EXPLAIN QUERY PLAN SELECT seq FROM runs WHERE org_id = ? AND project_id = ?"
        " AND job_id = ? ORDER BY seq DESC LIMIT 51",
        picks[0],
    )
    return {
        "newest_50": timings(newest, SAMPLES),
        "status": timings(status, SAMPLES),
        "status_7d_window": timings(windowed, SAMPLES),
        "newest_50_plan": [r["detail"] for r in plan],
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="build the database here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "runs.db"
        started = time.perf_counter()
        seeded = build(path, args.runs, args.jobs)
        built = time.perf_counter() - started
        container = Container(Settings(database=str(path), executor="local"))
        try:
            reads = measure_reads(container, seeded)
            writes = measure_writes(container, seeded, INSERTS)
        finally:
            container.stop()
        size = path.stat().st_size
    figures = {
        "runs": args.runs,
        "jobs": len(seeded.jobs),
        "build_seconds": round(built, 1),
        "database_mb": round(size / 1e6),
        "newest_50_p95_ms": reads["newest_50"]["p95_ms"],
        "status_p95_ms": reads["status"]["p95_ms"],
        "status_updates_per_second": writes["status_updates_per_second"],
        "goals": GOALS,
        **reads,
        "writes": writes,
    }
    print(
        f"built {args.runs} runs over {len(seeded.jobs)} jobs in {built:.1f} s "
        f"({size / 1e6:.0f} MB)"
    )
    for name in ("newest_50", "status", "status_7d_window"):
        t = reads[name]
        print(
            f"{name:18} p50 {t['p50_ms']:6.2f} ms  p95 {t['p95_ms']:6.2f} ms  "
            f"max {t['max_ms']:6.2f} ms"
        )
    print(
        f"insert + running + finished: {writes['runs_per_second']} runs/s "
        f"({writes['status_updates_per_second']} status updates/s, "
        f"{writes['writes_per_second']} writes/s)"
    )
    print("newest-50 plan:", "; ".join(reads["newest_50_plan"]))
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
