"""Operations endpoints: health, readiness, metrics, OpenAPI, request ids."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from app.container import Container
from tests.factories import saved_project
from tests.integration.api_helpers import assert_problem, make_job, make_project

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


def test_metrics_token_is_required_when_set(container_factory: Any) -> None:
    from app.main import create_app

    guarded = container_factory(metrics_token="scrape-secret-123")
    with TestClient(create_app(container=guarded)) as test_client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer scrape-secret-1234"},
            {"Authorization": "Basic scrape-secret-123"},
            {"Authorization": "Bearer"},
        ):
            refused = test_client.get("/metrics", headers=headers)
            body = assert_problem(refused, 401)
            assert "RUNYARD_METRICS_TOKEN" in body["detail"]
            assert "scrape-secret" not in refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        allowed = test_client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
        assert allowed.status_code == 200 and "runyard_http_requests_total" in allowed.text
        # Liveness stays open: probes carry no token.
        assert test_client.get("/health").status_code == 200


def test_metrics_are_open_without_a_token(client: TestClient[Any]) -> None:
    assert client.get("/metrics").status_code == 200


def test_run_metrics_carry_the_org(container: Container, client: TestClient[Any]) -> None:
    """Two orgs with a project and a job of the same name: their runs count apart, labelled
    with each org's slug (never an id of a run or a job)."""
    from tests.integration.test_notify_support import finish, make_run
    from tests.integration.test_notify_support import make_job as store_job

    runs = []
    for slug in ("acme", "globex"):
        org = container.store.orgs.get_or_create(slug)
        project = saved_project(container.store, org_id=org.id, org_slug=slug, name="shared")
        job = store_job(container, project, name="nightly")
        run = make_run(container, project, job)
        finish(container, run, "failed", exit_code=1)
        runs.append((run, job))
    text = client.get("/metrics").text
    for slug in ("acme", "globex"):
        assert (
            f'runyard_runs_finished_total{{job="nightly",org="{slug}",project="shared",'
            'status="failed"}' in text
        ), text
        assert f'runyard_runs_started_total{{job="nightly",org="{slug}",project="shared",' in text
        assert f'runyard_run_duration_seconds_count{{org="{slug}",project="shared",' in text
    for run, job in runs:
        assert run.id not in text and job.id not in text
