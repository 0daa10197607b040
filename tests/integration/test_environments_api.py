"""/api/v1/projects/{p}/environments over real HTTP: CRUD, unique names, the default every
project has (new ones and, by migration 12, existing ones), write-only credentials sealed at
rest, jobs belonging to an environment, and the API as it was for callers that never name
one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

import app.store.db as db_module
from app.container import Container
from app.ids import to_text, utcnow
from app.models import JobConfig, ProjectConfig
from app.store import Store
from app.store.migrations import MIGRATIONS
from tests.integration.api_helpers import assert_problem, make_job, make_project

H = dict[str, str]
PASSWORD = "hunter2-warehouse-password"


def envs_url(project_id: str) -> str:
    return f"/api/v1/projects/{project_id}/environments"


def create_env(client: TestClient[Any], headers: H, project_id: str, **fields: Any) -> Any:
    return client.post(envs_url(project_id), json=fields, headers=headers)


def listed(client: TestClient[Any], headers: H, project_id: str) -> list[dict[str, Any]]:
    response = client.get(envs_url(project_id), headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["environments"])
    result: list[dict[str, Any]] = body["environments"]
    return result


def test_a_new_project_has_a_default_environment_and_crud_works(
    client: TestClient[Any], admin_headers: H, viewer_headers: H
) -> None:
    project = make_project(client, admin_headers)
    (default,) = listed(client, admin_headers, project["id"])
    assert default["name"] == "default" and default["is_default"] is True
    assert default["image"] is None and default["target"] is None and default["environment"] == {}

    response = create_env(
        client,
        admin_headers,
        project["id"],
        name="prod",
        target="prod",
        environment={"WAREHOUSE": "PROD_WH"},
        secret_environment={"SNOWFLAKE_PASSWORD": PASSWORD},
    )
    assert response.status_code == 201, response.text
    prod = response.json()
    assert prod["is_default"] is False and prod["target"] == "prod"
    assert prod["secret_environment"] == {"SNOWFLAKE_PASSWORD": "********"}
    assert PASSWORD not in response.text
    url = f"{envs_url(project['id'])}/{prod['id']}"
    read = client.get(url, headers=viewer_headers)
    assert read.status_code == 200 and PASSWORD not in read.text
    assert [e["name"] for e in listed(client, viewer_headers, project["id"])] == [
        "default",
        "prod",
    ]

    # Names are unique per project (another project may reuse one).
    assert_problem(create_env(client, admin_headers, project["id"], name="prod"), 409)
    other = make_project(client, admin_headers, name="other")
    assert create_env(client, admin_headers, other["id"], name="prod").status_code == 201
    renamed = client.put(url, json={"name": "default"}, headers=admin_headers)
    assert_problem(renamed, 409)

    # PUT changes only what it names; "********" keeps a secret, null removes it.
    response = client.put(
        url,
        json={"target": "prod2", "secret_environment": {"SNOWFLAKE_PASSWORD": "********"}},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["environment"] == {"WAREHOUSE": "PROD_WH"}
    assert response.json()["target"] == "prod2"
    container: Container = client.app.state.container
    stored = container.store.environments.get(
        container.store.orgs.by_slug("acme").id,  # type: ignore[union-attr]
        project["id"],
        prod["id"],
    )
    assert stored is not None and stored.secret_environment == {"SNOWFLAKE_PASSWORD": PASSWORD}
    # Sealed at rest: the value is nowhere in the row.
    row = container.store.database.row("SELECT * FROM environments WHERE id = ?", (prod["id"],))
    assert row is not None and PASSWORD not in repr(row)
    response = client.put(
        url, json={"secret_environment": {"SNOWFLAKE_PASSWORD": None}}, headers=admin_headers
    )
    assert response.json()["secret_environment"] == {}

    # Viewers read only.
    assert_problem(create_env(client, viewer_headers, project["id"], name="qa"), 403)
    assert_problem(client.delete(url, headers=viewer_headers), 403)

    # The default cannot go; an unused environment can.
    assert_problem(
        client.delete(f"{envs_url(project['id'])}/{default['id']}", headers=admin_headers), 409
    )
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert_problem(client.get(url, headers=admin_headers), 404)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Prod"}, "name"),
        ({"name": "prod", "target": "--profiles-dir=/etc"}, "target"),
        ({"name": "prod", "target": "a b"}, "target"),
        ({"name": "prod", "gateway": "warehouse"}, "gateway"),  # dbt has no gateway
        ({"name": "prod", "path": "../other-org"}, "path"),
        ({"name": "prod", "environment": {"LD_PRELOAD": "/x.so"}}, "environment"),
        ({"name": "prod", "secret_environment": {"PATH": "/evil"}}, "secret_environment"),
        (
            {"name": "prod", "environment": {"A": "1"}, "secret_environment": {"A": "2"}},
            "secret_environment",
        ),
        ({"name": "prod", "secret_environment": {"A": "********"}}, "secret_environment"),
        # Secret references are for Kubernetes: this runyard runs local processes.
        (
            {"name": "prod", "secret_env": {"PW": {"secret": "warehouse", "key": "pw"}}},
            "secret_env",
        ),
    ],
)
def test_invalid_environments_are_422_and_change_nothing(
    client: TestClient[Any], admin_headers: H, fields: dict[str, Any], field: str
) -> None:
    project = make_project(client, admin_headers)
    assert_problem(create_env(client, admin_headers, project["id"], **fields), 422, field=field)
    assert len(listed(client, admin_headers, project["id"])) == 1


def test_jobs_belong_to_an_environment_and_keep_it_from_being_deleted(
    client: TestClient[Any], admin_headers: H, other_org_headers: H
) -> None:
    project = make_project(client, admin_headers)
    staging = create_env(client, admin_headers, project["id"], name="staging").json()
    job = make_job(client, admin_headers, project["id"], environment_id=staging["id"])
    assert job["environment_id"] == staging["id"]
    assert job["allow_environment_override"] is False
    # Listed jobs (rendered by SQL from the stored document) carry the field too.
    jobs = client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin_headers).json()
    assert jobs["jobs"][0]["environment_id"] == staging["id"]

    response = client.delete(f"{envs_url(project['id'])}/{staging['id']}", headers=admin_headers)
    body = assert_problem(response, 409)
    assert "nightly" in body["detail"]

    # Another project's environment (or another org's) is not one a job can name.
    other = make_project(client, admin_headers, name="other")
    foreign = create_env(client, admin_headers, other["id"], name="prod").json()
    response = client.put(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}",
        json={"environment_id": foreign["id"]},
        headers=admin_headers,
    )
    assert_problem(response, 422, field="environment_id")

    # Another org sees none of it.
    assert_problem(client.get(envs_url(project["id"]), headers=other_org_headers), 404)
    assert_problem(
        client.get(f"{envs_url(project['id'])}/{staging['id']}", headers=other_org_headers), 404
    )
    assert_problem(create_env(client, other_org_headers, project["id"], name="mine"), 404)

    # Moving the job away frees the environment.
    response = client.put(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}",
        json={"environment_id": None},
        headers=admin_headers,
    )
    assert response.status_code == 200 and response.json()["environment_id"] is None
    response = client.delete(f"{envs_url(project['id'])}/{staging['id']}", headers=admin_headers)
    assert response.status_code == 204
    # Deleting the project takes its environments with it.
    assert (
        client.delete(
            f"/api/v1/projects/{project['id']}?cascade=true", headers=admin_headers
        ).status_code
        == 204
    )
    container: Container = client.app.state.container
    assert container.store.environments.for_project(project["id"]) == []


def test_existing_calls_are_unchanged(client: TestClient[Any], admin_headers: H) -> None:
    """A client that never heard of environments creates, reads and updates projects and
    jobs with the same bodies and gets the same fields back (plus the new ones)."""
    project = make_project(client, admin_headers, environment={"A": "1"})
    job = make_job(client, admin_headers, project["id"])
    assert job["environment_id"] is None and job["allow_environment_override"] is False
    response = client.put(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}",
        json={"description": "x"},
        headers=admin_headers,
    )
    assert response.status_code == 200 and response.json()["environment_id"] is None
    response = client.put(
        f"/api/v1/projects/{project['id']}",
        json={"image": "ghcr.io/acme/a:2"},
        headers=admin_headers,
    )
    assert response.status_code == 200 and response.json()["image"] == "ghcr.io/acme/a:2"


def test_migration_gives_every_existing_project_a_default_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    monkeypatch.setattr(db_module, "MIGRATIONS", tuple(m for m in MIGRATIONS if m.version < 12))
    store = Store(path)
    store.migrate()
    now = to_text(utcnow())
    project = msgspec.json.encode(ProjectConfig(name="analytics", kind="dbt")).decode()
    job = msgspec.json.encode(JobConfig(name="nightly", command="dbt build")).decode()
    with store.database.write() as db:
        db.conn.execute("INSERT INTO orgs (id, slug, created_at) VALUES ('o1', 'acme', ?)", (now,))
        db.conn.execute(
            "INSERT INTO projects (id, org_id, name, kind, config, created_at, updated_at)"
            " VALUES ('p1', 'o1', 'analytics', 'dbt', ?, ?, ?)",
            (project, now, now),
        )
        # A job document from before environments: without their fields.
        db.conn.execute(
            "INSERT INTO jobs (id, org_id, project_id, name, config, created_at, updated_at)"
            " VALUES ('j1', 'o1', 'p1', 'nightly',"
            " json_remove(?, '$.environment_id', '$.allow_environment_override'), ?, ?)",
            (job, now, now),
        )
    monkeypatch.undo()
    store.migrate()
    default = store.environments.default("p1")
    assert default is not None and default.name == "default" and default.is_default
    assert default.org_id == "o1" and default.image is None and default.environment == {}
    total, jobs = store.jobs.list_json("p1")
    assert total == 1 and '"environment_id":null' in jobs
    assert '"allow_environment_override":false' in jobs
    store.close()
