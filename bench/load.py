"""Load on a real server (uvicorn) running the Kubernetes executor against the emulator.

The emulator runs in its own process and completes every Job shortly after it is created.
50 concurrent clients for 60 seconds mix triggers, run reads, run lists and logs. Printed:
throughput, p50/p99 per route, errors, and lost runs (a trigger answered 2xx whose run does
not reach a terminal status). Goals: no 5xx, no lost run, p99 under 100 ms for reads.

    PYTHONPATH=. python bench/load.py [--clients 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.ids import new_id, utcnow
from app.models import Job
from app.services.tokens import TokenService
from app.store import Store
from bench._http import describe, free_port, run_load, wait_for_port
from tests.factories import saved_project
from tests.harness.k8s_server import FakeClusterProcess

RESULTS = Path(__file__).parent / "results" / "load.json"
JOBS = 20
TERMINAL = {"success", "failed", "timed_out", "cancelled", "lost"}


def seed(path: str) -> tuple[str, str, list[str]]:
    store = Store(path)
    store.migrate()
    token, _ = TokenService(store).create("bench", "admin")
    org = store.orgs.by_slug("bench")
    assert org is not None
    now = utcnow()
    project = saved_project(
        store,
        org_id=org.id,
        org_slug=org.slug,
        name="analytics",
        kind="dbt",
        image="ghcr.io/acme/analytics:1",
    )
    job_ids = []
    for i in range(JOBS):
        job = Job(
            id=new_id("job"),
            org_id=org.id,
            project_id=project.id,
            version=1,
            name=f"job-{i:02d}",
            command="dbt build --select tag:nightly",
            concurrency_policy="Allow",
            created_at=now,
            updated_at=now,
        )
        store.jobs.insert(job)
        job_ids.append(job.id)
    store.close()
    return token, project.id, job_ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeClusterProcess(
            auto_complete_delay=0.5, logs="dbt build\nDone. PASS=3 WARN=0 ERROR=0 SKIP=0 TOTAL=3\n"
        ) as cluster,
    ):
        kubeconfig = cluster.write_kubeconfig(Path(tmp) / "kubeconfig")
        db = os.path.join(tmp, "load.db")
        token, project_id, job_ids = seed(db)
        port = free_port()
        env = os.environ | {"PYTHONPATH": str(root), "KUBECONFIG": str(kubeconfig)}
        server = subprocess.Popen(
            [
                sys.executable,
                str(root / "bench" / "_apiserver.py"),
                "--db",
                db,
                "--port",
                str(port),
                "--executor",
                "kubernetes",
            ],
            env=env,
        )
        try:
            wait_for_port("127.0.0.1", port)
            headers = {"Authorization": f"Bearer {token}"}
            rng = random.Random(11)
            run_ids: list[str] = []
            triggered: list[str] = []

            def remember(label: str, status: int, body: bytes) -> None:
                if label == "trigger" and 200 <= status < 300:
                    run_id = json.loads(body)["job_run_id"]
                    triggered.append(run_id)
                    run_ids.append(run_id)

            def pick(i: int) -> tuple[str, str, str, bytes]:
                roll = rng.random()
                job_id = job_ids[rng.randrange(JOBS)]
                if roll < 0.15 or not run_ids:
                    return (
                        "trigger",
                        "POST",
                        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger",
                        b"{}",
                    )
                run_id = run_ids[-rng.randrange(1, min(len(run_ids), 200) + 1)]
                if roll < 0.55:
                    return "get run", "GET", f"/api/v1/runs/{run_id}", b""
                if roll < 0.80:
                    return (
                        "list runs",
                        "GET",
                        f"/api/v1/projects/{project_id}/jobs/{job_id}/runs?limit=20",
                        b"",
                    )
                return "logs", "GET", f"/api/v1/runs/{run_id}/logs?tail=100", b""

            stats, elapsed = asyncio.run(
                run_load(
                    "127.0.0.1",
                    port,
                    headers,
                    pick,
                    clients=args.clients,
                    seconds=args.seconds,
                    on_response=remember,
                )
            )
            summaries = {label: s.summary(elapsed) for label, s in sorted(stats.items())}
            # Every acknowledged trigger must reach a terminal status.
            pending = set(triggered)
            deadline = time.monotonic() + 120
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as http:
                while pending and time.monotonic() < deadline:
                    for run_id in list(pending):
                        status = http.get(f"/api/v1/runs/{run_id}").json().get("status")
                        if status in TERMINAL:
                            pending.discard(run_id)
                    if pending:
                        time.sleep(1)
            api_requests = cluster.request_stats()
        finally:
            server.terminate()
            server.wait(30)
    total = sum(s["requests"] for s in summaries.values())
    server_errors = sum(
        n for s in summaries.values() for code, n in s["statuses"].items() if code >= 500
    )
    reads_p99 = max(s["p99_ms"] for label, s in summaries.items() if label != "trigger")
    print(
        f"{args.clients} clients for {elapsed:.0f} s: {total} requests, "
        f"{total / elapsed:.0f} req/s, {server_errors} server errors"
    )
    print(describe(list(summaries.items())))
    print(
        f"  triggers acknowledged: {len(triggered)}; runs not terminal within 120 s: "
        f"{len(pending)} (goal 0); reads p99 {reads_p99} ms (goal < 100)"
    )
    print(
        f"  Kubernetes API requests: {api_requests.get('total')} "
        f"({api_requests.get('total', 0) / max(1, len(triggered)):.1f} per run)"
    )
    result: dict[str, Any] = {
        "benchmark": "load",
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "rps": round(total / elapsed, 1),
        "server_errors": server_errors,
        "triggers": len(triggered),
        "lost_runs": len(pending),
        "reads_p99_ms": reads_p99,
        "routes": summaries,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    return 1 if server_errors or pending else 0


if __name__ == "__main__":
    sys.exit(main())
