"""Deferral and slim CI with REAL dbt on DuckDB: a CI job that defers to the production job
builds only the model a change touched (state:modified+ against production's manifest); the
job field is validated; a trigger's image is checked against the project's allowed_images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from tests.integration.api_helpers import assert_problem, make_project
from tests.integration.dbt_state_support import job, log_of, project, run_results, trigger, wait

pytestmark = pytest.mark.slow
H = dict[str, str]
CI_COMMAND = "dbt build --select state:modified+ --exclude tag:broken"


def test_a_deferred_ci_job_builds_only_the_modified_model(
    client: TestClient[Any], container: Container, admin_headers: H, dbt_project_dir: Path
) -> None:
    project_id = project(client, admin_headers, dbt_project_dir)
    prod = job(client, admin_headers, project_id, "prod", "dbt build --exclude tag:broken")
    ci = job(client, admin_headers, project_id, "ci", CI_COMMAND, defer_to_job_id=prod)
    read = client.get(f"/api/v1/projects/{project_id}/jobs/{ci}", headers=admin_headers).json()
    assert read["defer_to_job_id"] == prod
    listed = client.get(f"/api/v1/projects/{project_id}/jobs", headers=admin_headers).json()
    assert {j["name"]: j["defer_to_job_id"] for j in listed["jobs"]} == {"prod": None, "ci": prod}

    # Nothing to compare against until production has succeeded once.
    early = client.post(f"/api/v1/projects/{project_id}/jobs/{ci}/trigger", headers=admin_headers)
    assert "no successful run with a manifest.json" in assert_problem(early, 409)["detail"]

    prod_run = trigger(client, admin_headers, project_id, prod)
    assert wait(client, admin_headers, prod_run)["status"] == "success"
    assert container.store.artifacts.read(prod_run, "manifest.json") is not None

    # A pull request changes one model.
    sql = dbt_project_dir / "models" / "marts" / "customer_orders.sql"
    sql.write_text(sql.read_text().replace("min(o.order_date)", "max(o.order_date)"))
    ci_run = trigger(client, admin_headers, project_id, ci)
    done = wait(client, admin_headers, ci_run)
    log = log_of(client, admin_headers, ci_run)
    assert done["status"] == "success", log
    assert "--defer --state" in log
    built = run_results(container, ci_run)
    models = {u for u in built if u.startswith("model.")}
    assert models == {"model.dbt_demo.customer_orders"}, built
    assert all("customer_orders" in u for u in built)  # its tests, nothing upstream

    # The run records what it deferred to.
    record = container.store.runs.record(ci_run)
    assert record is not None and record.snapshot.state is not None
    assert record.snapshot.state.defer_run_id == prod_run


def test_defer_to_job_id_must_name_another_dbt_job_of_the_project(
    client: TestClient[Any], admin_headers: H, tmp_path: Path
) -> None:
    project_id = make_project(client, admin_headers)["id"]
    other = make_project(client, admin_headers, name="other")["id"]
    prod = job(client, admin_headers, project_id, "prod", "dbt build")
    elsewhere = job(client, admin_headers, other, "prod", "dbt build")
    url = f"/api/v1/projects/{project_id}/jobs"
    for target in (elsewhere, "job_nope"):
        body = {"name": "ci", "command": "dbt build", "defer_to_job_id": target}
        assert_problem(
            client.post(url, json=body, headers=admin_headers), 422, field="defer_to_job_id"
        )
    body = {"name": "ci", "command": "dbt build --state x", "defer_to_job_id": prod}
    assert_problem(client.post(url, json=body, headers=admin_headers), 422, field="command")
    # Not itself either.
    response = client.put(f"{url}/{prod}", json={"defer_to_job_id": prod}, headers=admin_headers)
    assert_problem(response, 422, field="defer_to_job_id")
    # A job others defer to stays until they stop deferring to it.
    ci = job(client, admin_headers, project_id, "ci", "dbt build", defer_to_job_id=prod)
    assert (
        "defer"
        in assert_problem(client.delete(f"{url}/{prod}", headers=admin_headers), 409)["detail"]
    )
    cleared = client.put(f"{url}/{ci}", json={"defer_to_job_id": None}, headers=admin_headers)
    assert cleared.status_code == 200 and cleared.json()["defer_to_job_id"] is None
    assert client.delete(f"{url}/{prod}", headers=admin_headers).status_code == 204
    sqlmesh = make_project(client, admin_headers, name="mesh", kind="sqlmesh")["id"]
    plan = job(client, admin_headers, sqlmesh, "plan", "sqlmesh run")
    body = {"name": "ci", "command": "sqlmesh run", "defer_to_job_id": plan}
    response = client.post(f"/api/v1/projects/{sqlmesh}/jobs", json=body, headers=admin_headers)
    assert_problem(response, 422, field="defer_to_job_id")


def test_allowed_images_are_repository_prefixes(client: TestClient[Any], admin_headers: H) -> None:
    good = make_project(
        client, admin_headers, allowed_images=["ghcr.io/acme/analytics", "localhost:5000/ci"]
    )
    assert good["allowed_images"] == ["ghcr.io/acme/analytics", "localhost:5000/ci"]
    for bad in (["ghcr.io/acme/analytics:pr-1"], ["ghcr.io/acme@sha256:" + "a" * 64], ["a b"]):
        body = {"name": "x", "kind": "dbt", "allowed_images": bad}
        response = client.post("/api/v1/projects", json=body, headers=admin_headers)
        assert_problem(response, 422, field="allowed_images")


def test_a_trigger_image_needs_kubernetes_and_an_allowed_repository(
    client: TestClient[Any], admin_headers: H
) -> None:
    project_id = make_project(client, admin_headers, allowed_images=["ghcr.io/acme/analytics"])[
        "id"
    ]
    job_id = job(client, admin_headers, project_id, "ci", "dbt build")
    url = f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger"
    # The local executor runs processes, not images: refused, nothing recorded.
    body = assert_problem(
        client.post(url, json={"image": "ghcr.io/acme/analytics:pr-7"}, headers=admin_headers),
        422,
        field="image",
    )
    assert "Kubernetes" in body["detail"]
    runs = client.get(f"/api/v1/projects/{project_id}/jobs/{job_id}/runs", headers=admin_headers)
    assert runs.json()["total"] == 0
