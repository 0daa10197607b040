"""Environments on the local executor, with real dbt on DuckDB: a job's prod environment and
a one-off run in staging use their own dbt target (a different DuckDB file), path, variables
and sealed credentials, and the stored log masks the credentials."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.models import REDACTED
from tests.integration.api_helpers import assert_problem

Client = TestClient[Any]
H = dict[str, str]
PROD_PASSWORD = "prod-pw-7d1e3b9a5c"
STAGING_PASSWORD = "staging-pw-2c8f6a4e0b"

PROFILES = """\
dbt_demo:
  target: dev
  outputs:
    dev: {type: duckdb, path: dev.duckdb, threads: 1}
    staging: {type: duckdb, path: staging.duckdb, threads: 1}
    prod: {type: duckdb, path: prod.duckdb, threads: 1}
"""
PROBE = (
    "{{ log('probe target=' ~ target.name ~ ' warehouse=' ~ env_var('WAREHOUSE', 'absent')"
    " ~ ' password=' ~ env_var('SNOWFLAKE_PASSWORD', 'absent') ~ ' end', info=True) }}\n"
    "select 1 as id\n"
)


def _prepare(project_dir: Path) -> None:
    (project_dir / "profiles.yml").write_text(PROFILES)
    (project_dir / "models" / "marts" / "env_probe.sql").write_text(PROBE)


def _wait_terminal(client: Client, headers: H, run_id: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["is_terminal"]:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end")


def _trigger(client: Client, headers: H, url: str, body: dict[str, Any]) -> str:
    response = client.post(url, json=body, headers=headers)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["job_run_id"]
    run = _wait_terminal(client, headers, run_id)
    assert run["status"] == "success", run
    return run_id


def _env(client: Client, headers: H, project_id: str, **fields: Any) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/projects/{project_id}/environments", json=fields, headers=headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.slow
def test_prod_job_and_a_one_off_staging_run_use_their_environments(
    client: Client, container: Container, admin_headers: H, dbt_project_dir: Path
) -> None:
    _prepare(dbt_project_dir)
    # Staging runs a copy of the project in its own folder (the environment's path).
    staging_dir = dbt_project_dir.parent / "dbt_staging"
    shutil.copytree(dbt_project_dir, staging_dir)
    response = client.post(
        "/api/v1/projects",
        json={"name": "analytics", "kind": "dbt", "path": "dbt_demo"},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    project = response.json()
    prod = _env(
        client,
        admin_headers,
        project["id"],
        name="prod",
        target="prod",
        environment={"WAREHOUSE": "PROD_WH"},
        secret_environment={"SNOWFLAKE_PASSWORD": PROD_PASSWORD},
    )
    _env(
        client,
        admin_headers,
        project["id"],
        name="staging",
        target="staging",
        path="dbt_staging",
        environment={"WAREHOUSE": "STAGING_WH"},
        secret_environment={"SNOWFLAKE_PASSWORD": STAGING_PASSWORD},
    )
    response = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={
            "name": "probe",
            "command": "dbt run --select env_probe",
            "environment_id": prod["id"],
            "allow_environment_override": True,
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    trigger = f"/api/v1/projects/{project['id']}/jobs/{response.json()['id']}/trigger"

    prod_run = _trigger(client, admin_headers, trigger, {})
    staging_run = _trigger(client, admin_headers, trigger, {"environment": "staging"})

    prod_log = client.get(f"/api/v1/runs/{prod_run}/logs", headers=admin_headers).text
    staging_log = client.get(f"/api/v1/runs/{staging_run}/logs", headers=admin_headers).text
    assert f"probe target=prod warehouse=PROD_WH password={REDACTED} end" in prod_log, prod_log
    assert f"probe target=staging warehouse=STAGING_WH password={REDACTED} end" in staging_log
    for text in (prod_log, staging_log):
        assert PROD_PASSWORD not in text and STAGING_PASSWORD not in text
    # Each target wrote its own database, each in its environment's folder.
    assert (dbt_project_dir / "prod.duckdb").exists()
    assert not (dbt_project_dir / "staging.duckdb").exists()
    assert (staging_dir / "staging.duckdb").exists()
    assert not (staging_dir / "prod.duckdb").exists()
    # The snapshot keeps the environment, its credential sealed.
    config = client.get(f"/api/v1/runs/{staging_run}/config", headers=admin_headers).json()
    assert config["environment"]["name"] == "staging"
    assert config["environment"]["secret_environment"] == {"SNOWFLAKE_PASSWORD": REDACTED}
    row = container.store.database.row("SELECT snapshot FROM runs WHERE id = ?", (staging_run,))
    assert row is not None and STAGING_PASSWORD not in row["snapshot"]


def test_one_off_into_another_environment_needs_the_job_to_allow_it(
    client: Client, admin_headers: H, dbt_project_dir: Path
) -> None:
    response = client.post(
        "/api/v1/projects",
        json={"name": "analytics", "kind": "dbt", "path": "dbt_demo"},
        headers=admin_headers,
    )
    project = response.json()
    _env(client, admin_headers, project["id"], name="staging", target="staging")
    response = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "probe", "command": "dbt parse"},
        headers=admin_headers,
    )
    job = response.json()
    trigger = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger"
    body = assert_problem(
        client.post(trigger, json={"environment": "staging"}, headers=admin_headers), 409
    )
    assert "allow_environment_override" in body["detail"]
    runs = client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs", headers=admin_headers
    )
    assert runs.json()["total"] == 0  # refused before anything was recorded
    # Naming the job's own environment needs no permission.
    default = client.get(
        f"/api/v1/projects/{project['id']}/environments", headers=admin_headers
    ).json()["environments"][0]
    assert default["is_default"]
    response = client.post(trigger, json={"environment_id": default["id"]}, headers=admin_headers)
    assert response.status_code == 201, response.text
