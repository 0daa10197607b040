"""Hostile and sloppy input: every answer is a clear 4xx problem, nothing changes, and no
stack trace, SQL or secret appears in a body or a log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.integration.api_helpers import assert_problem, make_job, make_project

H = dict[str, str]
SECRET = "whsec-do-not-leak-0123456789"


def _no_leak(text: str) -> None:
    lowered = text.lower()
    for marker in (
        "traceback",
        "sqlite",
        "select ",
        "insert into",
        'file "',
        SECRET.lower(),
        "ryd_",
    ):
        assert marker not in lowered, (marker, text[:500])


def test_malformed_json(client: TestClient[Any], admin_headers: H) -> None:
    response = client.post(
        "/api/v1/projects",
        content=b'{"name": "x", "kind": ',
        headers=admin_headers | {"content-type": "application/json"},
    )
    body = assert_problem(response, 400)
    assert "JSON" in body["detail"]
    _no_leak(response.text)


@pytest.mark.parametrize(
    "payload",
    [
        {"name": 5, "kind": "dbt"},
        {"name": "x", "kind": "dbt", "environment": ["not", "a", "map"]},
        {"name": "x", "kind": "dbt", "unknown_field": 1},
        {"name": "x", "kind": "dbt", "environment": {"A": 1}},
        [1, 2, 3],
        "just a string",
        None,
    ],
)
def test_wrong_types_and_unknown_fields(
    client: TestClient[Any], admin_headers: H, payload: Any
) -> None:
    response = client.post("/api/v1/projects", json=payload, headers=admin_headers)
    assert response.status_code in (400, 422), response.text
    assert_problem(response, response.status_code)
    _no_leak(response.text)
    assert client.get("/api/v1/projects", headers=admin_headers).json()["total"] == 0


def test_unknown_job_field_named(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    response = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "x", "command": "dbt run", "schedule": None, "shedule": "0 1 * * *"},
        headers=admin_headers,
    )
    body = assert_problem(response, 422)
    assert "shedule" in body["detail"]


def test_one_megabyte_body(client: TestClient[Any], admin_headers: H) -> None:
    big = "x" * (1024 * 1024)
    response = client.post(
        "/api/v1/projects",
        json={"name": "x", "kind": "dbt", "description": big},
        headers=admin_headers,
    )
    assert response.status_code in (413, 422), response.text
    assert_problem(response, response.status_code)
    _no_leak(response.text)
    assert client.get("/api/v1/projects", headers=admin_headers).json()["total"] == 0


def test_just_under_the_limit_but_too_long_description(
    client: TestClient[Any], admin_headers: H
) -> None:
    response = client.post(
        "/api/v1/projects",
        json={"name": "x", "kind": "dbt", "description": "d" * 5000},
        headers=admin_headers,
    )
    assert_problem(response, 422, field="description")


@pytest.mark.parametrize("name", ["анализ", "data😀", "ｄｂｔ", "a" * 64, "", "-lead", "trail-"])
def test_unicode_and_bad_names(client: TestClient[Any], admin_headers: H, name: str) -> None:
    response = client.post(
        "/api/v1/projects", json={"name": name, "kind": "dbt"}, headers=admin_headers
    )
    assert_problem(response, 422, field="name")
    _no_leak(response.text)


def test_unicode_description_round_trips(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers, description="Données — 数据 ✓")
    assert project["description"] == "Données — 数据 ✓"


def test_unknown_route_and_method(client: TestClient[Any], admin_headers: H) -> None:
    assert_problem(client.get("/api/v1/nothing-here", headers=admin_headers), 404)
    assert_problem(client.patch("/api/v1/projects", headers=admin_headers, json={}), 405)


def test_bad_query_parameters(client: TestClient[Any], admin_headers: H) -> None:
    assert_problem(client.get("/api/v1/runs?limit=abc", headers=admin_headers), 422)
    assert_problem(client.get("/api/v1/runs?limit=100000", headers=admin_headers), 422)
    assert_problem(
        client.get("/api/v1/runs?status=great", headers=admin_headers), 422, field="status"
    )
    assert_problem(
        client.get("/api/v1/runs?since=yesterday", headers=admin_headers), 422, field="since"
    )
    assert_problem(client.get("/api/v1/runs?cursor=zzz", headers=admin_headers), 422)


def test_secrets_never_in_logs_or_bodies(
    client: TestClient[Any], admin_headers: H, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    project = make_project(client, admin_headers)
    job = make_job(
        client,
        admin_headers,
        project["id"],
        webhook_secret=SECRET,
        environment={"API_KEY": "envsecret-value"},
    )
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}"
    responses = [
        client.put(url, json={"webhook_secret": SECRET, "schedule": "bad"}, headers=admin_headers),
        client.put(url, json={"webhook_secret": 5}, headers=admin_headers),
        client.get(url, headers=admin_headers),
    ]
    for response in responses:
        _no_leak(response.text)
    token = admin_headers["Authorization"].split()[1]
    for record in caplog.records:
        line = record.getMessage() + str(vars(record))
        assert SECRET not in line and token not in line and "envsecret-value" not in line


def test_rate_limit_answers_429_with_retry_after(container_factory: Any) -> None:
    from app.main import create_app
    from app.settings import RateLimit

    limited = container_factory(rate_limit=RateLimit(5, 60))
    token, _ = limited.tokens.create("acme", "viewer")
    other, _ = limited.tokens.create("acme", "viewer")
    with TestClient(create_app(container=limited)) as test_client:
        headers = {"Authorization": f"Bearer {token}"}
        statuses = [
            test_client.get("/api/v1/projects", headers=headers).status_code for _ in range(6)
        ]
        assert statuses == [200] * 5 + [429]
        refused = test_client.get("/api/v1/projects", headers=headers)
        assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert (
            test_client.get(
                "/api/v1/projects", headers={"Authorization": f"Bearer {other}"}
            ).status_code
            == 200
        )
        assert test_client.get("/health").status_code == 200  # outside /api/v1: no budget
