"""The access matrix, over every /api/v1 route the app has (found from the router, so a
new endpoint is covered without editing this file):

- no token or a bad one: 401;
- another org's admin on anything of acme's: 404, exactly as if it did not exist;
- a viewer writing: 403, and nothing changes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import TestClient

from app.api.auth import OWN_CREDENTIAL
from app.container import Container
from app.ids import utcnow
from tests.factories import run_record
from tests.integration.api_helpers import assert_problem, make_job, make_project

H = dict[str, str]
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(client: TestClient[Any]) -> list[tuple[str, str]]:
    found = []
    for route in client.app.routes:
        # JSON Schemas for editors are public, like /schema (app/api/schemas.py).
        if not route.path.startswith("/api/v1") or route.path.startswith("/api/v1/schemas/"):
            continue
        methods: set[str] = set(getattr(route, "methods", set()))
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            # A pod uploads its artifacts and fetches its dbt state with its run's own
            # credential, not an API token: those routes' refusals (forged, expired, another
            # run's) are in test_artifacts_k8s.py, test_artifacts_api.py and test_k8s_state.py.
            if any(
                handler.opt.get(OWN_CREDENTIAL) and method in handler.http_methods
                for handler in getattr(route, "route_handlers", [])
            ):
                continue
            found.append((method, route.path))
    return found


def _seed(client: TestClient[Any], container: Container, headers: H) -> dict[str, str]:
    project = make_project(client, headers)
    job = make_job(client, headers, project["id"])
    org = container.store.orgs.by_slug("acme")
    assert org is not None
    now = utcnow()
    run = run_record(
        org_id=org.id,
        project_id=project["id"],
        job_id=job["id"],
        job_name="analytics-nightly-1",
        status="success",
        start_time=now,
        end_time=now,
        duration_seconds=0.0,
        created_at=now,
    )
    container.store.runs.insert(run)
    return {
        "project_id": project["id"],
        "job_id": job["id"],
        "run_id": run.id,
        "name": "analytics-nightly-1",
        "job_name": "analytics-nightly-1",
        "notification_id": "ntf_unknown",
        "environment_id": client.get(
            f"/api/v1/projects/{project['id']}/environments", headers=headers
        ).json()["environments"][0]["id"],
    }


def _fill(path: str, ids: dict[str, str]) -> str:
    return PARAM.sub(lambda m: ids.get(m.group(1), "x"), path)


ids_placeholder = "job_from_seed"


def _body(method: str, path: str) -> dict[str, Any]:
    """A body that is valid for the route, so the answer is about access, not the body."""
    if method == "POST" and path.endswith("/jobs"):
        return {"name": "other", "command": "dbt run", "schedule": None}
    if method == "POST" and path.endswith("/environments"):
        return {"name": "other"}
    if method == "POST" and path.endswith("/projects"):
        return {"name": "other", "kind": "dbt"}
    if method == "PUT":
        return {"description": "changed"}
    if path.endswith(("/batch-enable", "/batch-disable")):
        return {"job_ids": [ids_placeholder]}
    return {}


def _has_params(path: str) -> bool:
    return bool(PARAM.search(path))


def test_routes_are_discovered(client: TestClient[Any]) -> None:
    routes = _routes(client)
    assert ("GET", "/api/v1/projects") in routes
    assert len(routes) >= 15


def test_missing_or_bad_token_is_401(client: TestClient[Any], admin_headers: H) -> None:
    for method, path in _routes(client):
        url = _fill(path, {})
        for headers in (
            {},
            {"Authorization": "Bearer ryd_not-a-real-token-at-all-0000"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            response = client.request(method, url, headers=headers, json={})
            assert_problem(response, 401)


def test_other_org_sees_nothing(
    client: TestClient[Any], container: Container, admin_headers: H, other_org_headers: H
) -> None:
    ids = _seed(client, container, admin_headers)
    for method, path in _routes(client):
        if not _has_params(path):
            continue
        response = client.request(
            method, _fill(path, ids), headers=other_org_headers, json=_body(method, path)
        )
        if response.status_code == 409 and "kubernetes-only" in response.text:
            # The live Kubernetes jobs API answers the same to everyone on the local executor.
            assert assert_problem(response, 409)["type"].endswith("kubernetes-only")
            continue
        assert response.status_code == 404, (method, path, response.text)
        assert_problem(response, 404)
    # Lists show only the caller's own things.
    assert client.get("/api/v1/projects", headers=other_org_headers).json()["total"] == 0
    assert client.get("/api/v1/runs", headers=other_org_headers).json()["total"] == 0
    # And acme's things are all still there.
    assert (
        client.get(
            f"/api/v1/projects/{ids['project_id']}/jobs/{ids['job_id']}", headers=admin_headers
        ).status_code
        == 200
    )


def test_viewer_cannot_write(
    client: TestClient[Any], container: Container, admin_headers: H, viewer_headers: H
) -> None:
    ids = _seed(client, container, admin_headers)
    before = client.get(f"/api/v1/projects/{ids['project_id']}/jobs", headers=admin_headers).json()
    writes = [(m, p) for m, p in _routes(client) if m in WRITE_METHODS]
    assert writes
    for method, path in writes:
        response = client.request(
            method, _fill(path, ids), headers=viewer_headers, json=_body(method, path)
        )
        assert response.status_code == 403, (method, path, response.text)
        assert "viewer" in assert_problem(response, 403)["detail"]
    after = client.get(f"/api/v1/projects/{ids['project_id']}/jobs", headers=admin_headers).json()
    assert after == before


@pytest.mark.parametrize("path", ["/api/v1/projects", "/api/v1/runs"])
def test_viewer_can_read(client: TestClient[Any], viewer_headers: H, path: str) -> None:
    assert client.get(path, headers=viewer_headers).status_code == 200
