"""Write-only secrets through the real API: no read shows a value (admin or viewer, jobs,
lists, versions, run configuration, manifest, notifications), the database file holds none
in the clear, a real dbt run gets them and its log masks them, and a webhook receiver still
gets the real header and a valid signature."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.models import REDACTED
from tests.integration.api_helpers import assert_problem
from tests.integration.test_notify_support import (
    FAST_RETRIES,
    Receiver,
    finish,
    make_run,
    receiver,
    verify_signature,
)

Client = TestClient[Any]
H = dict[str, str]

HEADER = "Bearer hdr-token-5b1e9c7d3a"
JOB_ENV = "job-pass-8c2e4a6f1d"
PROJECT_ENV = "proj-pass-3f7b9d1c5e"
HOOK = "whsec-0a9b8c7d6e5f4a3b"
SLACK = "https://hooks.slack.com/services/T0/B0/slk-4d2f6b8a0c"
SECRETS = (HEADER, HEADER.split()[1], JOB_ENV, PROJECT_ENV, HOOK, SLACK)


@pytest.fixture
def hook() -> Any:
    with receiver() as found:
        yield found


@pytest.fixture(autouse=True)
def _project_folder(dbt_project_dir: Path) -> Path:
    """Every project here points at a real copy of the example (paths are checked)."""
    return dbt_project_dir


@pytest.fixture
def container(container_factory: Callable[..., Container]) -> Container:
    # Webhooks may reach the local receiver; retries in milliseconds.
    built = container_factory(webhook_allowed_hosts=("127.0.0.1",), notify_timeout_seconds=1.0)
    built.notifications.retry_policy = FAST_RETRIES
    return built


def _no_secret(text: str, where: str) -> None:
    for value in SECRETS:
        assert value not in text, f"{where} shows a secret value"


def _project(client: Client, headers: H, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "analytics",
        "kind": "dbt",
        "path": "dbt_demo",
        "environment": {"WAREHOUSE": "dev"},
        "secret_environment": {"PROJECT_PASSWORD": PROJECT_ENV},
        "slack_webhook_url": SLACK,
    } | fields
    response = client.post("/api/v1/projects", json=body, headers=headers)
    assert response.status_code == 201, response.text
    _no_secret(response.text, "POST /projects")
    project: dict[str, Any] = response.json()
    return project


def _job(client: Client, headers: H, project_id: str, hook: Receiver, **fields: Any) -> Any:
    body = {
        "name": "probe",
        "command": "dbt run --select env_probe",
        "schedule": "0 2 * * *",
        "webhook_enabled": True,
        "webhook_url": hook.url("/runyard"),
        "webhook_events": ["success", "failure"],
        "webhook_headers": {"Authorization": HEADER, "X-Team": "data"},
        "webhook_secret": HOOK,
        "secret_environment": {"WAREHOUSE_PASSWORD": JOB_ENV},
    } | fields
    response = client.post(f"/api/v1/projects/{project_id}/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    _no_secret(response.text, "POST /jobs")
    return response.json()


def _probe_model(project_dir: Path) -> None:
    """A model that prints both secret variables into the run's log."""
    (project_dir / "models" / "marts" / "env_probe.sql").write_text(
        "{{ log('probe job=' ~ env_var('WAREHOUSE_PASSWORD', 'absent')"
        " ~ ' project=' ~ env_var('PROJECT_PASSWORD', 'absent'), info=True) }}\n"
        "select 1 as id\n"
    )


