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
    assert_problem(
        client.get("/api/v1/runs?cursor=zzz", headers=admin_headers), 400, field="cursor"
    )


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


# --- values that used to reach code that overflows or chokes on them (each was a 500) ------


def _job(client: TestClient[Any], headers: H) -> tuple[str, str]:
    project = make_project(client, headers)
    job = make_job(client, headers, project["id"], schedule=None)
    return project["id"], job["id"]


@pytest.mark.parametrize(
    "cursor", ["99999999999999999999999", "-1", "9223372036854775808", "1", "%FF", "A" * 44]
)
def test_cursors_that_are_not_ours_are_400(
    client: TestClient[Any], admin_headers: H, cursor: str
) -> None:
    project_id, job_id = _job(client, admin_headers)
    for url in ("/api/v1/runs", f"/api/v1/projects/{project_id}/jobs/{job_id}/runs"):
        response = client.get(url, params={"cursor": cursor}, headers=admin_headers)
        assert_problem(response, 400, field="cursor")
        _no_leak(response.text)


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+23:59"]
)
def test_times_outside_the_utc_range_are_422(
    client: TestClient[Any], admin_headers: H, since: str
) -> None:
    assert_problem(
        client.get("/api/v1/runs", params={"since": since}, headers=admin_headers),
        422,
        field="since",
    )
    # On a run's logs too (the run does not need to exist: the parameter is checked first).
    response = client.get("/api/v1/runs/run_x/logs", params={"since": since}, headers=admin_headers)
    assert_problem(response, 422, field="since")


def test_times_at_the_edges_of_the_range_are_fine(
    client: TestClient[Any], admin_headers: H
) -> None:
    for since in ("0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00", "9999-12-31T23:59:59Z"):
        response = client.get("/api/v1/runs", params={"since": since}, headers=admin_headers)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "window", ["²d", "٣d", "３d", "7", "d", "0d", "10000h", "7w", "-1d", " 7d"]
)
def test_bad_windows_are_422(client: TestClient[Any], admin_headers: H, window: str) -> None:
    project_id, job_id = _job(client, admin_headers)
    response = client.get(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/status",
        params={"window": window},
        headers=admin_headers,
    )
    assert_problem(response, 422, field="window")


def test_good_windows(client: TestClient[Any], admin_headers: H) -> None:
    project_id, job_id = _job(client, admin_headers)
    for window in ("1h", "24h", "7d", "9999d"):
        response = client.get(
            f"/api/v1/projects/{project_id}/jobs/{job_id}/status",
            params={"window": window},
            headers=admin_headers,
        )
        assert response.status_code == 200 and response.json()["stats"]["window"] == window


def _nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b'{"a":' * depth + leaf + b"}" * depth


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        _nested(10_000),
        b'{"name": "x", "kind": "dbt", "template_overrides": ' + _nested(10_000) + b"}",
        b'{"name": "x", "kind": "dbt", "template_overrides": ' + _nested(500) + b"}",
        b'{"name": "x", "kind": "dbt", "resources": ' + _nested(33) + b"}",
    ],
    ids=["list-10000", "object-10000", "field-10000", "field-500", "field-33"],
)
def test_deeply_nested_json_is_400(client: TestClient[Any], admin_headers: H, body: bytes) -> None:
    response = client.post(
        "/api/v1/projects",
        content=body,
        headers=admin_headers | {"content-type": "application/json"},
    )
    problem = assert_problem(response, 400)
    assert "levels deep" in problem["detail"]
    _no_leak(response.text)
    assert client.get("/api/v1/projects", headers=admin_headers).json()["total"] == 0


def test_nesting_within_the_limit_is_decoded(client: TestClient[Any], admin_headers: H) -> None:
    # 32 levels in all (the body is the first): decoded, then judged by the usual rules.
    body = b'{"name": "x", "kind": "dbt", "resources": ' + _nested(31, b'"v"') + b"}"
    response = client.post(
        "/api/v1/projects",
        content=body,
        headers=admin_headers | {"content-type": "application/json"},
    )
    assert response.status_code != 400 or "levels deep" not in response.text
    assert response.status_code < 500, response.text


def test_invalid_utf8_body_is_400(client: TestClient[Any], admin_headers: H) -> None:
    response = client.post(
        "/api/v1/projects",
        content=b'{"name": "' + bytes([0xFF, 0xFE]) + b'", "kind": "dbt"}',
        headers=admin_headers | {"content-type": "application/json"},
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1", "cannot be parsed"),
        ("http://[::1/hook", "cannot be parsed"),
        ("https://" + "a" * 64 + ".example.com/hook", "label"),
        ("https://hooks..example.com/hook", "label"),
        ("https://hooks.example.com/" + "p" * 500_000, "2048"),
        ("http://[64:ff9b::7f00:1]/hook", "embeds"),
        ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "embeds"),
        ("http://[2002:7f00:1::]/hook", "embeds"),
        ("http://[::127.0.0.1]/hook", "embeds"),
        ("http://[::ffff:0:a00:1]/hook", "embeds"),
    ],
)
def test_bad_webhook_urls_are_422_and_change_nothing(
    client: TestClient[Any], admin_headers: H, url: str, reason: str
) -> None:
    project = make_project(client, admin_headers)
    response = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "hook", "command": "dbt build", "webhook_url": url, "webhook_enabled": True},
        headers=admin_headers,
    )
    problem = assert_problem(response, 422, field="webhook_url")
    assert reason in problem["detail"]
    assert len(response.content) < 20_000  # the 500 KB URL is not echoed back
    listed = client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin_headers).json()
    assert listed["total"] == 0


def test_cursors_page_through_and_belong_to_one_org(
    client: TestClient[Any], container: Any, admin_headers: H, other_org_headers: H
) -> None:
    from tests.factories import run_record

    project_id, job_id = _job(client, admin_headers)
    acme = container.store.orgs.by_slug("acme")
    globex = container.store.orgs.by_slug("globex")
    made = []
    for _ in range(5):
        # Runs of another org between ours: the sequence is shared, the cursors must not say so.
        assert container.store.runs.insert(run_record(org_id=globex.id, job_id="job_other"))
        mine = run_record(org_id=acme.id, project_id=project_id, job_id=job_id, status="success")
        assert container.store.runs.insert(mine)
        made.append(mine.id)
    seen, cursors, cursor = [], [], None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/runs", params=params, headers=admin_headers).json()
        seen += [run["id"] for run in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
    assert seen == list(reversed(made))
    for opaque in cursors:
        assert not opaque.isdigit() and len(opaque) == 44
        refused = client.get("/api/v1/runs", params={"cursor": opaque}, headers=other_org_headers)
        assert_problem(refused, 400, field="cursor")
