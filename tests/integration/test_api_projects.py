"""Projects API over HTTP: create, read, list, partial update, delete rules."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.integration.api_helpers import assert_problem, make_job, make_project

H = dict[str, str]


def test_create_read_list(client: TestClient[Any], admin_headers: H) -> None:
    created = make_project(
        client,
        admin_headers,
        environment={"WAREHOUSE": "prod"},
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
        service_account="dbt-runner",
        image="ghcr.io/acme/dbt:1",
    )
    assert created["id"].startswith("proj_")
    assert created["deployed"] is False
    assert created["created_at"].endswith("Z")
    got = client.get(f"/api/v1/projects/{created['id']}", headers=admin_headers).json()
    assert got == created
    listing = client.get("/api/v1/projects", headers=admin_headers).json()
    assert listing["total"] == 1 and listing["projects"][0]["id"] == created["id"]


def test_name_unique_per_org(
    client: TestClient[Any], admin_headers: H, other_org_headers: H
) -> None:
    make_project(client, admin_headers)
    response = client.post(
        "/api/v1/projects", json={"name": "analytics", "kind": "dbt"}, headers=admin_headers
    )
    body = assert_problem(response, 409)
    assert "analytics" in body["detail"]
    make_project(client, other_org_headers)  # another org may use the same name


def test_put_changes_only_supplied_fields(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers, environment={"A": "1"}, image="img:1")
    response = client.put(
        f"/api/v1/projects/{project['id']}", json={"description": "new"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["description"] == "new"
    for key in ("name", "kind", "environment", "image", "created_at", "id"):
        assert updated[key] == project[key]
    assert updated["updated_at"] >= project["updated_at"]


def test_put_can_clear_nullable_field(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers, image="img:1")
    updated = client.put(
        f"/api/v1/projects/{project['id']}", json={"image": None}, headers=admin_headers
    ).json()
    assert updated["image"] is None


def test_invalid_fields_are_422_and_change_nothing(
    client: TestClient[Any], admin_headers: H
) -> None:
    project = make_project(client, admin_headers)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "Has Spaces"}, "name"),
        ({"kind": "airflow"}, "kind"),
        ({"environment": {"DBT_PROFILES_DIR": "/etc"}}, "environment"),
        ({"environment": {"1BAD": "x"}}, "environment"),
        ({"resources": {"limits": {"cpu": "lots"}}}, "resources"),
        ({"slack_channel": "not a channel"}, "slack_channel"),
        ({"template_overrides": {"host_path": "/"}}, "template_overrides"),
        (
            {"template_overrides": {"volumes": [{"name": "x", "hostPath": {"path": "/"}}]}},
            "template_overrides",
        ),
    ]
    for change, field in cases:
        response = client.put(
            f"/api/v1/projects/{project['id']}", json=change, headers=admin_headers
        )
        assert_problem(response, 422, field=field)
    after = client.get(f"/api/v1/projects/{project['id']}", headers=admin_headers).json()
    assert after == project


def test_create_requires_name_and_kind(client: TestClient[Any], admin_headers: H) -> None:
    response = client.post("/api/v1/projects", json={"name": "x"}, headers=admin_headers)
    body = assert_problem(response, 422)
    assert "kind" in body["detail"]


def test_delete_with_jobs_needs_cascade(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    job = make_job(client, admin_headers, project["id"])
    response = client.delete(f"/api/v1/projects/{project['id']}", headers=admin_headers)
    body = assert_problem(response, 409)
    assert "cascade=true" in body["detail"]
    assert (
        client.get(
            f"/api/v1/projects/{project['id']}/jobs/{job['id']}", headers=admin_headers
        ).status_code
        == 200
    )
    response = client.delete(
        f"/api/v1/projects/{project['id']}?cascade=true", headers=admin_headers
    )
    assert response.status_code == 204
    assert_problem(client.get(f"/api/v1/projects/{project['id']}", headers=admin_headers), 404)


def test_delete_empty_project(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    assert (
        client.delete(f"/api/v1/projects/{project['id']}", headers=admin_headers).status_code == 204
    )


def test_slack_webhook_url_is_write_only(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(
        client,
        admin_headers,
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/secretvalue",
    )
    assert project["slack_webhook_url_set"] is True
    assert "secretvalue" not in str(project)
    got = client.get(f"/api/v1/projects/{project['id']}", headers=admin_headers)
    assert "secretvalue" not in got.text
