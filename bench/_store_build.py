"""The database bench/store.py measures: many orgs of very different sizes, their projects
and jobs, and runs as runyard records them (real snapshot documents, a typical dbt results
list, statuses, durations), spread over a year. The oldest days also hold what a run leaves
beside its row (log chunks, model-history rows, artifact rows), so retention deletes what
it deletes in production, cascades included.

Built once into a file and reused (``--db``): ten million runs take a while to write.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from app.ids import new_id, to_text
from app.models import Job, JobConfig, NodeSummary, Project, RunSnapshot
from app.store import Store

BASE = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 365
ORGS = 100
PROJECTS = 1000
JOBS_PER_PROJECT = 20
# Every fifth job runs about three times as often as the others: 10M runs over 20,000
# jobs is ~350 runs of a quiet job and ~1,050 of a busy one.
BUSY_EVERY, BUSY_WEIGHT = 5, 3
NODES = 12  # a typical results list (a job selecting a tag): 8 models and 4 tests
# What a run leaves beside its row, written for the runs of the oldest days only (retention
# deletes those first); the per-run bytes of each are reported from these.
EXTRAS_DAYS = 3
RESULTS_DAYS = 60
LOG_BYTES = 6000  # a dbt build log of 20 nodes, as the capped log keeps it
_RUN_INSERT = (
    "INSERT INTO runs (seq, id, org_id, project_id, job_id, job_name, cronjob_name, namespace,"
    " job_type, status, start_time, end_time, duration_seconds, triggered_by, command,"
    " exit_code, error, job_version, executor, scheduled_for, results, snapshot, created_at,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Seeded(msgspec.Struct):
    orgs: list[tuple[str, str]]  # (org id, slug), the biggest first
    jobs: list[tuple[str, str, str]]  # (org id, project id, job id)
    runs: int
    newest: str  # created_at of the newest run
    build: dict[str, Any] = msgspec.field(default_factory=dict)


def _status(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.90:
        return "success"
    if roll < 0.97:
        return "failed"
    return "timed_out" if roll < 0.98 else "cancelled"


def _results(project: str, job: int, failed: bool, rng: random.Random) -> str:
    nodes = []
    for n in range(NODES):
        model = n < 8
        name = f"{'stg' if n < 4 else 'fct'}_{project.replace('-', '_')}_{job}_{n}"
        failing = failed and n == 5
        nodes.append(
            NodeSummary(
                unique_id=(
                    f"model.warehouse.{name}"
                    if model
                    else f"test.warehouse.not_null_{name}_id.{rng.getrandbits(40):010x}"
                ),
                name=name if model else f"not_null_{name}_id",
                resource_type="model" if model else "test",
                status=("error" if failing else "success") if model else "pass",
                execution_time=round(rng.uniform(0.05, 40), 3),
                message=(
                    'Database Error in model: relation "raw.orders" does not exist'
                    if failing
                    else ("OK" if model else None)
                ),
            )
        )
    return msgspec.json.encode(nodes).decode()


def _snapshot(project: Project, job: Job) -> str:
    config = msgspec.convert(job, JobConfig, from_attributes=True)
    snapshot = RunSnapshot(
        project_name=project.name,
        project_kind=project.kind,
        image=project.image,
        path=None,
        service_account="runyard-runner",
        template_overrides={},
        project_environment={"DBT_TARGET": "prod", "WAREHOUSE": "analytics"},
        project_resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
        job=config,
        job_version=1,
        argv=["dbt", "build", "--select", job.command.rsplit(" ", 1)[-1]],
    )
    return msgspec.json.encode(snapshot).decode()


def _layout(store: Store, rng: random.Random, runs: int) -> tuple[Seeded, list[dict[str, Any]]]:
    """Orgs with Zipf-like sizes (of 100, the biggest holds ~19% of all projects), projects
    of 20 jobs; per job what its runs repeat (snapshot, results lists). Fewer runs than ten
    million: fewer projects and orgs, so that jobs keep their hundreds of runs."""
    projects = min(PROJECTS, max(10, runs // 10_000))
    org_count = max(1, projects * ORGS // PROJECTS)
    weights = [1 / (i + 1) for i in range(org_count)]
    owners = rng.choices(range(org_count), weights=weights, k=projects)
    owners[:org_count] = range(org_count)  # every org has a project
    orgs = [store.orgs.get_or_create(f"org{o:03d}") for o in range(org_count)]
    seeded = Seeded([(o.id, o.slug) for o in orgs], [], 0, "")
    templates: list[dict[str, Any]] = []
    for p, owner in enumerate(owners):
        org = orgs[owner]
        project = Project(
            id=new_id("proj"),
            org_id=org.id,
            org_slug=org.slug,
            name=f"project-{p:04d}",
            kind="dbt",
            image="ghcr.io/acme/warehouse:2026.11.3",
            created_at=BASE,
            updated_at=BASE,
        )
        store.projects.save(project)
        for j in range(JOBS_PER_PROJECT):
            job = Job(
                id=new_id("job"),
                org_id=org.id,
                project_id=project.id,
                name=f"job-{j:02d}",
                command=f"dbt build --select tag:group_{j}",
                schedule=f"{j % 60} {j % 24} * * *",
                timezone="Europe/Berlin",
                description="nightly refresh of one group of models",
                slack_channel="#data-alerts",
                slack_alerts_enabled=True,
                environment={"THREADS": "4"},
                resources={"requests": {"cpu": "500m"}},
                version=1,
                created_at=BASE,
                updated_at=BASE,
            )
            store.jobs.insert(job)
            seeded.jobs.append((org.id, project.id, job.id))
            templates.append(
                {
                    "snapshot": _snapshot(project, job),
                    "ok": _results(project.name, j, False, rng),
                    "failed": _results(project.name, j, True, rng),
                    "name": job.name,
                }
            )
    counts = {org_id: 0 for org_id, _ in seeded.orgs}
    for org_id, _, _ in seeded.jobs:
        counts[org_id] += 1
    seeded.orgs.sort(key=lambda o: -counts[o[0]])
    return seeded, templates


def build(path: Path, runs: int) -> Seeded:
    """Write the database at ``path`` (which must not exist) and return what it holds."""
    started = time.perf_counter()
    store = Store(path)
    store.migrate()
    rng = random.Random(7)
    with store.database.write():
        seeded, templates = _layout(store, rng, runs)
    store.close()
    # A throwaway database: no journal, no syncing, a big cache; WAL again at the end.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    # Indexes are built after the rows (as a migration builds a new one), each timed.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'"
        " AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    picks = [
        k for k in range(len(seeded.jobs)) for _ in range(1 if k % BUSY_EVERY else BUSY_WEIGHT)
    ]
    span = DAYS * 86400.0
    extras_until = BASE + timedelta(days=EXTRAS_DAYS)
    results_from = runs - int(runs * RESULTS_DAYS / DAYS)
    chunk = 50_000
    extra_runs: list[tuple[str, int, str, float]] = []
    error = 'dbt exited with 1: Database Error in model fct_orders: relation "raw.orders" missing'
    for start in range(0, runs, chunk):
        rows = []
        for k in range(start, min(runs, start + chunk)):
            index = rng.choice(picks)
            org_id, project_id, job_id = seeded.jobs[index]
            template = templates[index]
            created = BASE + timedelta(seconds=span * k / runs)
            newest = k >= runs - 200
            status = ("running" if k % 2 else "pending") if newest else _status(rng)
            duration = rng.uniform(30, 900)
            end = created + timedelta(seconds=duration) if not newest else None
            stamp = to_text(created)
            results = None
            # Results lists on the newest runs and the oldest (retention's) only: on every
            # run the file would not fit this machine's disk. Bytes per run are reported
            # from the runs that carry one.
            if k >= results_from or created < extras_until:
                if status == "success":
                    results = template["ok"]
                elif status == "failed":
                    results = template["failed"]
            rows.append(
                (
                    k + 1,
                    f"run_{k:016d}",  # as long as a real id
                    org_id,
                    project_id,
                    job_id,
                    f"{template['name']}-{k:08d}",
                    template["name"],
                    "runyard-org",
                    "build",
                    status,
                    stamp if status != "pending" else None,
                    to_text(end) if end else None,
                    duration if end else None,
                    "scheduled",
                    "dbt build",
                    0 if status == "success" else (None if end is None else 1),
                    None if status in ("success", "running", "pending") else error,
                    1,
                    "kubernetes",
                    stamp,
                    results,
                    template["snapshot"],
                    stamp,
                    to_text(end or created),
                )
            )
            if created < extras_until and status == "success":
                extra_runs.append((f"run_{k:016d}", index, job_id, created.timestamp()))
        conn.execute("BEGIN")
        conn.executemany(_RUN_INSERT, rows)
        conn.execute("COMMIT")
        if (start + chunk) % 1_000_000 == 0:
            print(f"  {start + len(rows):>10} runs ({time.perf_counter() - started:.0f} s)")
    _extras(conn, templates, extra_runs)
    loaded = time.perf_counter() - started
    index_seconds: dict[str, float] = {}
    for name, sql in indexes:
        at = time.perf_counter()
        conn.execute(sql)
        index_seconds[name] = round(time.perf_counter() - at, 1)
        print(f"  index {name}: {index_seconds[name]} s")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    seeded.runs = runs
    seeded.newest = to_text(BASE + timedelta(seconds=span * (runs - 1) / runs))
    seeded.build = {
        "load_seconds": round(loaded, 1),
        "index_seconds": index_seconds,
        "extras_runs": len(extra_runs),
        "results_from_seq": results_from + 1,
        "sizes": sizes(conn),
        "sample": sample_sizes(conn, results_from + 1),
    }
    conn.close()
    Path(f"{path}.json").write_text(json.dumps(msgspec.to_builtins(seeded)))
    return seeded


def _extras(
    conn: sqlite3.Connection,
    templates: list[dict[str, Any]],
    extra_runs: list[tuple[str, int, str, float]],
) -> None:
    """Log chunks, model-history rows and two artifact rows for each successful run of the
    oldest days."""
    line = "12:00:01  1 of 20 START sql table model warehouse.fct_orders ....... [RUN]\n"
    log = (line * (LOG_BYTES // len(line) + 1))[:LOG_BYTES]
    node_ids: dict[str, int] = {}
    for start in range(0, len(extra_runs), 5000):
        logs, nodes, artifacts = [], [], []
        names: list[tuple[int, str]] = []
        for run_id, index, job_id, at in extra_runs[start : start + 5000]:
            stamp = to_text(datetime.fromtimestamp(at, UTC))
            logs.append((run_id, 1, stamp, log))
            for summary in msgspec.json.decode(templates[index]["ok"], type=list[NodeSummary]):
                node = node_ids.get(summary.unique_id)
                if node is None:
                    node = node_ids[summary.unique_id] = len(node_ids) + 1
                    names.append((node, summary.unique_id))
                nodes.append(
                    (
                        run_id,
                        node,
                        job_id,
                        int(at),
                        0,
                        summary.unique_id,
                        summary.name,
                        summary.resource_type,
                        summary.status,
                        stamp,
                        stamp,
                        summary.execution_time,
                        48213 if summary.resource_type == "model" else None,
                        '{"_message": "SELECT 48213", "code": "SELECT", "rows_affected": 48213}',
                        summary.message,
                        "Thread-1",
                        "artifacts",
                    )
                )
            for name in ("run_results.json", "manifest.json"):
                artifacts.append((run_id, name, f"{hash((run_id, name)) & (2**64 - 1):064x}", 9000))
        with conn:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO node_names (id, unique_id) VALUES (?, ?)", names)
            conn.executemany(
                "INSERT INTO run_log_chunks (run_id, seq, at, data) VALUES (?, ?, ?, ?)", logs
            )
            conn.executemany(
                "INSERT INTO node_results (run_id, node_id, job_id, run_at, outcome, unique_id,"
                " name, resource_type, status, started_at, completed_at, execution_time,"
                " rows_affected, adapter_response, message, thread_id, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                nodes,
            )
            conn.executemany(
                "INSERT INTO run_artifacts (run_id, name, sha256, size, created_at)"
                " VALUES (?, ?, ?, ?, '2025-01-01T00:00:00.000000Z')",
                artifacts,
            )
            conn.executemany(
                "UPDATE runs SET log_bytes = ? WHERE id = ?", [(LOG_BYTES, r[0]) for r in logs]
            )


def sizes(conn: sqlite3.Connection) -> dict[str, int]:
    """Bytes per table, its indexes counted with it (dbstat: reads every page once)."""
    owner = dict(
        conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')")
    )
    found: dict[str, int] = {}
    for name, size in conn.execute(
        "SELECT name, sum(pgsize) FROM dbstat WHERE aggregate = TRUE GROUP BY name"
    ):
        table = owner.get(name, name)
        found[table] = found.get(table, 0) + int(size)
    return found


def sample_sizes(conn: sqlite3.Connection, first_seq: int) -> dict[str, float]:
    """Average stored bytes of a run's columns where it carries a results list, and of
    what the oldest runs carry beside their row (logs, model-history rows, artifacts)."""
    row = conn.execute(
        "SELECT avg(length(CAST(snapshot AS BLOB))), avg(length(CAST(results AS BLOB))),"
        " count(*) FROM runs WHERE seq >= ? AND results IS NOT NULL",
        (first_seq,),
    ).fetchone()
    return {"snapshot_bytes": row[0] or 0.0, "results_bytes": row[1] or 0.0, "runs": row[2]}


def load(path: Path) -> Seeded:
    return msgspec.json.decode(Path(f"{path}.json").read_bytes(), type=Seeded)
