"""Model history at scale: 1,000,000 node results, and the models endpoint's query over them.

The database holds 19 daily jobs (200 nodes a run: 150 models and 50 tests, one run a day
for 200 days: 760,000 rows) and one hourly job (100 nodes: 80 models and 20 tests, 24 runs a
day for 100 days: 240,000 rows), built in bulk. Durations drift slowly upwards so the trend
has something to find.

Measured through ``RunService.models`` (what ``GET …/jobs/{j}/models?window=30d`` calls:
the job looked up for the caller's org, the window read from the covering index, the
statistics computed): p50/p95 of a daily job over 30 days (the goal: p95 < 20 ms), and of
the hourly job over 7 and 30 days (reported, the heaviest case: 57,600 rows in 30 days).
Writes bench/results/model_history.json; exits 1 when the goal is missed.

    python bench/model_history.py [--keep path/to/db]
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
from app.settings import Settings
from app.store import Store
from app.store.history import outcome_of

RESULTS = Path(__file__).parent / "results" / "model_history.json"
SAMPLES = 300
GOAL_P95_MS = 20.0
# The data ends now, so the endpoint's windows (which end now) see whole days of it.
NOW = datetime.now(UTC)
DAILY_JOBS, DAILY_DAYS, DAILY_MODELS, DAILY_TESTS = 19, 200, 150, 50
HOURLY_DAYS, HOURLY_MODELS, HOURLY_TESTS = 100, 80, 20
_RUN_INSERT = (
    "INSERT INTO runs (id, org_id, project_id, job_id, job_type, status, start_time,"
    " end_time, duration_seconds, triggered_by, command, job_version, executor, snapshot,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, 'build', ?, ?, ?, ?, 'scheduled',"
    " 'dbt build', 1, 'local', ?, ?, ?)"
)
_NODE_INSERT = (
    "INSERT INTO node_results (run_id, node_id, job_id, run_at, outcome, unique_id, name,"
    " resource_type, status, execution_time, thread_id, source)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Thread-1', 'artifacts')"
)


class Seeded(msgspec.Struct):
    org_id: str
    org_slug: str
    project_id: str
    daily: list[str]
    hourly: str
    rows: int


def _snapshot(project: Project, job: Job) -> str:
    return msgspec.json.encode(
        RunSnapshot(
            project_name=project.name,
            project_kind="dbt",
            image=None,
            path=None,
            service_account=None,
            template_overrides={},
            project_environment={},
            project_resources={},
            job=msgspec.convert(job, JobConfig, from_attributes=True),
            job_version=1,
            argv=["dbt", "build"],
        )
    ).decode()


def _fill(
    store: Store,
    project: Project,
    job: Job,
    runs: int,
    every: timedelta,
    models: int,
    tests: int,
    rng: random.Random,
) -> int:
    conn = store.database.db.conn
    snapshot = _snapshot(project, job)
    base = {f"model.shop.m{i:03d}": rng.uniform(0.5, 60.0) for i in range(models)}
    base |= {f"test.shop.t{i:03d}.abc": rng.uniform(0.05, 2.0) for i in range(tests)}
    with store.database.write():
        conn.executemany(
            "INSERT INTO node_names (unique_id) VALUES (?) ON CONFLICT DO NOTHING",
            [(u,) for u in base],
        )
    numbers = dict(conn.execute("SELECT unique_id, id FROM node_names").fetchall())
    written = 0
    run_rows: list[tuple[Any, ...]] = []
    node_rows: list[tuple[Any, ...]] = []
    for k in range(runs):
        start = NOW - every * (runs - k)
        stamp = to_text(start)
        failing = k % 17 == 0
        run_id = f"run_{job.id[4:]}{k:06d}"
        run_rows.append(
            (
                run_id,
                job.org_id,
                project.id,
                job.id,
                "failed" if failing else "success",
                stamp,
                to_text(start + timedelta(minutes=20)),
                1200.0,
                snapshot,
                stamp,
                stamp,
            )
        )
        drift = 1 + k / runs * 0.3  # 30 % slower by the end
        for n, (unique_id, seconds) in enumerate(base.items()):
            resource_type, _, rest = unique_id.partition(".")
            status = (
                "error"
                if failing and n == 3
                else ("success" if resource_type == "model" else "pass")
            )
            node_rows.append(
                (
                    run_id,
                    numbers[unique_id],
                    job.id,
                    int(start.timestamp()),
                    outcome_of(status),
                    unique_id,
                    rest.split(".")[1],
                    resource_type,
                    status,
                    seconds * drift * rng.uniform(0.8, 1.2),
                )
            )
        if len(node_rows) >= 100_000 or k == runs - 1:
            with store.database.write():
                conn.executemany(_RUN_INSERT, run_rows)
                conn.executemany(_NODE_INSERT, node_rows)
            written += len(node_rows)
            run_rows, node_rows = [], []
    return written


def build(path: Path) -> Seeded:
    store = Store(path)
    store.migrate()
    store.database.db.conn.execute("PRAGMA synchronous = OFF")  # a throwaway database
    org = store.orgs.get_or_create("bench")
    project = Project(
        id=new_id("proj"),
        org_id=org.id,
        org_slug=org.slug,
        name="warehouse",
        kind="dbt",
        created_at=NOW,
        updated_at=NOW,
    )
    store.projects.save(project)
    rng = random.Random(5)

    def job(name: str) -> Job:
        made = Job(
            id=new_id("job"),
            org_id=org.id,
            project_id=project.id,
            name=name,
            command="dbt build",
            version=1,
            created_at=NOW,
            updated_at=NOW,
        )
        store.jobs.insert(made)
        return made

    daily = [job(f"daily-{i:02d}") for i in range(DAILY_JOBS)]
    hourly = job("hourly")
    rows = 0
    for made in daily:
        rows += _fill(
            store, project, made, DAILY_DAYS, timedelta(days=1), DAILY_MODELS, DAILY_TESTS, rng
        )
    rows += _fill(
        store,
        project,
        hourly,
        HOURLY_DAYS * 24,
        timedelta(hours=1),
        HOURLY_MODELS,
        HOURLY_TESTS,
        rng,
    )
    store.database.db.conn.execute("ANALYZE")
    store.database.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return Seeded(org.id, org.slug, project.id, [j.id for j in daily], hourly.id, rows)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build the database here and keep it")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="runyard-bench-history-"))
    path = args.keep or folder / "history.db"
    started = time.perf_counter()
    seeded = build(path)
    build_seconds = time.perf_counter() - started
    print(f"built {seeded.rows:,} node results in {build_seconds:.1f} s")
    container = Container(Settings(database=str(path), executor="local"))
    principal = Principal(
        org_id=seeded.org_id, org_slug=seeded.org_slug, role="viewer", token_id="bench"
    )
    runs = container.runs

    def daily(i: int) -> None:
        job_id = seeded.daily[i % len(seeded.daily)]
        report = runs.models(
            principal, seeded.project_id, job_id, timedelta(days=30), "30d", ["model"]
        )
        assert report.total == DAILY_MODELS, report.total

    def hourly(days: int) -> Callable[[int], None]:
        def measure(_: int) -> None:
            report = runs.models(
                principal,
                seeded.project_id,
                seeded.hourly,
                timedelta(days=days),
                f"{days}d",
                ["model"],
            )
            assert report.total == HOURLY_MODELS

        return measure

    daily(0)  # warm the caches and the connection
    figures: dict[str, Any] = {
        "node_results": seeded.rows,
        "build_seconds": round(build_seconds, 1),
        "daily_job_30d": timings(daily, SAMPLES)
        | {"rows_in_window": 30 * DAILY_MODELS, "models": DAILY_MODELS},
        "hourly_job_7d": timings(hourly(7), SAMPLES // 3)
        | {"rows_in_window": 7 * 24 * HOURLY_MODELS, "models": HOURLY_MODELS},
        "hourly_job_30d": timings(hourly(30), SAMPLES // 3)
        | {"rows_in_window": 30 * 24 * HOURLY_MODELS, "models": HOURLY_MODELS},
        "goal_p95_ms": GOAL_P95_MS,
    }
    sample = runs.models(
        principal, seeded.project_id, seeded.daily[0], timedelta(days=30), "30d", ["model"]
    )
    figures["sample_trend"] = sample.models[0].trend
    container.store.close()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    ok = figures["daily_job_30d"]["p95_ms"] < GOAL_P95_MS
    print("goal met" if ok else f"goal missed: p95 >= {GOAL_P95_MS} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
