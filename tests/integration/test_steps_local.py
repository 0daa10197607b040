"""Steps with REAL dbt on DuckDB (examples/dbt_demo, local executor, through the API):
seed → source freshness → build (its broken model fails) → test (skipped) → docs generate
(run_on_failure). Per-step records and logs, the failure webhook (a real HTTP receiver)
naming the step and the model, and a timeout and a cancel in the middle of a step."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.main import create_app
from tests.conftest import ContainerFactory
from tests.integration.api_helpers import assert_problem
from tests.integration.dbt_state_support import log_of, project, wait
from tests.integration.test_local_executor import (
    _restart,
    process_of,
    slow_model,
    wait_log,
)
from tests.integration.test_notify_support import Receiver, receiver

pytestmark = pytest.mark.slow
H = dict[str, str]

SOURCES = """version: 2
sources:
  - name: raw
    schema: main
    loaded_at_field: "cast(order_date as timestamp)"
    tables:
      - name: orders
        freshness:
          warn_after: {count: 1, period: day}
          error_after: {count: 100000, period: day}
"""

STEPS: list[dict[str, Any]] = [
    {"command": "dbt seed"},
    {"command": "dbt source freshness", "name": "freshness"},
    {"command": "dbt build --exclude tag:slow"},
    {"command": "dbt test --select stg_orders"},
    {"command": "dbt docs generate", "run_on_failure": True},
]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as server:
        yield server


@pytest.fixture
def container(container_factory: ContainerFactory) -> Container:
    return container_factory(webhook_allowed_hosts=("127.0.0.1",))


def make_job(client: TestClient[Any], headers: H, project_id: str, **fields: Any) -> str:
    body = {"name": "nightly", "schedule": None} | fields
    response = client.post(f"/api/v1/projects/{project_id}/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def start(client: TestClient[Any], headers: H, project_id: str, job_id: str, **body: Any) -> str:
    response = client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json=body, headers=headers
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["job_run_id"]
    return run_id


def test_steps_run_in_order_and_the_alert_names_the_failed_step_and_model(
    client: TestClient[Any],
    admin_headers: H,
    other_org_headers: H,
    dbt_project_dir: Path,
    container: Container,
    hook: Receiver,
) -> None:
    (dbt_project_dir / "models" / "sources.yml").write_text(SOURCES)
    project_id = project(client, admin_headers, dbt_project_dir)
    job_id = make_job(
        client,
        admin_headers,
        project_id,
        steps=STEPS,
        webhook_enabled=True,
        webhook_url=hook.url("/steps"),
        webhook_events=["failure"],
    )
    job = client.get(f"/api/v1/projects/{project_id}/jobs/{job_id}", headers=admin_headers).json()
    assert job["command"] == "" and [s["command"] for s in job["steps"]] == [
        s["command"] for s in STEPS
    ]

    run_id = start(client, admin_headers, project_id, job_id)
    run = wait(client, admin_headers, run_id)
    log = log_of(client, admin_headers, run_id)
    assert run["status"] == "failed", log
    assert run["job_type"] == "steps"
    assert run["command"] == "; ".join(s["command"] for s in STEPS)
    steps = run["steps"]
    assert [s["name"] for s in steps] == [
        "dbt seed",
        "freshness",
        "dbt build",
        "dbt test",
        "dbt docs generate",
    ]
    assert [s["status"] for s in steps] == ["success", "success", "failed", "skipped", "success"]
    assert [s["exit_code"] for s in steps] == [0, 0, 1, None, 0]
    for done in (0, 1, 2, 4):
        assert steps[done]["duration_seconds"] > 0 and steps[done]["started_at"]
    assert steps[3]["started_at"] is None and steps[3]["log_seq"] is None
    assert run["exit_code"] == 1
    assert run["failed_step"] == {
        "index": 2,
        "name": "dbt build",
        "status": "failed",
        "exit_code": 1,
    }
    assert "Step 3 of 5 (dbt build) failed" in run["error"] and "broken_orders" in run["error"]

    # Node results are attributed to the steps that ran nodes; docs generate's compile
    # "successes" are not among them.
    by_node = {(r["unique_id"], r["step"]): r["status"] for r in run["results"]}
    assert by_node[("model.dbt_demo.broken_orders", 2)] == "error"
    assert by_node[("source.dbt_demo.raw.orders", 1)] == "warn"
    assert not any(step == 4 for _, step in by_node)

    # The header lines, and each step's own part of the log.
    for number, name in enumerate([s["name"] for s in steps], start=1):
        if number != 4:
            assert f"== step {number}/5: {name} ==" in log
    assert "step 4 (dbt test) skipped" in log
    url = f"/api/v1/runs/{run_id}/logs"
    build_log = client.get(url, params={"step": 2}, headers=admin_headers).text
    assert build_log.startswith("== step 3/5: dbt build ==")
    assert "broken_orders" in build_log and "Catalog written" not in build_log
    docs_log = client.get(url, params={"step": 4}, headers=admin_headers).text
    assert "Catalog written" in docs_log and "broken_orders" not in docs_log
    assert client.get(url, params={"step": 3}, headers=admin_headers).text == ""
    assert_problem(client.get(url, params={"step": 5}, headers=admin_headers), 422)
    assert_problem(client.get(url, params={"step": 0}, headers=other_org_headers), 404)

    # The run keeps the build's run_results.json (the failure), docs generate's catalog.
    raw = container.store.artifacts.read(run_id, "run_results.json")
    assert raw is not None
    assert json.loads(raw)["args"]["which"] == "build"
    assert container.store.artifacts.read(run_id, "catalog.json") is not None
    assert container.store.artifacts.read(run_id, "sources.json") is not None

    # The failure webhook names the step, and the model within it.
    (delivery,) = hook.wait_for(1)
    body = delivery.json()
    assert delivery.path == "/steps" and body["event"] == "failure"
    assert body["failed_step"] == run["failed_step"]
    failed = {n["name"]: n for n in body["failed_nodes"]}
    assert failed["broken_orders"]["step"] == 2
    assert body["run"]["steps"][2]["status"] == "failed"

    # A retry replays the steps from the one that failed.
    retry = client.post(f"/api/v1/runs/{run_id}/retry", headers=admin_headers)
    assert retry.status_code == 201, retry.text
    retried = wait(client, admin_headers, retry.json()["id"])
    assert [s["name"] for s in retried["steps"]] == ["dbt build", "dbt test", "dbt docs generate"]
    assert [s["status"] for s in retried["steps"]] == ["failed", "skipped", "success"]


def test_a_steps_override_a_rerun_and_bad_steps(
    client: TestClient[Any], admin_headers: H, dbt_project_dir: Path
) -> None:
    project_id = project(client, admin_headers, dbt_project_dir)
    base = f"/api/v1/projects/{project_id}/jobs"
    for body, field in (
        ({"name": "both", "command": "dbt build", "steps": [{"command": "dbt seed"}]}, "steps"),
        ({"name": "neither"}, "command"),
        ({"name": "bad", "steps": [{"command": "dbt seed"}, {"command": "rm -rf /"}]}, None),
        ({"name": "shell", "steps": [{"command": "dbt seed; rm -rf /"}]}, None),
        ({"name": "empty", "steps": [{"command": "dbt seed", "name": " "}]}, None),
        ({"name": "many", "steps": [{"command": "dbt seed"}] * 21}, "steps"),
    ):
        response = client.post(base, json=body | {"schedule": None}, headers=admin_headers)
        problem = assert_problem(response, 422)
        fields = [e["field"] for e in problem["errors"]]
        if field:
            assert field in fields, problem
        else:
            assert any(f.startswith("steps[") for f in fields), problem
    bad = client.post(
        base,
        json={"name": "x", "steps": [{"command": "dbt seed"}, {"command": "rm -rf /"}]},
        headers=admin_headers,
    )
    assert "steps[1].command" in [e["field"] for e in bad.json()["errors"]]

    job_id = make_job(client, admin_headers, project_id, command="dbt seed")
    trigger = f"{base}/{job_id}/trigger"
    refused = client.post(
        trigger,
        json={"steps": [{"command": "dbt seed --profiles-dir /etc"}]},
        headers=admin_headers,
    )
    assert_problem(refused, 422)
    both = client.post(
        trigger,
        json={"command_override": "dbt seed", "steps": [{"command": "dbt seed"}]},
        headers=admin_headers,
    )
    assert_problem(both, 422)

    run_id = start(
        client,
        admin_headers,
        project_id,
        job_id,
        steps=[{"command": "dbt seed"}, {"command": "dbt run --select stg_orders"}],
    )
    run = wait(client, admin_headers, run_id)
    assert run["status"] == "success", log_of(client, admin_headers, run_id)
    assert [s["status"] for s in run["steps"]] == ["success", "success"]
    assert run["failed_step"] is None

    rerun = client.post(f"/api/v1/runs/{run_id}/rerun", headers=admin_headers)
    assert rerun.status_code == 201, rerun.text
    again = wait(client, admin_headers, rerun.json()["id"])
    assert [s["name"] for s in again["steps"]] == ["dbt seed", "dbt run"]
    assert again["status"] == "success"

    # A PUT with steps turns the job into a job of steps (command cleared), and back.
    put = client.put(
        f"{base}/{job_id}", json={"steps": [{"command": "dbt seed"}]}, headers=admin_headers
    )
    assert put.status_code == 200, put.text
    assert put.json()["command"] == "" and len(put.json()["steps"]) == 1
    back = client.put(f"{base}/{job_id}", json={"command": "dbt seed"}, headers=admin_headers)
    assert back.status_code == 200 and back.json()["steps"] == []


def wait_step_running(client: TestClient[Any], headers: H, run_id: str, index: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["steps"] and run["steps"][index]["status"] == "running":
            return
        time.sleep(0.2)
    raise AssertionError(f"step {index} of {run_id} never ran")


def test_timeout_and_cancel_stop_the_current_step_and_skip_the_rest(
    client: TestClient[Any], admin_headers: H, dbt_project_dir: Path
) -> None:
    slow_model(dbt_project_dir, 120)
    project_id = project(client, admin_headers, dbt_project_dir)
    slow_steps = [
        {"command": "dbt seed"},
        {"command": "dbt run --select slow"},
        {"command": "dbt docs generate", "run_on_failure": True},
    ]
    timed = make_job(
        client, admin_headers, project_id, name="timed", steps=slow_steps, timeout_seconds=60
    )
    run = wait(client, admin_headers, start(client, admin_headers, project_id, timed))
    assert run["status"] == "timed_out"
    assert [s["status"] for s in run["steps"]] == ["success", "timed_out", "skipped"]
    assert "during step 2 of 3: dbt run" in run["error"]
    assert run["failed_step"]["index"] == 1

    cancelled = make_job(client, admin_headers, project_id, name="cancelled", steps=slow_steps)
    run_id = start(client, admin_headers, project_id, cancelled)
    wait_step_running(client, admin_headers, run_id, 1)
    response = client.post(f"/api/v1/runs/{run_id}/cancel", headers=admin_headers)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}", headers=admin_headers).json()
        if run["steps"][1]["status"] != "running":
            break
        time.sleep(0.2)
    assert [s["status"] for s in run["steps"]] == ["success", "cancelled", "skipped"]


def test_a_restart_reattaches_to_the_running_step_and_goes_on_with_the_next(
    container_factory: ContainerFactory, admin_headers: H, dbt_project_dir: Path
) -> None:
    slow_model(dbt_project_dir, 8)
    steps = [{"command": "dbt run --select slow"}, {"command": "dbt ls --select slow"}]
    first = container_factory()
    with TestClient(create_app(container=first)) as client:
        project_id = project(client, admin_headers, dbt_project_dir)
        job_id = make_job(client, admin_headers, project_id, steps=steps)
        run_id = start(client, admin_headers, project_id, job_id)
        wait_log(client, admin_headers, run_id, "START sql table model main.slow")
    pid = process_of(first, run_id)

    second = _restart(container_factory, first)
    with TestClient(create_app(container=second)) as client:
        run = wait(client, admin_headers, run_id)
        text = log_of(client, admin_headers, run_id)
    assert run["status"] == "success", text
    assert [s["status"] for s in run["steps"]] == ["success", "success"]
    assert f"re-attached to the run's process (pid {pid})" in text
    assert "== step 2/2: dbt ls ==" in text and "dbt_demo.slow" in text.split("step 2/2")[1]
    assert [(r["unique_id"], r["step"]) for r in run["results"]] == [("model.dbt_demo.slow", 0)]
