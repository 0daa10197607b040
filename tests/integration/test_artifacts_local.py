"""Artifacts of local runs with real dbt on DuckDB: what dbt wrote is listed and downloads
byte-identical; a failed compile (exit 2) keeps nothing of the previous run; a symlink
planted in target/ is not followed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.integration.test_api_runs import Api

pytestmark = pytest.mark.slow


@pytest.fixture
def api(live_server: LiveServer) -> Api:
    return Api(live_server)


def test_build_artifacts_are_kept_byte_identical(api: Api, dbt_project_dir: Path) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt build --exclude tag:broken")
    run = api.wait(api.trigger(project["id"], job["id"]).json()["job_run_id"])
    assert run["status"] == "success", run

    listed = api.http.get(f"/api/v1/runs/{run['id']}/artifacts").json()["artifacts"]
    names = {a["name"] for a in listed}
    assert {"run_results.json", "manifest.json"} <= names
    target = dbt_project_dir / "target"
    for artifact in listed:
        written = (target / artifact["name"]).read_bytes()
        assert artifact["size"] == len(written)
        assert artifact["sha256"] == hashlib.sha256(written).hexdigest()
        got = api.http.get(f"/api/v1/runs/{run['id']}/artifacts/{artifact['name']}")
        assert got.status_code == 200 and got.content == written
    latest = api.http.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/artifacts/run_results.json"
    )
    assert latest.content == (target / "run_results.json").read_bytes()
    log = api.http.get(f"/api/v1/runs/{run['id']}/logs").text
    assert "artifacts kept:" in log


def test_failed_compile_keeps_no_stale_results(
    api: Api, dbt_project_dir: Path, tmp_path: Path
) -> None:
    project = api.project(dbt_project_dir)
    job = api.job(project["id"], "build", "dbt build --exclude tag:broken")
    first = api.wait(api.trigger(project["id"], job["id"]).json()["job_run_id"])
    assert first["status"] == "success"
    target = dbt_project_dir / "target"
    stale = (target / "run_results.json").read_bytes()

    # A reference to a model that does not exist: dbt stops before running (exit 2) and
    # leaves the first run's run_results.json in place.
    (dbt_project_dir / "models" / "staging" / "bad.sql").write_text(
        "select * from {{ ref('no_such_model') }}\n"
    )
    # A planted symlink with a fresh mtime: runyard, unconfined, must not follow it.
    outside = tmp_path / "elsewhere.json"
    outside.write_text('{"secret": "of another org"}')
    (target / "catalog.json").unlink(missing_ok=True)
    os.symlink(outside, target / "catalog.json")

    second = api.wait(api.trigger(project["id"], job["id"]).json()["job_run_id"])
    assert second["status"] == "failed" and second["exit_code"] == 2, second
    assert (target / "run_results.json").read_bytes() == stale  # still there on disk
    listed = api.http.get(f"/api/v1/runs/{second['id']}/artifacts").json()["artifacts"]
    names = {a["name"] for a in listed}
    assert "run_results.json" not in names and "catalog.json" not in names, listed
    if not listed:
        note = api.http.get(f"/api/v1/runs/{second['id']}/artifacts").json()["note"]
        assert "dbt wrote no artifacts" in note
    missing = api.http.get(f"/api/v1/runs/{second['id']}/artifacts/run_results.json")
    assert missing.status_code == 404
