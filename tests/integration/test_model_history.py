"""Model history over several REAL dbt runs (from their run_results.json), a SQLMesh run's
history from its log (SQLMesh writes no run_results.json) and its retry, and the models
endpoint's checks and tenancy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.integration.api_helpers import assert_problem
from tests.integration.dbt_state_support import (
    break_customer_orders,
    job,
    project,
    restore_customer_orders,
    trigger,
    wait,
)

pytestmark = pytest.mark.slow
H = dict[str, str]


def test_models_over_several_runs(
    client: TestClient[Any],
    admin_headers: H,
    viewer_headers: H,
    other_org_headers: H,
    dbt_project_dir: Path,
) -> None:
    project_id = project(client, admin_headers, dbt_project_dir)
    job_id = job(client, admin_headers, project_id, "nightly", "dbt build --exclude tag:broken")
    statuses = []
    original = ""
    for i in range(3):
        if i == 1:
            original = break_customer_orders(dbt_project_dir)
        if i == 2:
            restore_customer_orders(dbt_project_dir, original)
        statuses.append(
            wait(client, admin_headers, trigger(client, admin_headers, project_id, job_id))[
                "status"
            ]
        )
    assert statuses == ["success", "failed", "success"]

    url = f"/api/v1/projects/{project_id}/jobs/{job_id}/models"
    report = client.get(url, params={"window": "30d"}, headers=viewer_headers).json()
    by_name = {m["name"]: m for m in report["models"]}
    assert set(by_name) == {"stg_customers", "stg_orders", "customer_orders"}
    orders = by_name["customer_orders"]
    assert (orders["runs"], orders["failures"], orders["last_status"]) == (3, 1, "success")
    assert 0 < orders["p50_duration_seconds"] <= orders["p95_duration_seconds"]
    staging = by_name["stg_customers"]
    assert (staging["runs"], staging["failures"]) == (3, 0)
    assert report["total"] == 3 and report["window"] == "30d"

    tests = client.get(url, params={"resource_type": "test"}, headers=admin_headers).json()
    assert tests["total"] >= 8 and all(m["resource_type"] == "test" for m in tests["models"])
    skipped = [m for m in tests["models"] if "customer_orders" in m["unique_id"]]
    # Skipped in the failed run: counted as a run, not as a duration.
    assert skipped and all(m["runs"] == 3 and m["failures"] == 0 for m in skipped)

    assert_problem(
        client.get(url, params={"window": "30x"}, headers=admin_headers), 422, field="window"
    )
    assert_problem(
        client.get(url, params={"resource_type": "tables"}, headers=admin_headers),
        422,
        field="resource_type",
    )
    assert_problem(client.get(url, headers=other_org_headers), 404)
    runs = client.get(f"/api/v1/projects/{project_id}/jobs/{job_id}/runs", headers=admin_headers)
    newest = runs.json()["runs"][0]["id"]
    assert_problem(client.get(f"/api/v1/runs/{newest}/timeline", headers=other_org_headers), 404)


def test_sqlmesh_history_comes_from_the_log_and_retry_runs_the_command_again(
    client: TestClient[Any], admin_headers: H, sqlmesh_project_dir: Path
) -> None:
    model = sqlmesh_project_dir / "models" / "daily_orders.sql"
    model.write_text(model.read_text().replace("@demo_failure('model')", "CAST('abc' AS INTEGER)"))
    response = client.post(
        "/api/v1/projects",
        json={"name": "mesh", "kind": "sqlmesh", "path": str(sqlmesh_project_dir)},
        headers=admin_headers,
    )
    project_id = response.json()["id"]
    job_id = job(
        client,
        admin_headers,
        project_id,
        "plan",
        "sqlmesh plan --auto-apply --no-prompts",
    )
    run_id = trigger(client, admin_headers, project_id, job_id)
    assert wait(client, admin_headers, run_id)["status"] == "failed"

    timeline = client.get(f"/api/v1/runs/{run_id}/timeline", headers=admin_headers).json()
    assert timeline["source"] == "log"
    assert any("daily_orders" in failed for failed in timeline["failed"]), timeline
    url = f"/api/v1/projects/{project_id}/jobs/{job_id}/models"
    models = client.get(url, headers=admin_headers).json()["models"]
    assert [(m["name"], m["failures"], m["last_status"]) for m in models] == [
        ("shop.daily_orders", 1, "error")
    ]

    # SQLMesh has no run_results.json: its retry runs the command again, and SQLMesh's
    # own state skips the intervals that were done.
    retry = client.post(f"/api/v1/runs/{run_id}/retry", headers=admin_headers)
    assert retry.status_code == 201, retry.text
    body = retry.json()
    assert body["triggered_by"] == "retry" and body["retry_of"] == run_id
    assert body["command"] == "sqlmesh plan --auto-apply --no-prompts"
    wait(client, admin_headers, body["id"])
