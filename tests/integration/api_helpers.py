"""Small builders for API tests."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

PROBLEM = "application/problem+json"


def make_project(client: TestClient[Any], headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "analytics", "kind": "dbt", "description": "the warehouse"} | fields
    response = client.post("/api/v1/projects", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def make_job(
    client: TestClient[Any], headers: dict[str, str], project_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"name": "nightly", "command": "dbt build", "schedule": "0 2 * * *"} | fields
    response = client.post(f"/api/v1/projects/{project_id}/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: Any, status: int, *, field: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and an error on ``field``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://runyard.dev/problems/")
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text and "sqlite" not in response.text.lower()
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert any(f == field or f.startswith((field + ".", field + "[")) for f in fields), body
    return body
