"""Retry from failure with REAL dbt on DuckDB: a build whose third model fails, then, after
the model is fixed, a retry that runs only that model, its tests and its child (read from
the retry's own run_results.json); and the 409s of runs with nothing to retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from tests.integration.api_helpers import assert_problem
from tests.integration.dbt_state_support import (
    add_child_model,
    break_customer_orders,
    job,
    log_of,
    project,
    restore_customer_orders,
    run_results,
    trigger,
    wait,
)

pytestmark = pytest.mark.slow
H = dict[str, str]
RETRIED = {
    "model.dbt_demo.customer_orders",
    "model.dbt_demo.customer_summary",
}


def test_retry_runs_only_the_failed_model_and_what_it_skipped(
    client: TestClient[Any],
    container: Container,
    admin_headers: H,
    viewer_headers: H,
    other_org_headers: H,
    dbt_project_dir: Path,
) -> None:
    add_child_model(dbt_project_dir)
    original_sql = break_customer_orders(dbt_project_dir)
    project_id = project(client, admin_headers, dbt_project_dir)
    job_id = job(client, admin_headers, project_id, "nightly", "dbt build --exclude tag:broken")
    failed_id = trigger(client, admin_headers, project_id, job_id)
    failed = wait(client, admin_headers, failed_id)
    assert failed["status"] == "failed", failed

    first = run_results(container, failed_id)
    assert first["model.dbt_demo.stg_customers"] == "success"
    assert first["model.dbt_demo.customer_orders"] == "error"
    assert first["model.dbt_demo.customer_summary"] == "skipped"
    skipped_tests = {u for u, s in first.items() if u.startswith("test.") and s == "skipped"}
    assert skipped_tests and all("customer_orders" in u for u in skipped_tests)

    # The failed nodes come from the artifacts, with timings for a Gantt chart.
    timeline = client.get(f"/api/v1/runs/{failed_id}/timeline", headers=admin_headers).json()
    assert timeline["source"] == "artifacts"
    assert timeline["failed"] == ["model.dbt_demo.customer_orders"]
    ran = [n for n in timeline["nodes"] if n["status"] == "success"]
    assert ran and all(n["offset_seconds"] >= 0 and n["duration_seconds"] > 0 for n in ran)

    # Retrying a run is a write: viewers are refused, other orgs do not see it.
    assert_problem(client.post(f"/api/v1/runs/{failed_id}/retry", headers=viewer_headers), 403)
    assert_problem(client.post(f"/api/v1/runs/{failed_id}/retry", headers=other_org_headers), 404)

    restore_customer_orders(dbt_project_dir, original_sql)
    response = client.post(f"/api/v1/runs/{failed_id}/retry", headers=admin_headers)
    assert response.status_code == 201, response.text
    retry = response.json()
    assert retry["triggered_by"] == "retry"
    assert retry["retry_of"] == failed_id
    assert retry["command"] == "dbt retry"
    done = wait(client, admin_headers, retry["id"])
    assert done["status"] == "success", log_of(client, admin_headers, retry["id"])

    # The retry's own run_results.json: exactly the failed model, its child and the tests
    # that were skipped with them; nothing that had succeeded ran again.
    again = run_results(container, retry["id"])
    assert set(again) == RETRIED | skipped_tests
    assert set(again.values()) <= {"success", "pass"}
    assert "--state" in log_of(client, admin_headers, retry["id"])

    # A successful run has nothing to retry.
    body = assert_problem(
        client.post(f"/api/v1/runs/{retry['id']}/retry", headers=admin_headers), 409
    )
    assert "nothing to retry" in body["detail"]


def test_a_run_without_run_results_or_still_active_cannot_be_retried(
    client: TestClient[Any], container: Container, admin_headers: H, dbt_project_dir: Path
) -> None:
    # A reference to a model that does not exist: dbt stops while parsing (exit 2) and
    # writes no run_results.json for this run.
    (dbt_project_dir / "models" / "marts" / "dangling.sql").write_text(
        "select * from {{ ref('no_such_model') }}\n"
    )
    project_id = project(client, admin_headers, dbt_project_dir)
    job_id = job(client, admin_headers, project_id, "nightly", "dbt build")
    run_id = trigger(client, admin_headers, project_id, job_id)
    # While it is active there is nothing to retry yet.
    early = client.post(f"/api/v1/runs/{run_id}/retry", headers=admin_headers)
    if early.status_code != 409 or "still" not in early.json()["detail"]:
        pytest.fail(f"an active run was retried: {early.text}")
    finished = wait(client, admin_headers, run_id)
    assert finished["status"] == "failed" and finished["exit_code"] == 2, finished
    assert container.store.artifacts.read(run_id, "run_results.json") is None
    body = assert_problem(client.post(f"/api/v1/runs/{run_id}/retry", headers=admin_headers), 409)
    assert "no run_results.json" in body["detail"] and "/rerun" in body["detail"]
    assert_problem(client.post("/api/v1/runs/run_nope/retry", headers=admin_headers), 404)