def _wait_terminal(client: Client, headers: H, run_id: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["is_terminal"]:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end")


def _run_probe(client: Client, headers: H, project_id: str, job_id: str) -> str:
    response = client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={}, headers=headers
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["job_run_id"]
    run = _wait_terminal(client, headers, run_id)
    assert run["status"] == "success", run
    return run_id


@pytest.mark.slow
def test_a_real_run_gets_the_job_secret_and_its_log_masks_it(
    client: Client, admin_headers: H, viewer_headers: H, dbt_project_dir: Path, hook: Receiver
) -> None:
    _probe_model(dbt_project_dir)
    project = _project(client, admin_headers)
    job = _job(client, admin_headers, project["id"], hook)
    run_id = _run_probe(client, admin_headers, project["id"], job["id"])

    for headers in (admin_headers, viewer_headers):
        text = client.get(f"/api/v1/runs/{run_id}/logs", headers=headers).text
        # dbt printed the value it got; the stored log has the mask in its place.
        assert f"probe job={REDACTED} " in text, text[-2000:]
        _no_secret(text, "the run's log")


@pytest.mark.slow
def test_a_real_run_gets_the_project_secret(
    client: Client, admin_headers: H, dbt_project_dir: Path, hook: Receiver
) -> None:
    _probe_model(dbt_project_dir)
    project = _project(client, admin_headers)
    job = _job(client, admin_headers, project["id"], hook)
    run_id = _run_probe(client, admin_headers, project["id"], job["id"])
    text = client.get(f"/api/v1/runs/{run_id}/logs", headers=admin_headers).text
    assert f"project={REDACTED}" in text and "project=absent" not in text, text[-2000:]


def test_no_read_shows_a_secret_value(
    client: Client,
    admin_headers: H,
    viewer_headers: H,
    container: Container,
    tmp_path: Path,
    hook: Receiver,
) -> None:
    project = _project(client, admin_headers, image="ghcr.io/acme/analytics:1.4")
    job = _job(client, admin_headers, project["id"], hook)
    pid, jid = project["id"], job["id"]
    # A second version that changes one secret and one plain field.
    response = client.put(
        f"/api/v1/projects/{pid}/jobs/{jid}",
        json={"webhook_headers": {"Authorization": HEADER + "-v2"}, "description": "v2"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    # A run with a notification, recorded the way the executors do (no dbt needed here).
    stored_project = container.store.projects.get_any(pid)
    stored_job = container.store.jobs.get_any(jid)
    assert stored_project is not None and stored_job is not None
    run = make_run(container, stored_project, stored_job)
    finish(container, run, "failed", exit_code=1, log=f"connecting with {JOB_ENV}\n")
    hook.wait_for(1)

    base = f"/api/v1/projects/{pid}"
    for headers in (admin_headers, viewer_headers):
        reads = {
            "project": client.get(base, headers=headers),
            "projects": client.get("/api/v1/projects", headers=headers),
            "job": client.get(f"{base}/jobs/{jid}", headers=headers),
            "jobs": client.get(f"{base}/jobs", headers=headers),
            "versions": client.get(f"{base}/jobs/{jid}/versions", headers=headers),
            "manifest": client.get(f"{base}/jobs/{jid}/manifest", headers=headers),
            "manifest yaml": client.get(f"{base}/jobs/{jid}/manifest?format=yaml", headers=headers),
            "run config": client.get(f"/api/v1/runs/{run.id}/config", headers=headers),
            "run logs": client.get(f"/api/v1/runs/{run.id}/logs", headers=headers),
            "notifications": client.get(f"/api/v1/runs/{run.id}/notifications", headers=headers),
        }
        for where, answer in reads.items():
            assert answer.status_code == 200, (where, answer.text)
            _no_secret(answer.text, where)
            assert HEADER + "-v2" not in answer.text, where

        read_project = reads["project"].json()
        assert read_project["secret_environment"] == {"PROJECT_PASSWORD": REDACTED}
        assert read_project["environment"] == {"WAREHOUSE": "dev"}  # plain config stays
        assert read_project["slack_webhook_url_set"] is True
        assert "slack_webhook_url" not in read_project
        read_job = reads["job"].json()
        assert read_job["webhook_headers"] == {"Authorization": REDACTED, "X-Team": REDACTED}
        assert read_job["secret_environment"] == {"WAREHOUSE_PASSWORD": REDACTED}
        assert read_job["webhook_secret_set"] is True and "webhook_secret" not in read_job
        assert reads["jobs"].json()["jobs"] == [read_job]
        newest, first = reads["versions"].json()["versions"]
        assert newest["secrets_changed"] == ["webhook_headers.Authorization"]
        assert "webhook_secret" in first["secrets_changed"]
        assert newest["config"]["webhook_headers"]["Authorization"] == REDACTED
        config = reads["run config"].json()["config"]
        assert config["secret_environment"] == {"WAREHOUSE_PASSWORD": REDACTED}
        assert config["webhook_headers"]["Authorization"] == REDACTED
        [container_spec] = reads["manifest"].json()["spec"]["jobTemplate"]["spec"]["template"][
            "spec"
        ]["containers"]
        env = {e["name"]: e.get("value") for e in container_spec["env"]}
        assert env["WAREHOUSE_PASSWORD"] == REDACTED and env["PROJECT_PASSWORD"] == REDACTED
        assert env["WAREHOUSE"] == "dev"
        assert reads["run logs"].text == f"connecting with {REDACTED}\n"

    # The raw database, its WAL and shared memory: not one secret value in the clear.
    database = Path(container.settings.database)
    raw = b"".join(
        p.read_bytes()
        for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
        if p.exists()
    )
    assert len(raw) > 10_000
    for value in (*SECRETS, HEADER + "-v2"):
        assert value.encode() not in raw, value


def test_webhook_receiver_gets_the_real_header_and_a_valid_signature(
    client: Client, admin_headers: H, container: Container, hook: Receiver
) -> None:
    project = _project(client, admin_headers)
    job = _job(client, admin_headers, project["id"], hook)
    stored_project = container.store.projects.get_any(project["id"])
    stored_job = container.store.jobs.get_any(job["id"])
    assert stored_project is not None and stored_job is not None
    run = make_run(container, stored_project, stored_job)
    finish(container, run, "success", exit_code=0)
    [request] = hook.wait_for(1)
    assert request.headers["authorization"] == HEADER
    assert request.headers["x-team"] == "data"
    assert verify_signature(request.headers["x-runyard-signature"], request.body, HOOK)


def test_put_sets_keeps_and_removes_secrets(
    client: Client, admin_headers: H, viewer_headers: H, container: Container, hook: Receiver
) -> None:
    project = _project(client, admin_headers)
    job = _job(client, admin_headers, project["id"], hook)
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}"

    def stored() -> Any:
        found = container.store.jobs.get_any(job["id"])
        assert found is not None
        return found

    # Not mentioned: kept. What a read showed, sent back: kept.
    client.put(url, json={"description": "x"}, headers=admin_headers).raise_for_status()
    read = client.get(url, headers=admin_headers).json()
    client.put(
        url,
        json={
            "webhook_headers": read["webhook_headers"],
            "secret_environment": read["secret_environment"],
        },
        headers=admin_headers,
    ).raise_for_status()
    assert stored().webhook_headers == {"Authorization": HEADER, "X-Team": "data"}
    assert stored().secret_environment == {"WAREHOUSE_PASSWORD": JOB_ENV}
    assert stored().webhook_secret == HOOK
    # A value sets one entry, null removes one, the others stay.
    answer = client.put(
        url,
        json={
            "webhook_headers": {"X-Team": None, "X-Env": "prod"},
            "secret_environment": {"WAREHOUSE_PASSWORD": None, "API_KEY": "key-1234567"},
        },
        headers=admin_headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["webhook_headers"] == {"Authorization": REDACTED, "X-Env": REDACTED}
    assert answer.json()["secret_environment"] == {"API_KEY": REDACTED}
    assert stored().webhook_headers == {"Authorization": HEADER, "X-Env": "prod"}
    assert stored().secret_environment == {"API_KEY": "key-1234567"}
    version = stored().version

    # Refused, and nothing changes: the redaction as a new value, a name in both maps,
    # a bad name, and a viewer.
    for body, field in (
        ({"webhook_headers": {"X-New": REDACTED}}, "webhook_headers"),
        ({"secret_environment": {"NEW": REDACTED}}, "secret_environment"),
        ({"environment": {"API_KEY": "plain"}}, "secret_environment"),
        ({"secret_environment": {"1BAD": "x"}}, "secret_environment"),
    ):
        assert_problem(client.put(url, json=body, headers=admin_headers), 422, field=field)
    assert_problem(
        client.put(url, json={"secret_environment": {"A": "b"}}, headers=viewer_headers), 403
    )
    assert stored().version == version
    created = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "other", "command": "dbt build", "secret_environment": {"X": REDACTED}},
        headers=admin_headers,
    )
    assert_problem(created, 422, field="secret_environment")


def test_project_put_sets_keeps_and_removes_secret_environment(
    client: Client, admin_headers: H, container: Container
) -> None:
    project = _project(client, admin_headers)
    url = f"/api/v1/projects/{project['id']}"

    def stored() -> dict[str, str]:
        found = container.store.projects.get_any(project["id"])
        assert found is not None
        return found.secret_environment

    client.put(url, json={"description": "x"}, headers=admin_headers).raise_for_status()
    assert stored() == {"PROJECT_PASSWORD": PROJECT_ENV}
    answer = client.put(
        url,
        json={"secret_environment": {"PROJECT_PASSWORD": REDACTED, "OTHER": "other-1234"}},
        headers=admin_headers,
    )
    assert answer.status_code == 200, answer.text
    _no_secret(answer.text, "PUT /projects")
    assert answer.json()["secret_environment"] == {
        "OTHER": REDACTED,
        "PROJECT_PASSWORD": REDACTED,
    }
    assert stored() == {"PROJECT_PASSWORD": PROJECT_ENV, "OTHER": "other-1234"}
    client.put(
        url, json={"secret_environment": {"OTHER": None}}, headers=admin_headers
    ).raise_for_status()
    assert stored() == {"PROJECT_PASSWORD": PROJECT_ENV}
    assert_problem(
        client.put(url, json={"secret_environment": {"NEW": REDACTED}}, headers=admin_headers),
        422,
        field="secret_environment",
    )
