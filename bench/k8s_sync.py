"""Deploying a project of 1,000 scheduled jobs with the Kubernetes executor, against the
emulator (tests/harness/k8s.py: a real HTTP server, the real client).

Prints wall time and API requests for the first deploy (one LIST, then a create per job),
a second deploy (one LIST and no writes: it exits 1 if there is any write), and one
reconcile pass; writes the figures to bench/results/k8s_sync.json.

    python bench/k8s_sync.py [--jobs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.container import Container
from app.ids import new_id, utcnow
from app.models import Job
from app.ports import SyncReport
from app.settings import Settings
from tests.factories import saved_project
from tests.harness.k8s import FakeCluster

RESULTS = Path(__file__).parent / "results" / "k8s_sync.json"


def seed(container: Container, jobs: int) -> tuple[Any, str]:
    token, _ = container.tokens.create("bench", "admin")
    principal = container.tokens.authenticate(token)
    now = utcnow()
    project = saved_project(
        container.store,
        org_id=principal.org_id,
        org_slug=principal.org_slug,
        name="warehouse",
        kind="dbt",
        image="ghcr.io/acme/warehouse:2026.4",
        environment={"WAREHOUSE": "prod"},
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
    )
    for i in range(jobs):
        container.store.jobs.insert(
            Job(
                id=new_id("job"),
                org_id=principal.org_id,
                project_id=project.id,
                name=f"group-{i:04d}",
                command=f"dbt build --select tag:group_{i}",
                schedule=f"{i % 60} {i % 24} * * *",
                timezone="Europe/Berlin",
                environment={"THREADS": "4"},
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    return principal, project.id


def measure(cluster: FakeCluster, action: Callable[[], SyncReport]) -> dict[str, Any]:
    cluster.reset_requests()
    started = time.perf_counter()
    report = action()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "requests": len(cluster.requests),
        "writes": cluster.writes(),
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "failed": report.failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeCluster() as cluster:
        os.environ["KUBECONFIG"] = str(cluster.write_kubeconfig(Path(tmp) / "kubeconfig"))
        settings = Settings(
            database=str(Path(tmp) / "bench.db"),
            executor="kubernetes",
            reconcile_interval_seconds=0,
        )
        container = Container(settings)
        try:
            principal, project_id = seed(container, args.jobs)
            executor: Any = container.executor

            def deploy() -> SyncReport:
                return container.projects.deploy(principal, project_id)[1]

            first = measure(cluster, deploy)
            second = measure(cluster, deploy)
            reconcile = measure(cluster, executor.reconcile)
        finally:
            container.stop()
    figures = {
        "jobs": args.jobs,
        "first_deploy": first,
        "second_deploy": second,
        "reconcile": reconcile,
    }
    for name in ("first_deploy", "second_deploy", "reconcile"):
        f = figures[name]
        print(
            f"{name:14} {f['seconds']:7.2f} s  {f['requests']:5d} API requests  "
            f"{f['writes']:5d} writes  (created {f['created']}, unchanged {f['unchanged']}, "
            f"failed {f['failed']})"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    if first["created"] != args.jobs or first["failed"]:
        print(f"FAIL: the first deploy should create {args.jobs} CronJobs", file=sys.stderr)
        return 1
    if second["writes"] or reconcile["writes"]:
        print(
            "FAIL: a second deploy or a reconcile of an unchanged project wrote to the cluster",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
