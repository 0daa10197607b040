"""Tenant isolation of the local executor through the real API: project paths confined to
the org's folder, real dbt and SQLMesh runs confined by Landlock, the refusal to serve a
second org without Landlock, and the per-org cap of active runs."""

# ruff: noqa: S608  (the models read and write files on purpose: the sandbox must refuse it)

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container, ExecutorDeps
from app.executors.local import sandbox as local_sandbox
from app.executors.local.executor import LocalExecutor, build_local_executor
from app.main import create_app
from app.settings import Settings
from tests.conftest import org_folder
from tests.conftest_examples import copy_example
from tests.integration.api_helpers import assert_problem

Client = TestClient[Any]
Headers = dict[str, str]

needs_landlock = pytest.mark.skipif(
    local_sandbox.abi_version() < 1, reason="the kernel has no Landlock"
)


def create_project(client: Client, headers: Headers, **fields: Any) -> str:
    body = {"name": "analytics", "kind": "dbt", "path": "dbt_demo"} | fields
    response = client.post("/api/v1/projects", json=body, headers=headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


def create_job(client: Client, headers: Headers, project_id: str, **fields: Any) -> str:
    body = {"name": "nightly", "command": "dbt build", "schedule": None} | fields
    response = client.post(f"/api/v1/projects/{project_id}/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def trigger(client: Client, headers: Headers, project_id: str, job_id: str) -> Any:
    return client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={}, headers=headers
    )


def run_to_end(client: Client, headers: Headers, project_id: str, job_id: str) -> Any:
    response = trigger(client, headers, project_id, job_id)
    assert response.status_code == 201, response.text
    run_id = response.json()["job_run_id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["is_terminal"]:
            run["log"] = client.get(f"/api/v1/runs/{run_id}/logs", headers=headers).text
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end")


def other_org_secret(tmp_path: Path) -> Path:
    """A file in org globex's project, which acme's runs must not read."""
    project = org_folder(tmp_path, "globex") / "warehouse"
    project.mkdir()
    secret = project / "profiles.yml"
    secret.write_text("password: globex-warehouse-password\n")
    return secret


# --- confined project paths ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "../../etc", "..", "/etc", "../globex/warehouse"])
def test_a_project_path_outside_the_org_folder_is_a_422_naming_the_root(
    client: Client, admin_headers: Headers, tmp_path: Path, path: str
) -> None:
    other_org_secret(tmp_path)
    response = client.post(
        "/api/v1/projects", json={"name": "a", "kind": "dbt", "path": path}, headers=admin_headers
    )
    problem = assert_problem(response, 422, field="path")
    assert str(tmp_path / "projects") in problem["detail"]
    assert str(tmp_path / "projects" / "acme") in problem["detail"]
    assert client.get("/api/v1/projects", headers=admin_headers).json()["total"] == 0


def test_another_orgs_folder_and_symlinks_out_are_refused_on_create_and_update(
    client: Client, admin_headers: Headers, tmp_path: Path, dbt_project_dir: Path
) -> None:
    secret = other_org_secret(tmp_path)
    (dbt_project_dir.parent / "sneaky").symlink_to(secret.parent)
    for path in (str(secret.parent), "sneaky", str(tmp_path)):
        response = client.post(
            "/api/v1/projects",
            json={"name": "a", "kind": "dbt", "path": path},
            headers=admin_headers,
        )
        assert_problem(response, 422, field="path")
    project_id = create_project(client, admin_headers)
    response = client.put(
        f"/api/v1/projects/{project_id}", json={"path": "sneaky"}, headers=admin_headers
    )
    assert_problem(response, 422, field="path")
    project = client.get(f"/api/v1/projects/{project_id}", headers=admin_headers).json()
    assert project["path"] == "dbt_demo"


def test_a_symlink_swapped_in_after_save_is_refused_at_launch(
    client: Client, admin_headers: Headers, tmp_path: Path, dbt_project_dir: Path
) -> None:
    secret = other_org_secret(tmp_path)
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id)
    shutil.rmtree(dbt_project_dir)
    dbt_project_dir.symlink_to(secret.parent)
    problem = assert_problem(trigger(client, admin_headers, project_id, job_id), 422)
    assert "outside your organization's folder" in problem["detail"]


# --- real runs in the sandbox -------------------------------------------------------------


def _probe_models(project: Path, database: Path, secret: Path, outside: Path) -> None:
    folder = project / "models" / "probe"
    folder.mkdir()
    config = "{{ config(materialized='table', tags=['probe']) }}\n"
    (folder / "steal_database.sql").write_text(
        config + f"select size from read_blob('{database}')\n"
    )
    (folder / "steal_other_org.sql").write_text(
        config + f"select content from read_text('{secret}')\n"
    )
    (folder / "write_outside.sql").write_text(
        "{{ config(materialized='table', tags=['probe'], pre_hook=\"copy (select 42 as x) "
        f"to '{outside}'\") }}}}\nselect 1 as id\n"
    )


@needs_landlock
@pytest.mark.slow
def test_dbt_models_cannot_read_runyards_database_or_another_org_nor_write_outside(
    client: Client,
    admin_headers: Headers,
    tmp_path: Path,
    dbt_project_dir: Path,
    container: Container,
) -> None:
    secret = other_org_secret(tmp_path)
    database = Path(container.settings.database)
    outside = tmp_path / "planted.csv"
    _probe_models(dbt_project_dir, database, secret, outside)
    project_id = create_project(client, admin_headers)
    probe = create_job(client, admin_headers, project_id, command="dbt run --select tag:probe")
    normal = create_job(
        client,
        admin_headers,
        project_id,
        name="build",
        command="dbt build --exclude tag:broken --exclude tag:probe",
    )

    run = run_to_end(client, admin_headers, project_id, probe)

    assert run["status"] == "failed"
    results = {r["name"]: r for r in run["results"]}
    assert set(results) == {"steal_database", "steal_other_org", "write_outside"}
    for name in results:
        assert results[name]["status"] == "error"
        assert "Permission denied" in results[name]["message"], results[name]
    assert "globex-warehouse-password" not in run["log"]
    assert "[runyard] sandbox: no_new_privs" in run["log"]
    assert not outside.exists()

    built = run_to_end(client, admin_headers, project_id, normal)
    assert (built["status"], built["exit_code"]) == ("success", 0)


@needs_landlock
@pytest.mark.slow
def test_sqlmesh_models_cannot_read_runyards_database_or_another_org(
    client: Client,
    admin_headers: Headers,
    tmp_path: Path,
    sqlmesh_project_dir: Path,
    container: Container,
) -> None:
    secret = other_org_secret(tmp_path)
    database = Path(container.settings.database)
    models = sqlmesh_project_dir / "models"
    (models / "steal.sql").write_text(
        "MODEL (name shop.steal, kind FULL);\n"
        f"SELECT content FROM read_text('{secret}')\n"
        f"UNION ALL SELECT CAST(size AS VARCHAR) FROM read_blob('{database}')\n"
    )
    project_id = create_project(
        client, admin_headers, name="metrics", kind="sqlmesh", path="sqlmesh_demo"
    )
    plan = create_job(
        client, admin_headers, project_id, command="sqlmesh plan --auto-apply --no-prompts"
    )

    stolen = run_to_end(client, admin_headers, project_id, plan)

    assert (stolen["status"], stolen["exit_code"]) == ("failed", 1)
    assert "Permission denied" in stolen["log"]
    assert "globex-warehouse-password" not in stolen["log"]

    (models / "steal.sql").unlink()
    planned = run_to_end(client, admin_headers, project_id, plan)
    assert (planned["status"], planned["exit_code"]) == ("success", 0), planned["log"]


# --- without Landlock; with the sandbox off -----------------------------------------------


@pytest.fixture
def make_container(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []

    def make(abi: int | None = None, **settings: Any) -> Container:
        def executor(deps: ExecutorDeps) -> LocalExecutor:
            # abi 0: a kernel without Landlock
            return build_local_executor(
                deps.store, deps.events, deps.settings, clock=deps.clock, landlock_abi=abi
            )

        container = Container(
            settings_factory(**settings), executor_factory=executor, scheduler_thread=False
        )
        container.start()
        made.append(container)
        return container

    yield make
    for container in reversed(made):
        container.stop()


def _two_orgs(container: Container, tmp_path: Path) -> tuple[Headers, Headers]:
    for org in ("acme", "globex"):
        copy_example("dbt_demo", org_folder(tmp_path, org) / "dbt_demo")
    first, _ = container.tokens.create("acme", "admin")
    second, _ = container.tokens.create("globex", "admin")
    return {"Authorization": f"Bearer {first}"}, {"Authorization": f"Bearer {second}"}


@pytest.mark.slow
def test_without_landlock_a_second_org_is_refused_unless_the_sandbox_is_off(
    make_container: Callable[..., Container], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    container = make_container(abi=0)
    acme, globex = _two_orgs(container, tmp_path)
    with TestClient(create_app(container=container)) as client:
        acme_project = create_project(client, acme)
        acme_job = create_job(client, acme, acme_project, command="dbt debug")
        globex_project = create_project(client, globex)
        globex_job = create_job(client, globex, globex_project, command="dbt debug")

        refused = assert_problem(trigger(client, globex, globex_project, globex_job), 409)
        assert "Landlock" in refused["detail"]
        assert "RUNYARD_LOCAL_SANDBOX=off" in refused["detail"]
        first = run_to_end(client, acme, acme_project, acme_job)
        assert first["status"] == "success", first["log"]
    container.stop()

    caplog.clear()
    container = make_container(abi=0, local_sandbox=False)
    assert "RUNYARD_LOCAL_SANDBOX=off: local runs are NOT confined" in caplog.text
    with TestClient(create_app(container=container)) as client:
        run = run_to_end(client, globex, globex_project, globex_job)
    assert run["status"] == "success", run["log"]
    assert "[runyard] RUNYARD_LOCAL_SANDBOX=off: this run is not confined" in run["log"]
    assert "[runyard] sandbox: no_new_privs" not in run["log"]


# --- the per-org cap ------------------------------------------------------------------------


def _slow(project: Path) -> None:
    folder = project / "models" / "slow"
    folder.mkdir()
    (folder / "slow.sql").write_text(
        "{{ config(materialized='table', tags=['slow']) }}\n"
        "select 1 as id, cast(pg_sleep(120) as integer) as slept\n"
    )


@pytest.mark.slow
def test_runs_beyond_the_per_org_cap_queue_and_scheduled_fires_too(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    """RUNYARD_LOCAL_MAX_RUNS_PER_ORG is the default per-org cap (docs/queues.md): a run
    beyond it waits in the queue (no 429 any more), a scheduled fire is queued, not
    skipped, and they start when the place frees up."""
    container = make_container(local_max_runs_per_org=1)
    acme, globex = _two_orgs(container, tmp_path)
    for org in ("acme", "globex"):
        _slow(org_folder(tmp_path, org) / "dbt_demo")
    scheduler = container.scheduler
    assert isinstance(container.executor, LocalExecutor) and scheduler is not None
    with TestClient(create_app(container=container)) as client:
        project = create_project(client, acme)
        slow = create_job(client, acme, project, command="dbt run --select slow")
        other = create_job(client, acme, project, name="other", command="dbt debug")
        create_job(client, acme, project, name="cron", command="dbt debug", schedule="* * * * *")
        assert client.post(f"/api/v1/projects/{project}/deploy", headers=acme).status_code == 200
        globex_project = create_project(client, globex)
        globex_job = create_job(client, globex, globex_project, command="dbt run --select slow")

        running = trigger(client, acme, project, slow)
        assert running.status_code == 201, running.text

        waiting = trigger(client, acme, project, other)
        assert waiting.status_code == 201, waiting.text
        assert waiting.json()["status"] == "queued"

        scheduler.tick()
        due = scheduler.next_due()
        assert due is not None
        [fire] = scheduler.tick(due)
        assert fire.outcome == "started"
        queued = client.get("/api/v1/runs", params={"status": "queued"}, headers=acme).json()
        assert len(queued["runs"]) == 2

        # The cap is per org: another org's run starts.
        theirs = trigger(client, globex, globex_project, globex_job)
        assert theirs.status_code == 201, theirs.text
        assert theirs.json()["status"] == "pending"
        for headers, run in ((acme, running), (globex, theirs)):
            client.post(f"/api/v1/runs/{run.json()['job_run_id']}/cancel", headers=headers)
        # The place is free: the queued runs start, one at a time.
        waited = waiting.json()["job_run_id"]
        deadline = time.monotonic() + 180
        while not client.get(f"/api/v1/runs/{waited}", headers=acme).json()["is_terminal"]:
            assert time.monotonic() < deadline, "the queued run did not run"
            time.sleep(0.2)
        assert client.get(f"/api/v1/runs/{waited}", headers=acme).json()["status"] == "success"
