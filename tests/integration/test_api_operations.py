"""Operations endpoints: health, readiness, metrics, OpenAPI, request ids."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.integration.api_helpers import make_job, make_project

H = dict[str, str]


def test_health_and_ready(client: TestClient[Any]) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ok" and ready["database"] == "ok" and ready["schema_version"] >= 2


def test_openapi_document_lists_the_api(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v1/projects",
        "/api/v1/projects/{project_id}/jobs",
        "/api/v1/projects/{project_id}/jobs/{job_id}/trigger",
        "/api/v1/runs/{run_id}",
    ):
        assert path in paths, sorted(paths)
    assert "bearer" in document["components"]["securitySchemes"]


def test_metrics_exposes_http_and_run_series(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    make_job(client, admin_headers, project["id"])
    client.get(f"/api/v1/projects/{project['id']}", headers=admin_headers)
    client.get("/api/v1/projects/proj_missing", headers=admin_headers)
    text = client.get("/metrics").text
    assert "runyard_http_requests_total" in text
    # Routes are grouped by template: no ids in label values.
    assert 'path="/api/v1/projects/{project_id}"' in text
    assert project["id"] not in text and "proj_missing" not in text
    assert "# TYPE runyard_runs_active gauge" in text
    # The outbox gauge is read from the database at scrape time (a failing source is left out).
    assert "# TYPE runyard_notifications gauge" in text


def test_request_id_is_returned_and_generated(client: TestClient[Any]) -> None:
    given = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32
