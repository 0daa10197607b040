"""API read throughput against a database of 10,000 jobs (200 projects of 50 jobs), or
``--jobs 100000`` (2,000 projects of 50).

Measures `GET /api/v1/projects/{id}/jobs` and `GET .../jobs/{job_id}` over every project
and job, next to a bare Litestar route returning a fixed msgspec Struct, served by the same
uvicorn process, and prints requests/s, p50/p99 and the ratio to the bare route (goal: at
least 0.6); also how long the service takes to start (it loads every job into the
scheduler) and its memory.

    python bench/api.py [--jobs 10000] [--db kept.db] [--seconds 10] [--clients 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.ids import new_id, utcnow
from app.models import Job
from app.services.tokens import TokenService
from app.store import Store
from bench._http import describe, free_port, run_load, wait_for_port
from tests.factories import saved_project

JOBS_PER_PROJECT = 50
RESULTS = Path(__file__).parent / "results" / "api.json"


def seed(path: str, jobs: int) -> tuple[str, list[tuple[str, list[str]]]]:
    """Seed once; a kept database (``--db``) is read back with its token from a side file."""
    side = Path(f"{path}.bench.json")
    if side.exists():
        kept = json.loads(side.read_text())
        if kept["jobs"] == jobs:
            return kept["token"], [(p, list(j)) for p, j in kept["layout"]]
        sys.exit(f"{path} holds {kept['jobs']} jobs, not {jobs}: pass another --db")
    store = Store(path)
    store.migrate()
    token, _ = TokenService(store).create("bench", "admin")
    org = store.orgs.by_slug("bench")
    assert org is not None
    now = utcnow()
    layout: list[tuple[str, list[str]]] = []
    for p in range(max(1, jobs // JOBS_PER_PROJECT)):
        project = saved_project(
            store,
            org_id=org.id,
            org_slug=org.slug,
            name=f"project-{p:04d}",
            kind="dbt",
            environment={"WAREHOUSE": "prod"},
        )
        job_ids = []
        with store.database.write():  # one transaction per project: seeding 100,000 jobs
            for j in range(JOBS_PER_PROJECT):
                job = Job(
                    id=new_id("job"),
                    org_id=org.id,
                    project_id=project.id,
                    version=1,
                    name=f"job-{j:02d}",
                    command=f"dbt build --select tag:group_{j}",
                    schedule=f"{j % 60} {j % 24} * * *",
                    timezone="Europe/Berlin",
                    description="nightly refresh of one group of models",
                    slack_channel="#data-alerts",
                    slack_alerts_enabled=True,
                    environment={"THREADS": "4"},
                    resources={"requests": {"cpu": "500m"}},
                    created_at=now,
                    updated_at=now,
                )
                store.jobs.insert(job)
                job_ids.append(job.id)
        layout.append((project.id, job_ids))
    store.close()
    side.write_text(json.dumps({"jobs": jobs, "token": token, "layout": layout}))
    return token, layout


def memory_mb(pid: int) -> float:
    """The server's resident memory (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_wrk(url: str, paths: list[str], token: str, clients: int, seconds: float) -> dict[str, Any]:
    """One route under wrk (C, so the load generator takes little of the two cores)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        listed = ", ".join(json.dumps(p) for p in paths)
        script.write(
            f"paths = {{{listed}}}\n"
            "request = function() return wrk.format('GET', paths[math.random(#paths)]) "
            "end\n"
        )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            script.name,
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)

    def ms(text: str) -> float:
        value = float(text.rstrip("msu"))
        return (
            value / 1000
            if text.endswith("us")
            else value * 1000
            if text.endswith("s") and not text.endswith("ms")
            else value
        )

    latency = {
        line.split()[0]: ms(line.split()[1])
        for line in out.splitlines()
        if line.strip().startswith(("50%", "99%"))
    }
    rps = float(
        next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec"))
    )
    errors = next((line.strip() for line in out.splitlines() if "Non-2xx" in line), "")
    return {
        "rps": round(rps, 1),
        "p50_ms": round(latency["50%"], 2),
        "p99_ms": round(latency["99%"], 2),
        "statuses": {"non-2xx": errors or 0},
        "generator": "wrk",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (wrk)")
    parser.add_argument(
        "--python-client",
        action="store_true",
        help="use the built-in asyncio client even when wrk is installed",
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="50 per project")
    parser.add_argument("--db", help="seed this database once and reuse it (never commit it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or os.path.join(tmp, "bench.db")
        started = time.perf_counter()
        token, layout = seed(db, args.jobs)
        projects = len(layout)
        print(
            f"{projects * JOBS_PER_PROJECT} jobs in {projects} projects"
            f" ready in {time.perf_counter() - started:.1f}s"
        )
        port = free_port()
        launched = time.perf_counter()
        server = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).parent / "_apiserver.py"),
                "--db",
                db,
                "--port",
                str(port),
            ],
            env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        try:
            wait_for_port("127.0.0.1", port, timeout=300)
            # Listening means started: the scheduler has loaded every job by then.
            startup = {
                "seconds": round(time.perf_counter() - launched, 2),
                "memory_mb": memory_mb(server.pid),
            }
            print(f"service started in {startup['seconds']} s, {startup['memory_mb']} MB")
            headers = {"Authorization": f"Bearer {token}"}
            rng = random.Random(7)

            def bare(i: int) -> tuple[str, str, str, bytes]:
                return "bare route", "GET", "/bench/bare", b""

            def list_jobs(i: int) -> tuple[str, str, str, bytes]:
                project_id, _ = layout[rng.randrange(projects)]
                return "list jobs (50)", "GET", f"/api/v1/projects/{project_id}/jobs", b""

            def get_job(i: int) -> tuple[str, str, str, bytes]:
                project_id, jobs = layout[rng.randrange(projects)]
                return (
                    "get job",
                    "GET",
                    f"/api/v1/projects/{project_id}/jobs/{jobs[rng.randrange(50)]}",
                    b"",
                )

            results: dict[str, dict[str, Any]] = {}
            if shutil.which("wrk") and not args.python_client:
                server_url = f"http://127.0.0.1:{port}"
                routes = {
                    "bare route": ["/bench/bare"],
                    "list jobs (50)": [f"/api/v1/projects/{p}/jobs" for p, _ in layout],
                    "get job": [
                        f"/api/v1/projects/{p}/jobs/{j}" for p, jobs in layout for j in jobs[:5]
                    ],
                }
                for paths in routes.values():
                    run_wrk(server_url, paths, token, 4, 1)  # warm-up
                # Rounds alternate the routes, so whatever else the machine runs weighs on
                # each alike; a route's figure is its median round, the ratios are medians
                # of the per-round ratios.
                rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in routes}
                for _ in range(args.rounds):
                    for label, paths in routes.items():
                        rounds[label].append(
                            run_wrk(
                                server_url,
                                paths,
                                token,
                                args.clients,
                                max(1.0, args.seconds / args.rounds),
                            )
                        )
                for label, measured in rounds.items():
                    ordered = sorted(measured, key=lambda r: float(r["rps"]))
                    results[label] = ordered[len(ordered) // 2] | {
                        "rounds_rps": [r["rps"] for r in measured]
                    }
            for pick in () if results else (bare, list_jobs, get_job):
                asyncio.run(run_load("127.0.0.1", port, headers, pick, clients=4, seconds=1))
                stats, elapsed = asyncio.run(
                    run_load(
                        "127.0.0.1", port, headers, pick, clients=args.clients, seconds=args.seconds
                    )
                )
                results.update({label: s.summary(elapsed) for label, s in stats.items()})
            startup["memory_mb_after"] = memory_mb(server.pid)
        finally:
            server.terminate()
            server.wait(10)
    base = float(results["bare route"]["rps"])
    for label in ("list jobs (50)", "get job"):
        per_round = [
            float(r) / float(b)
            for r, b in zip(
                results[label].get("rounds_rps", [results[label]["rps"]]),
                results["bare route"].get("rounds_rps", [base]),
                strict=True,
            )
        ]
        results[label]["ratio_to_bare"] = round(sorted(per_round)[len(per_round) // 2], 3)
    print(describe(list(results.items())))
    for label in ("list jobs (50)", "get job"):
        print(f"  ratio {label} / bare: {results[label]['ratio_to_bare']} (goal >= 0.6)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "api",
                "jobs": projects * JOBS_PER_PROJECT,
                "projects": projects,
                "startup": startup,
                "load_average_1m": round(os.getloadavg()[0], 1),
                "clients": args.clients,
                "seconds": args.seconds,
                "routes": results,
            },
            indent=2,
        )
    )
    errors = sum(
        n
        for s in results.values()
        for code, n in s["statuses"].items()
        if isinstance(code, int) and code >= 500
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
