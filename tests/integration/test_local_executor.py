"""The local executor end to end: real dbt and SQLMesh on copies of the example projects,
driven through the HTTP API.

Long-running runs use a dbt model that waits in DuckDB (``pg_sleep``), so timeouts,
cancels and restarts act on a real dbt process without burning CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.executors.local.executor import LocalExecutor
from app.executors.local.process import identity
from app.main import create_app
from app.settings import Settings
from tests.conftest import org_folder
from tests.conftest_examples import copy_example
from tests.integration.api_helpers import assert_problem

Client = TestClient[Any]
Headers = dict[str, str]

BUILD = "dbt build --exclude tag:broken --exclude tag:slow"


def slow_model(project: Path, seconds: float) -> None:
    """Add ``models/slow/slow.sql`` (tag ``slow``): a table that takes ``seconds``."""
    folder = project / "models" / "slow"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slow.sql").write_text(
        "{{ config(materialized='table', tags=['slow']) }}\n"
        f"select 1 as id, cast(pg_sleep({seconds}) as integer) as slept\n"
    )


@pytest.fixture
def dbt_project(tmp_path: Path) -> Path:
    project = copy_example("dbt_demo", org_folder(tmp_path) / "dbt_demo")
    slow_model(project, 120)
    return project


def create_project(client: Client, headers: Headers, **fields: Any) -> str:
    body = {"name": "analytics", "kind": "dbt", "path": "dbt_demo"} | fields
    response = client.post("/api/v1/projects", json=body, headers=headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


def create_job(client: Client, headers: Headers, project_id: str, **fields: Any) -> str:
    body = {"name": "nightly", "command": BUILD, "schedule": None} | fields
    response = client.post(f"/api/v1/projects/{project_id}/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def trigger(client: Client, headers: Headers, project_id: str, job_id: str) -> str:
    response = client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={}, headers=headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    run_id: str = body["job_run_id"]
    return run_id


def get_run(client: Client, headers: Headers, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}", headers=headers)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def logs(client: Client, headers: Headers, run_id: str) -> str:
    response = client.get(f"/api/v1/runs/{run_id}/logs", headers=headers)
    assert response.status_code == 200, response.text
    return response.text


def wait_terminal(client: Client, headers: Headers, run_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = get_run(client, headers, run_id)
        if run["is_terminal"]:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")


def wait_log(client: Client, headers: Headers, run_id: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = logs(client, headers, run_id)
        if text in found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the log of {run_id} after {timeout} s")


def process_of(container: Container, run_id: str) -> int:
    found = container.store.local.process(run_id)
    assert found is not None
    return found.pid


def wait_gone(pid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while identity(pid) is not None:
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.1)


# --- success and failure ------------------------------------------------------------------


@pytest.mark.slow
def test_dbt_build_succeeds_with_node_results(
    client: Client, admin_headers: Headers, dbt_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model that prints what it sees of two variables: runyard's own must not reach it.
    monkeypatch.setenv("RUNYARD_SLACK_TOKEN", "xoxb-not-for-projects")
    (dbt_project / "models" / "marts" / "env_probe.sql").write_text(
        "{{ log('probe token=' ~ env_var('RUNYARD_SLACK_TOKEN', 'absent')"
        " ~ ' warehouse=' ~ env_var('WAREHOUSE', 'unset'), info=True) }}\nselect 1 as id\n"
    )
    project_id = create_project(client, admin_headers, environment={"WAREHOUSE": "dev"})
    job_id = create_job(client, admin_headers, project_id)
    run_id = trigger(client, admin_headers, project_id, job_id)
    run = wait_terminal(client, admin_headers, run_id)

    assert (run["status"], run["exit_code"], run["error"]) == ("success", 0, None)
    assert run["is_success"] and run["duration_seconds"] > 0
    results = {r["unique_id"]: r for r in run["results"]}
    orders = results["model.dbt_demo.customer_orders"]
    assert orders["status"] == "success" and orders["execution_time"] > 0
    assert results["seed.dbt_demo.customers"]["resource_type"] == "seed"
    assert "model.dbt_demo.broken_orders" not in results
    text = logs(client, admin_headers, run_id)
    assert text.startswith(f"[runyard] {BUILD}")
    assert "Completed successfully" in text
    assert "probe token=absent warehouse=dev" in text
    assert "xoxb-not-for-projects" not in text


@pytest.mark.slow
def test_failing_model_is_named_in_the_run(
    client: Client, admin_headers: Headers, dbt_project: Path
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id, command="dbt run --select tag:broken")
    run = wait_terminal(client, admin_headers, trigger(client, admin_headers, project_id, job_id))

    assert (run["status"], run["exit_code"], run["is_failed"]) == ("failed", 1, True)
    # On a fresh copy the staging view it selects from is not built yet: DuckDB says so.
    assert run["error"].startswith("model broken_orders failed: Catalog Error")
    [result] = run["results"]
    assert result["unique_id"] == "model.dbt_demo.broken_orders"
    assert result["name"] == "broken_orders" and result["status"] == "error"
    assert "stg_orders does not exist" in result["message"]


# --- timeout, cancel, live logs, concurrency ----------------------------------------------


@pytest.mark.slow
def test_timeout_stops_a_long_model(
    client: Client, admin_headers: Headers, dbt_project: Path, container: Container
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(
        client, admin_headers, project_id, command="dbt run --select slow", timeout_seconds=6
    )
    run_id = trigger(client, admin_headers, project_id, job_id)
    pid = process_of(container, run_id)
    run = wait_terminal(client, admin_headers, run_id, timeout=30)

    assert run["status"] == "timed_out"
    assert "timeout_seconds (6 s)" in run["error"]
    assert 6 <= run["duration_seconds"] < 20
    wait_gone(pid)


@pytest.mark.slow
def test_logs_stream_while_running_and_cancel_stops_dbt(
    client: Client, admin_headers: Headers, dbt_project: Path, container: Container
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id, command="dbt run --select slow")
    run_id = trigger(client, admin_headers, project_id, job_id)
    pid = process_of(container, run_id)

    # The model is executing: its START line is already in the stored log.
    live = wait_log(client, admin_headers, run_id, "START sql table model main.slow")
    assert "Running with dbt=" in live
    assert get_run(client, admin_headers, run_id)["status"] == "running"
    tail = client.get(f"/api/v1/runs/{run_id}/logs?tail=1", headers=admin_headers).text
    assert tail.count("\n") == 1

    response = client.post(f"/api/v1/runs/{run_id}/cancel", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    wait_gone(pid)
    assert "[runyard] the run was cancelled" in wait_log(client, admin_headers, run_id, "cancel")
    again = client.post(f"/api/v1/runs/{run_id}/cancel", headers=admin_headers)
    assert_problem(again, 409)


@pytest.mark.slow
def test_forbid_refuses_and_replace_cancels_the_active_run(
    client: Client, admin_headers: Headers, dbt_project: Path, container: Container
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id, command="dbt run --select slow")
    first = trigger(client, admin_headers, project_id, job_id)
    first_pid = process_of(container, first)

    refused = client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={}, headers=admin_headers
    )
    problem = assert_problem(refused, 409)
    assert first in problem["detail"] and "Forbid" in problem["detail"]

    changed = client.put(
        f"/api/v1/projects/{project_id}/jobs/{job_id}",
        json={"concurrency_policy": "Replace"},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.text
    second = trigger(client, admin_headers, project_id, job_id)
    replaced = get_run(client, admin_headers, first)
    assert replaced["status"] == "cancelled"
    assert replaced["error"] == f"replaced by run {second}"
    wait_gone(first_pid)  # cancel waits for the old process, so DuckDB's lock is free
    assert get_run(client, admin_headers, second)["status"] == "running"
    client.post(f"/api/v1/runs/{second}/cancel", headers=admin_headers)


# --- restarts -----------------------------------------------------------------------------


def _crash(container: Container) -> None:
    """As if runyard had crashed: dbt keeps running, nothing is recorded, nothing fires."""
    executor = container.executor
    assert isinstance(executor, LocalExecutor) and container.scheduler is not None
    container.scheduler.stop()
    executor.detach()


def _restart(container_factory: Callable[..., Container], old: Container) -> Container:
    _crash(old)
    return container_factory()


@pytest.mark.slow
def test_a_restart_reattaches_to_the_running_dbt(
    container_factory: Callable[..., Container], admin_headers: Headers, dbt_project: Path
) -> None:
    slow_model(dbt_project, 6)
    first = container_factory()
    with TestClient(create_app(container=first)) as client:
        project_id = create_project(client, admin_headers)
        job_id = create_job(client, admin_headers, project_id, command="dbt run --select slow")
        run_id = trigger(client, admin_headers, project_id, job_id)
        wait_log(client, admin_headers, run_id, "START sql table model main.slow")
    pid = process_of(first, run_id)

    second = _restart(container_factory, first)
    with TestClient(create_app(container=second)) as client:
        run = wait_terminal(client, admin_headers, run_id)
        text = logs(client, admin_headers, run_id)
    assert (run["status"], run["exit_code"]) == ("success", 0)
    assert [r["unique_id"] for r in run["results"]] == ["model.dbt_demo.slow"]
    assert f"re-attached to the run's process (pid {pid})" in text
    assert text.count("START sql table model main.slow") == 1
    assert "OK created sql table model main.slow" in text


@pytest.mark.slow
def test_a_restart_marks_a_vanished_run_lost(
    container_factory: Callable[..., Container], admin_headers: Headers, dbt_project: Path
) -> None:
    first = container_factory()
    with TestClient(create_app(container=first)) as client:
        project_id = create_project(client, admin_headers)
        job_id = create_job(client, admin_headers, project_id, command="dbt run --select slow")
        run_id = trigger(client, admin_headers, project_id, job_id)
    pid = process_of(first, run_id)
    second_factory = container_factory
    _crash(first)
    os.killpg(pid, signal.SIGKILL)  # the machine's OOM killer, say: no exit code is left
    wait_gone(pid)

    second = second_factory()
    with TestClient(create_app(container=second)) as client:
        run = wait_terminal(client, admin_headers, run_id, timeout=15)
    assert run["status"] == "lost" and run["is_failed"]
    assert run["error"].startswith("runyard restarted while the run was active")


# --- SQLMesh ------------------------------------------------------------------------------


@pytest.mark.slow
def test_sqlmesh_plan_then_run(client: Client, admin_headers: Headers, tmp_path: Path) -> None:
    copy_example("sqlmesh_demo", org_folder(tmp_path) / "sqlmesh_demo")
    project_id = create_project(
        client, admin_headers, name="metrics", kind="sqlmesh", path="sqlmesh_demo"
    )
    plan = create_job(
        client,
        admin_headers,
        project_id,
        name="plan",
        command="sqlmesh plan --auto-apply --no-prompts",
    )
    run = create_job(client, admin_headers, project_id, name="run", command="sqlmesh run")
    planned = wait_terminal(client, admin_headers, trigger(client, admin_headers, project_id, plan))
    assert (planned["status"], planned["exit_code"]) == ("success", 0)
    assert planned["results"] == []
    ran = wait_terminal(client, admin_headers, trigger(client, admin_headers, project_id, run))
    assert (ran["status"], ran["exit_code"]) == ("success", 0)


@pytest.mark.slow
def test_sqlmesh_failure_names_the_failing_model(
    client: Client, admin_headers: Headers, tmp_path: Path
) -> None:
    project = copy_example("sqlmesh_demo", org_folder(tmp_path) / "sqlmesh_demo")
    model = project / "models" / "daily_orders.sql"
    model.write_text(model.read_text().replace("@demo_failure('model')", "CAST('abc' AS INT)"))
    project_id = create_project(
        client, admin_headers, name="metrics", kind="sqlmesh", path="sqlmesh_demo"
    )
    plan = create_job(
        client,
        admin_headers,
        project_id,
        name="plan",
        command="sqlmesh plan --auto-apply --no-prompts",
    )
    run = wait_terminal(client, admin_headers, trigger(client, admin_headers, project_id, plan))
    assert (run["status"], run["exit_code"]) == ("failed", 1)
    [failed] = [r for r in run["results"] if r["status"] == "error"]
    assert failed["resource_type"] == "model" and failed["name"].endswith(".daily_orders")
    assert "abc" in failed["message"]
    assert run["error"].startswith(f"model {failed['name']} failed")


# --- configuration errors and schedules ---------------------------------------------------


def test_a_missing_project_directory_is_a_422_at_save_naming_the_path(
    client: Client, admin_headers: Headers, tmp_path: Path
) -> None:
    response = client.post(
        "/api/v1/projects",
        json={"name": "analytics", "kind": "dbt", "path": "nowhere/analytics"},
        headers=admin_headers,
    )
    problem = assert_problem(response, 422)
    folder = tmp_path / "projects" / "acme"
    assert "'nowhere/analytics'" in problem["detail"] and "does not exist" in problem["detail"]
    assert str(folder) in problem["detail"]
    assert problem["errors"][0]["field"] == "path"
    assert client.get("/api/v1/projects", headers=admin_headers).json()["projects"] == []


def test_a_project_folder_removed_after_save_fails_the_launch_with_a_422(
    client: Client, admin_headers: Headers, dbt_project: Path
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id)
    shutil.rmtree(dbt_project)
    response = client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={}, headers=admin_headers
    )
    problem = assert_problem(response, 422)
    assert "'dbt_demo'" in problem["detail"] and "does not exist" in problem["detail"]
    runs = client.get(f"/api/v1/projects/{project_id}/jobs/{job_id}/runs", headers=admin_headers)
    [failed] = runs.json()["runs"]
    assert failed["status"] == "failed" and "dbt_demo" in failed["error"]


@pytest.mark.slow
def test_deploy_makes_the_schedule_live_and_fires_a_local_run(
    settings_factory: Callable[..., Settings], admin_headers: Headers, dbt_project: Path
) -> None:
    container = Container(settings_factory(), scheduler_thread=False)
    container.start()
    scheduler = container.scheduler
    assert isinstance(container.executor, LocalExecutor) and scheduler is not None
    try:
        with TestClient(create_app(container=container)) as client:
            token, _ = container.tokens.create("acme", "admin")
            headers = {"Authorization": f"Bearer {token}"}
            project_id = create_project(client, headers)
            create_job(client, headers, project_id, schedule="*/5 * * * *")
            create_job(client, headers, project_id, name="manual", schedule=None)
            deployed = client.post(f"/api/v1/projects/{project_id}/deploy", headers=headers)
            assert deployed.status_code == 200, deployed.text
            report = deployed.json()["schedules"]
            assert (report["created"], report["unchanged"]) == (1, 1)

            scheduler.tick()
            due = scheduler.next_due()
            assert due is not None
            [fire] = scheduler.tick(due)
            assert fire.outcome == "started"
            [run] = client.get("/api/v1/runs", headers=headers).json()["runs"]
            assert run["triggered_by"] == "scheduled"
            assert run["scheduled_for"] is not None
            assert run["status"] == "running"
            client.post(f"/api/v1/runs/{run['id']}/cancel", headers=headers)

            undeployed = client.post(f"/api/v1/projects/{project_id}/undeploy", headers=headers)
            assert undeployed.json()["schedules"]["deleted"] == 1
            scheduler.tick()
            assert scheduler.next_due() is None
    finally:
        container.stop()
