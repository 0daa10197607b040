"""``runyard apply -f runyard.yaml`` against a real server: create, a second apply that changes
nothing, --dry-run, --prune, secrets from environment references, and the file's JSON Schema
served by the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.jobfile import JobFile
from tests.conftest import LiveServer

FILE = """\
# yaml-language-server: $schema={url}/api/v1/schemas/runyard.yaml
projects:
  - name: shop
    kind: dbt
    path: dbt_demo
    description: the shop's models
    secret_environment:
      DBT_ENV_SECRET_PASSWORD: {{from_env: WAREHOUSE_PASSWORD}}
    jobs:
      - name: build
        command: dbt build --exclude tag:broken
        schedule: "0 2 * * *"
        timezone: Europe/Paris
      - name: check
        command: dbt test
        depends_on: [{{job: build}}]
        webhook_url: https://hooks.example.com/runyard
        webhook_secret: {{from_env: HOOK_SECRET}}
        webhook_headers:
          Authorization: {{from_env: HOOK_AUTH}}
"""

SECRETS = {
    "WAREHOUSE_PASSWORD": "hunter2-warehouse",
    "HOOK_SECRET": "0123456789abcdef-hook",
    "HOOK_AUTH": "Bearer hook-token",
}


@pytest.fixture
def world(live_server: LiveServer, dbt_project_dir: Path, tmp_path: Path) -> dict[str, Any]:
    token, _ = live_server.container.tokens.create("acme", "admin")
    path = tmp_path / "runyard.yaml"
    path.write_text(FILE.format(url=live_server.url))
    http = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return {"server": live_server, "token": token, "file": path, "http": http}


def _apply(world: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    base |= {"RUNYARD_URL": world["server"].url, "RUNYARD_TOKEN": world["token"]}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "apply", "-f", str(world["file"]), *args],
        capture_output=True,
        text=True,
        env=base | SECRETS | env,
        timeout=120,
    )


def _jobs(world: dict[str, Any]) -> dict[str, dict[str, Any]]:
    http: httpx.Client = world["http"]
    project = next(p for p in http.get("/api/v1/projects").json()["projects"])
    return {j["name"]: j for j in http.get(f"/api/v1/projects/{project['id']}/jobs").json()["jobs"]}


def test_apply_creates_then_a_second_apply_changes_nothing(world: dict[str, Any]) -> None:
    first = _apply(world)
    assert first.returncode == 0, first.stderr
    assert "project shop: create" in first.stdout
    assert "job shop/build: create" in first.stdout and "job shop/check: create" in first.stdout
    for value in SECRETS.values():  # secrets are never printed
        assert value not in first.stdout + first.stderr
    assert "secret_environment.DBT_ENV_SECRET_PASSWORD: set" in first.stdout

    http: httpx.Client = world["http"]
    project = http.get("/api/v1/projects").json()["projects"][0]
    assert project["description"] == "the shop's models"
    assert project["secret_environment"] == {"DBT_ENV_SECRET_PASSWORD": "********"}
    jobs = _jobs(world)
    assert jobs["build"]["timezone"] == "Europe/Paris"
    assert jobs["check"]["depends_on"] == [{"job_id": jobs["build"]["id"], "on": "success"}]
    assert jobs["check"]["webhook_secret_set"] is True
    assert jobs["check"]["webhook_headers"] == {"Authorization": "********"}
    # The server really holds the values from the environment, not the references.
    store = world["server"].container.store
    org = store.orgs.by_slug("acme")
    stored = store.jobs.get_in_org(org.id, jobs["check"]["id"])
    assert stored is not None
    stored_project = store.projects.get(org.id, project["id"])
    assert stored_project.secret_environment == {
        "DBT_ENV_SECRET_PASSWORD": SECRETS["WAREHOUSE_PASSWORD"]
    }
    assert stored.webhook_secret == SECRETS["HOOK_SECRET"]
    assert stored.webhook_headers == {"Authorization": SECRETS["HOOK_AUTH"]}

    second = _apply(world)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "no changes"
    assert _jobs(world)["build"]["version"] == jobs["build"]["version"]  # nothing was written

    as_json = json.loads(_apply(world, "--json").stdout)
    assert as_json == {"dry_run": False, "changed": False, "changes": []}


def test_dry_run_prints_the_diff_and_changes_nothing(world: dict[str, Any]) -> None:
    assert _apply(world).returncode == 0
    text = world["file"].read_text()
    world["file"].write_text(
        text.replace('schedule: "0 2 * * *"', 'schedule: "30 3 * * *"').replace(
            "      DBT_ENV_SECRET_PASSWORD: {from_env: WAREHOUSE_PASSWORD}\n",
            "      DBT_ENV_SECRET_PASSWORD: {from_env: WAREHOUSE_PASSWORD}\n"
            "      DBT_ENV_SECRET_USER: {from_env: WAREHOUSE_USER}\n",
        )
    )
    before = _jobs(world)
    dry = _apply(world, "--dry-run", WAREHOUSE_USER="analyst")
    assert dry.returncode == 0, dry.stderr
    assert "job shop/build: update" in dry.stdout
    assert "~ schedule: '0 2 * * *' -> '30 3 * * *'" in dry.stdout
    assert "+ secret_environment.DBT_ENV_SECRET_USER: set (secret" in dry.stdout
    assert "DBT_ENV_SECRET_PASSWORD" not in dry.stdout  # unchanged secrets are not listed
    assert "analyst" not in dry.stdout
    assert "dry run: nothing was changed" in dry.stdout
    assert _jobs(world) == before

    replaced = _apply(world, "--dry-run", "--update-secrets", WAREHOUSE_USER="analyst")
    assert "~ secret_environment.DBT_ENV_SECRET_PASSWORD: replaced (secret" in replaced.stdout

    applied = _apply(world, WAREHOUSE_USER="analyst")
    assert applied.returncode == 0, applied.stderr
    assert _jobs(world)["build"]["schedule"] == "30 3 * * *"
    assert _apply(world, WAREHOUSE_USER="analyst").stdout.strip() == "no changes"


def test_prune_deletes_the_jobs_the_file_no_longer_lists(world: dict[str, Any]) -> None:
    assert _apply(world).returncode == 0
    http: httpx.Client = world["http"]
    project = http.get("/api/v1/projects").json()["projects"][0]
    extra = http.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "handmade", "command": "dbt run", "schedule": None},
    )
    assert extra.status_code == 201
    kept = _apply(world)
    assert "job shop/handmade: not in the file, kept (--prune deletes it)" in kept.stdout
    assert "no changes" in kept.stdout
    assert "handmade" in _jobs(world)
    dry = _apply(world, "--prune", "--dry-run")
    assert "job shop/handmade: delete" in dry.stdout and "handmade" in _jobs(world)
    pruned = _apply(world, "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "job shop/handmade: delete" in pruned.stdout
    assert set(_jobs(world)) == {"build", "check"}


def test_an_unset_secret_variable_is_an_error_naming_it(world: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env |= {"RUNYARD_URL": world["server"].url, "RUNYARD_TOKEN": world["token"]}
    env |= {k: v for k, v in SECRETS.items() if k != "HOOK_SECRET"}
    env.pop("HOOK_SECRET", None)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "apply", "-f", str(world["file"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "HOOK_SECRET is not set" in result.stderr
    assert "shop/check.webhook_secret" in result.stderr
    assert world["http"].get("/api/v1/projects").json()["total"] == 0  # nothing was sent


def test_a_literal_secret_in_the_file_is_refused(world: dict[str, Any]) -> None:
    world["file"].write_text(
        world["file"].read_text().replace("{from_env: HOOK_AUTH}", "Bearer in-the-file")
    )
    result = _apply(world)
    assert result.returncode == 2
    assert "projects[0].jobs[1].webhook_headers.Authorization" in result.stderr
    assert "a literal secret in the file is refused" in result.stderr
    assert world["http"].get("/api/v1/projects").json()["total"] == 0


def test_the_api_serves_the_files_json_schema(world: dict[str, Any]) -> None:
    response = httpx.get(f"{world['server'].url}/api/v1/schemas/runyard.yaml")  # no token
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    assert schema == json.loads(msgspec.json.encode(msgspec.json.schema(JobFile))) | {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "runyard.yaml",
    }
    job = schema["$defs"]["JobSpec"]
    # command or steps (docs/steps.md): the server says which is missing.
    assert job["required"] == ["name"]
    assert {"command", "steps"} <= set(job["properties"])
    assert job["properties"]["webhook_secret"]["anyOf"][0] == {"$ref": "#/$defs/FromEnv"}
    assert job["additionalProperties"] is False  # a misspelt field is flagged by editors


SLIM_CI = """\
projects:
  - name: shop
    kind: dbt
    path: dbt_demo
    allowed_images: [ghcr.io/acme/shop]
    jobs:
      - name: ci
        command: dbt build --select state:modified+
        defer_to: nightly
      - name: nightly
        command: dbt build --exclude tag:broken
"""


def test_apply_sets_deferral_by_name_and_allowed_images(world: dict[str, Any]) -> None:
    """`defer_to` names a job of the file (listed after the job that defers to it, so apply
    orders them), and `allowed_images` is a plain project field; both are idempotent."""
    world["file"].write_text(SLIM_CI)
    first = _apply(world)
    assert first.returncode == 0, first.stderr
    jobs = _jobs(world)
    assert jobs["ci"]["defer_to_job_id"] == jobs["nightly"]["id"]
    http: httpx.Client = world["http"]
    project = http.get("/api/v1/projects").json()["projects"][0]
    assert project["allowed_images"] == ["ghcr.io/acme/shop"]
    second = _apply(world)
    assert second.returncode == 0, second.stderr
    assert "no changes" in second.stdout

    world["file"].write_text(SLIM_CI.replace("        defer_to: nightly\n", ""))
    third = _apply(world)
    assert third.returncode == 0, third.stderr
    assert "defer_to" in third.stdout
    assert _jobs(world)["ci"]["defer_to_job_id"] is None
