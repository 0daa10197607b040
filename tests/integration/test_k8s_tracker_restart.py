"""Restart safety: runyard (``runyard serve`` with the Kubernetes executor, a separate
process) is SIGKILLed with 50 runs active; the Jobs finish, fail, vanish, and a CronJob fires
while it is down (its Job waits, suspended, until runyard is back to resume it); a new
runyard on the same database finds every run's end with its logs, none missing and none
twice."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.services.tokens import TokenService
from app.store import Store
from tests.integration.test_k8s_env import Kube, make_emulator  # noqa: F401 - fixtures
from tests.integration.test_k8s_tracker_support import DBT_BROKEN

REPO = Path(__file__).resolve().parents[2]
RUNS = 50
Obj = dict[str, Any]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def runyard(database: Path, kubeconfig: Path, log: Path) -> Iterator[tuple[str, int]]:
    """``runyard serve`` in its own process; yields (its URL, its pid)."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KUBECONFIG": str(kubeconfig),
        "RUNYARD_DATABASE": str(database),
        "RUNYARD_EXECUTOR": "kubernetes",
        "RUNYARD_RECONCILE_INTERVAL": "0",
        "RUNYARD_LOG_LEVEL": "WARNING",
        # Every run active at once: none waits in the queue (docs/queues.md).
        "RUNYARD_LOCAL_MAX_RUNS_PER_ORG": str(RUNS),
    }
    with log.open("a") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"runyard did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _wait(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_runs_active_when_runyard_is_killed_are_all_recorded_after_a_restart(
    make_emulator: Callable[..., Kube], tmp_path: Path
) -> None:
    kube = make_emulator()
    fake, ns = kube.fake, kube.ns()
    assert fake is not None
    database, log = tmp_path / "runyard.db", tmp_path / "runyard.log"
    store = Store(database)
    store.migrate()
    token, _ = TokenService(store).create("acme", "admin")
    store.close()
    headers = {"Authorization": f"Bearer {token}"}

    with runyard(database, kube.kubeconfig, log) as (url, pid):
        api = httpx.Client(base_url=url, headers=headers, timeout=30)
        project = api.post(
            "/api/v1/projects", json={"name": "analytics", "kind": "dbt", "image": "img:1"}
        ).json()
        job = api.post(
            f"/api/v1/projects/{project['id']}/jobs",
            json={
                "name": "nightly",
                "command": "dbt run",
                "schedule": "0 2 * * *",
                "concurrency_policy": "Allow",
            },
        ).json()
        assert api.post(f"/api/v1/projects/{project['id']}/deploy").status_code == 200
        triggered = []
        for _ in range(RUNS):
            response = api.post(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger")
            assert response.status_code == 201, response.text
            triggered.append(response.json())
        for body in triggered[:45]:  # five stay pending: their pods never started
            fake.start_job(ns, body["job_name"], logs=f"started {body['job_run_id']}\n")

        def running() -> bool:
            runs = api.get(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs?limit=200")
            statuses = [r["status"] for r in runs.json()["runs"]]
            return statuses.count("running") == 45 and statuses.count("pending") == 5

        _wait(running)
        os.kill(pid, signal.SIGKILL)  # no goodbye: nothing gets to clean up

    # While runyard is down the cluster goes on: Jobs end, vanish, and a CronJob fires.
    expected: dict[str, tuple[str, str]] = {}  # run id -> (status, log)
    for i, body in enumerate(triggered):
        run_id, name = body["job_run_id"], body["job_name"]
        first = f"started {run_id}\n" if i < 45 else ""
        if i % 10 == 3:
            fake.run_job(ns, name, exit_code=1, logs=DBT_BROKEN)
            expected[run_id] = ("failed", first + DBT_BROKEN)
        elif i % 10 == 7:
            fake.delete("job", ns, name)  # with its pods: nothing left to read
            expected[run_id] = ("lost", "")
        else:
            fake.run_job(ns, name, logs=f"done {run_id}\n")
            expected[run_id] = ("success", first + f"done {run_id}\n")
    # A fire's Job is created suspended: it waits for runyard (docs/kubernetes.md).
    scheduled = fake.fire_cronjob(ns, "analytics-nightly", datetime(2026, 4, 28, 2, tzinfo=UTC))
    time.sleep(5)  # older than the new process's start allowance for runs still launching

    with runyard(database, kube.kubeconfig, log) as (url, _):
        api = httpx.Client(base_url=url, headers=headers, timeout=30)
        # The new runyard records the fire's run and resumes its Job (run_job waits for it).
        fake.run_job(ns, scheduled, logs="scheduled while down\n")

        def settled() -> list[Obj] | None:
            response = api.get(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs?limit=200")
            runs: list[Obj] = response.json()["runs"]
            done = len(runs) == RUNS + 1 and all(r["is_terminal"] for r in runs)
            return runs if done else None

        runs = _wait(settled)
        by_id = {r["id"]: r for r in runs}
        for run_id, (status, text) in expected.items():
            run = by_id[run_id]
            assert run["status"] == status, (run_id, run)
            assert api.get(f"/api/v1/runs/{run_id}/logs").text == text, run_id
            if status == "failed":
                assert run["exit_code"] == 1 and "model broken_orders failed" in run["error"]
            if status == "lost":
                assert "no longer exists" in run["error"]
        (extra,) = [r for r in runs if r["id"] not in expected]
        assert extra["triggered_by"] == "scheduled" and extra["job_name"] == scheduled
        assert extra["status"] == "success"
        assert api.get(f"/api/v1/runs/{extra['id']}/logs").text == "scheduled while down\n"

    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (RUNS + 1,)
        per_run = db.execute(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM run_log_chunks GROUP BY run_id)"
        )
        assert per_run.fetchone() == (1,)  # each log stored once
        names = db.execute("SELECT count(DISTINCT job_name) FROM runs").fetchone()
        assert names == (RUNS + 1,)
