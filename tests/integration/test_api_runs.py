"""Runs through the API on the local executor with real dbt: trigger, status, logs, cancel,
rerun from the snapshot, idempotent triggers, Forbid, and dependency chains."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.api_helpers import assert_problem

pytestmark = pytest.mark.slow
TERMINAL = {"success", "failed", "timed_out", "cancelled", "lost"}


class Api:
    def __init__(self, server: LiveServer) -> None:
        token, _ = server.container.tokens.create("acme", "admin")
        self.http = httpx.Client(
            base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
        )

    def project(self, path: Path) -> dict[str, Any]:
        response = self.http.post(
            "/api/v1/projects", json={"name": "analytics", "kind": "dbt", "path": str(path)}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def job(self, project_id: str, name: str, command: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "command": command, "schedule": None} | fields
        response = self.http.post(f"/api/v1/projects/{project_id}/jobs", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def trigger(self, project_id: str, job_id: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", **kwargs)

    def wait(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = dict(self.http.get(f"/api/v1/runs/{run_id}").json())
            if run["status"] in TERMINAL:
                return run
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s")

    def wait_for_status(self, run_id: str, status: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.http.get(f"/api/v1/runs/{run_id}").json()["status"] != status:
            assert time.monotonic() < deadline, f"{run_id} never became {status}"
            time.sleep(0.1)


@pytest.fixture
def api(live_server: LiveServer) -> Api:
    return Api(live_server)


def test_trigger_run_status_and_logs(api: Api, dbt_project_dir: Path) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt build --exclude tag:broken")
    response = api.trigger(project["id"], job["id"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"job_run_id", "job_name", "status", "message"}
    assert body["status"] == "pending" and body["job_name"].startswith("analytics-build-")
    run = api.wait(body["job_run_id"])
    assert run["status"] == "success" and run["exit_code"] == 0
    assert run["is_terminal"] and run["is_success"] and not run["is_failed"]
    assert run["triggered_by"] == "manual" and run["job_version"] == 1
    assert run["duration_seconds"] > 0 and run["start_time"] <= run["end_time"]
    assert any(r["name"] == "customer_orders" and r["status"] == "success" for r in run["results"])
    logs = api.http.get(f"/api/v1/runs/{run['id']}/logs").text
    assert "Completed successfully" in logs
    assert api.http.get(f"/api/v1/runs/{run['id']}/logs", params={"tail": 2}).text.count("\n") <= 2
    found = api.http.get(f"/api/v1/runs/{run['id']}/logs", params={"search": "completed"}).text
    assert found and all("completed" in line.lower() for line in found.splitlines())
    status = api.http.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/status", params={"window": "7d"}
    ).json()
    assert status["last_run"]["id"] == run["id"] and status["counts"] == {"success": 1}
    assert status["stats"]["success_rate"] == 1.0 and status["stats"]["p95_duration_seconds"]
    assert status["next_run_time"] is None  # no schedule
    listed = api.http.get(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs").json()
    assert [r["id"] for r in listed["runs"]] == [run["id"]] and listed["total"] == 1
    assert listed["total_capped"] is False  # counted exactly (up to 10,000)


def test_failed_model_is_named(api: Api, dbt_project_dir: Path) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "broken", "dbt run --select tag:broken")
    run = api.wait(api.trigger(project["id"], job["id"]).json()["job_run_id"])
    assert run["status"] == "failed" and run["exit_code"] == 1 and run["is_failed"]
    assert "broken_orders" in run["error"]
    failed = [r for r in run["results"] if r["status"] == "error"]
    assert [r["name"] for r in failed] == ["broken_orders"]


def test_rejected_override_starts_nothing(api: Api, dbt_project_dir: Path) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt build")
    response = api.trigger(
        project["id"], job["id"], json={"command_override": "dbt run && rm -rf /"}
    )
    assert_problem(response, 422, field="command_override")
    assert api.http.get("/api/v1/runs").json()["total"] == 0


def test_cancel_then_409(api: Api, dbt_project_dir: Path) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt build --exclude tag:broken")
    run_id = api.trigger(project["id"], job["id"]).json()["job_run_id"]
    api.wait_for_status(run_id, "running")
    cancelled = api.http.post(f"/api/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.wait(run_id)["status"] == "cancelled"
    again = api.http.post(f"/api/v1/runs/{run_id}/cancel")
    assert "already ended" in assert_problem(again, 409)["detail"]


def test_rerun_uses_the_runs_snapshot(api: Api, dbt_project_dir: Path) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "seed", "dbt seed")
    first = api.wait(api.trigger(project["id"], job["id"]).json()["job_run_id"])
    api.http.put(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}",
        json={"command": "dbt run --select tag:broken"},
    )
    response = api.http.post(f"/api/v1/runs/{first['id']}/rerun")
    assert response.status_code == 201, response.text
    rerun = api.wait(response.json()["id"])
    assert rerun["triggered_by"] == "rerun" and rerun["rerun_of"] == first["id"]
    assert rerun["command"] == "dbt seed" and rerun["job_version"] == 1
    assert rerun["status"] == "success"
    config = api.http.get(f"/api/v1/runs/{rerun['id']}/config").json()
    assert config["config"]["command"] == "dbt seed"


def test_idempotency_key_returns_one_run_for_20_concurrent_triggers(
    api: Api, dbt_project_dir: Path
) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(
        project["id"], "build", "dbt build --exclude tag:broken", concurrency_policy="Allow"
    )

    def fire(_: int) -> httpx.Response:
        return api.trigger(project["id"], job["id"], headers={"Idempotency-Key": "deploy-7"})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(fire, range(20)))
    assert {r.status_code for r in responses} <= {200, 201}
    assert sum(r.status_code == 201 for r in responses) == 1
    assert len({r.json()["job_run_id"] for r in responses}) == 1
    different = api.trigger(
        project["id"],
        job["id"],
        headers={"Idempotency-Key": "deploy-7"},
        json={"command_override": "dbt seed"},
    )
    assert_problem(different, 422, field="Idempotency-Key")
    api.wait(responses[0].json()["job_run_id"])


def test_forbid_lets_exactly_one_of_20_concurrent_triggers_run(
    api: Api, dbt_project_dir: Path
) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt build --exclude tag:broken")

    def fire(i: int) -> httpx.Response:
        return api.trigger(project["id"], job["id"], headers={"Idempotency-Key": f"k{i}"})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(fire, range(20)))
    started = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code == 409]
    assert len(started) == 1 and len(refused) == 19
    active_id = started[0].json()["job_run_id"]
    assert all(active_id in r.json()["detail"] for r in refused)
    api.wait(active_id)


def test_dependency_chain(api: Api, dbt_project_dir: Path) -> None:
    """A -> B on success, B -> C on failure: A succeeds, B (the broken model) fails, C runs."""
    project = api.project(dbt_project_dir)
    a = api.job(project["id"], "a-seed", "dbt seed")
    b = api.job(
        project["id"],
        "b-broken",
        "dbt run --select tag:broken",
        depends_on=[{"job_id": a["id"], "on": "success"}],
    )
    c = api.job(
        project["id"],
        "c-report",
        "dbt run --select stg_customers",
        depends_on=[{"job_id": b["id"], "on": "failure"}],
    )
    d = api.job(
        project["id"],
        "d-never",
        "dbt run --select stg_orders",
        depends_on=[{"job_id": b["id"], "on": "success"}],
    )
    run_a = api.wait(api.trigger(project["id"], a["id"]).json()["job_run_id"])
    assert run_a["status"] == "success"

    def runs_of(job: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs"
        return list(api.http.get(url).json()["runs"])

    deadline = time.monotonic() + 120
    while not runs_of(c) and time.monotonic() < deadline:
        time.sleep(0.5)
    run_b = api.wait(runs_of(b)[0]["id"])
    assert run_b["triggered_by"] == "dependency" and run_b["upstream_run_id"] == run_a["id"]
    assert run_b["status"] == "failed"
    run_c = api.wait(runs_of(c)[0]["id"])
    assert run_c["triggered_by"] == "dependency" and run_c["upstream_run_id"] == run_b["id"]
    assert run_c["status"] == "success"
    assert runs_of(d) == []


def test_override_and_its_rerun_record_the_command_that_ran(
    api: Api, dbt_project_dir: Path
) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt run --select tag:broken")
    response = api.trigger(project["id"], job["id"], json={"command_override": "dbt seed"})
    assert response.status_code == 201, response.text
    first = api.wait(response.json()["job_run_id"])
    # The override ran (seed succeeds; the job's own command would have failed) and the
    # record says so.
    assert first["status"] == "success" and first["command"] == "dbt seed"
    assert first["job_type"] == "seed"
    rerun = api.http.post(f"/api/v1/runs/{first['id']}/rerun")
    assert rerun.status_code == 201, rerun.text
    again = api.wait(rerun.json()["id"])
    assert again["command"] == "dbt seed" and again["status"] == "success"
    assert again["rerun_of"] == first["id"]


def test_rerun_is_checked_against_todays_command_policy(
    api: Api, live_server: LiveServer, dbt_project_dir: Path
) -> None:
    """A run recorded under an older, looser policy (its stored argument list holds a token
    today's rules refuse) is not replayed: 422 naming the token, and nothing starts."""
    from tests.factories import run_record, snapshot

    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt build")
    store = live_server.container.store
    org = store.orgs.by_slug("acme")
    assert org is not None
    argv = ["dbt", "build", "--select", "orders", "&&", "rm", "-rf", "/"]
    old = run_record(
        org_id=org.id,
        project_id=project["id"],
        job_id=job["id"],
        status="success",
        snapshot_=snapshot(path=str(dbt_project_dir), argv=argv),
        command="dbt build",
    )
    assert store.runs.insert(old)
    response = api.http.post(f"/api/v1/runs/{old.id}/rerun")
    problem = assert_problem(response, 422, field="command")
    assert "'&&'" in problem["detail"] and "current command policy" in problem["detail"]
    assert api.http.get("/api/v1/runs").json()["total"] == 1  # only the old run
