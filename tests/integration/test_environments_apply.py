"""``runyard apply`` with environments: a file lists a project's environments (secrets from
environment references) and names each job's; a second apply changes nothing; moving a job
and pruning an environment work in order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

FILE = """\
projects:
  - name: shop
    kind: dbt
    path: dbt_demo
    environments:
      - name: default
        environment: {{WAREHOUSE: DEV_WH}}
      - name: prod
        target: prod
        environment: {{WAREHOUSE: PROD_WH}}
        secret_environment:
          SNOWFLAKE_PASSWORD: {{from_env: PROD_PASSWORD}}
{extra}
    jobs:
      - name: build
        command: dbt build
        environment_name: {job_env}
        allow_environment_override: true
"""
STAGING = """\
      - name: staging
        target: staging
"""
SECRET = "prod-password-from-env-31c7"


@pytest.fixture
def world(live_server: LiveServer, dbt_project_dir: Path, tmp_path: Path) -> dict[str, Any]:
    token, _ = live_server.container.tokens.create("acme", "admin")
    http = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return {"server": live_server, "token": token, "file": tmp_path / "runyard.yaml", "http": http}


def _apply(world: dict[str, Any], text: str, *args: str) -> subprocess.CompletedProcess[str]:
    world["file"].write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env |= {
        "RUNYARD_URL": world["server"].url,
        "RUNYARD_TOKEN": world["token"],
        "PROD_PASSWORD": SECRET,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "apply", "-f", str(world["file"]), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _state(world: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    http: httpx.Client = world["http"]
    project = http.get("/api/v1/projects").json()["projects"][0]
    environments = http.get(f"/api/v1/projects/{project['id']}/environments").json()
    jobs = http.get(f"/api/v1/projects/{project['id']}/jobs").json()["jobs"]
    return {e["name"]: e for e in environments["environments"]}, {j["name"]: j for j in jobs}


def test_apply_environments(world: dict[str, Any]) -> None:
    first = _apply(world, FILE.format(extra=STAGING, job_env="prod"))
    assert first.returncode == 0, first.stderr
    assert SECRET not in first.stdout + first.stderr
    environments, jobs = _state(world)
    assert set(environments) == {"default", "prod", "staging"}
    assert environments["default"]["is_default"]
    assert environments["default"]["environment"] == {"WAREHOUSE": "DEV_WH"}
    assert environments["prod"]["target"] == "prod"
    assert environments["prod"]["secret_environment"] == {"SNOWFLAKE_PASSWORD": "********"}
    container = world["server"].container
    org = container.store.orgs.by_slug("acme")
    stored = container.store.environments.get(
        org.id, environments["prod"]["project_id"], environments["prod"]["id"]
    )
    assert stored.secret_environment == {"SNOWFLAKE_PASSWORD": SECRET}
    assert jobs["build"]["environment_id"] == environments["prod"]["id"]
    assert jobs["build"]["allow_environment_override"] is True

    again = _apply(world, FILE.format(extra=STAGING, job_env="prod"))
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stdout, again.stdout

    # Move the job to staging and drop prod from the file: kept without --prune ...
    moved = _apply(world, FILE.format(extra=STAGING, job_env="staging").replace(
        "      - name: prod\n        target: prod\n        environment: {WAREHOUSE: PROD_WH}\n"
        "        secret_environment:\n          SNOWFLAKE_PASSWORD: {from_env: PROD_PASSWORD}\n",
        "",
    ))  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert "environment_name: 'prod' -> 'staging'" in moved.stdout, moved.stdout
    assert "environment shop/prod: not in the file, kept" in moved.stdout
    environments, jobs = _state(world)
    assert jobs["build"]["environment_id"] == environments["staging"]["id"]
    assert "prod" in environments

    # ... and deleted with it (after the job left it); the default is never pruned.
    pruned = _apply(world, world["file"].read_text(), "--prune")
    assert pruned.returncode == 0, pruned.stderr
    environments, _ = _state(world)
    assert set(environments) == {"default", "staging"}

    # A job naming an environment the project does not have stops the apply before sending.
    unknown = _apply(world, FILE.format(extra="", job_env="qa"))
    assert unknown.returncode == 2 and "environment_name 'qa'" in unknown.stderr
