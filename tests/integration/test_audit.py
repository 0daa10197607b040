"""The audit trail over real HTTP (uvicorn): a PUT, a deploy, a trigger and a cancel are
recorded with the token's name and id, the request id, the client's address and a field diff
whose secret values are redacted; admins of the org read it newest first with cursors;
viewers and other orgs see none of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.container import Container
from app.models import REDACTED
from tests.conftest import LiveServer
from tests.integration.api_helpers import assert_problem

pytestmark = pytest.mark.slow


def _client(server: LiveServer, org: str, role: str, name: str) -> httpx.Client:
    token, _ = server.container.tokens.create(org, role, name)
    return httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )


@pytest.fixture
def changes(live_server: LiveServer, dbt_project_dir: Path) -> Iterator[dict[str, Any]]:
    """Changes made by the admin token 'deployer': a project and a job with secrets, a PUT
    rotating a secret, a deploy, a trigger and a cancel, each with its own request id."""
    http = _client(live_server, "acme", "admin", "deployer")
    project = http.post(
        "/api/v1/projects",
        json={
            "name": "analytics",
            "kind": "dbt",
            "path": str(dbt_project_dir),
            "secret_environment": {"DB_PASSWORD": "pw-original-1234"},
        },
    ).json()
    base = f"/api/v1/projects/{project['id']}"
    job = http.post(
        f"{base}/jobs",
        json={
            "name": "nightly",
            "command": "dbt build",
            "schedule": "0 2 * * *",
            "secret_environment": {"API_KEY": "key-original-1234"},
        },
    ).json()
    put = http.put(
        f"{base}/jobs/{job['id']}",
        json={
            "schedule": "0 3 * * *",
            "command": "dbt run",
            "secret_environment": {"API_KEY": "key-rotated-5678"},
        },
        headers={"X-Request-ID": "req-put-1"},
    )
    assert put.status_code == 200, put.text
    deploy = http.post(f"{base}/deploy", headers={"X-Request-ID": "req-deploy-1"})
    assert deploy.status_code == 200, deploy.text
    trigger = http.post(f"{base}/jobs/{job['id']}/trigger", headers={"X-Request-ID": "req-trig-1"})
    assert trigger.status_code == 201, trigger.text
    run_id = trigger.json()["job_run_id"]
    cancel = http.post(f"/api/v1/runs/{run_id}/cancel")
    assert cancel.status_code == 200, cancel.text
    yield {"http": http, "project": project, "job": job, "run_id": run_id}
    http.close()


def _events(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/api/v1/audit", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_changes_are_recorded_with_who_when_where_and_what(
    changes: dict[str, Any], live_server: LiveServer
) -> None:
    http, job, project = changes["http"], changes["job"], changes["project"]
    response = http.get("/api/v1/audit")
    assert "original-1234" not in response.text and "rotated-5678" not in response.text
    events = response.json()["items"]
    by_action = {e["action"]: e for e in events}
    # Newest first; the fixture's token creations were made outside a request ("system").
    assert [e["action"] for e in events if e["actor_name"] == "deployer"] == [
        "run.cancel",
        "run.trigger",
        "project.deploy",
        "job.update",
        "job.create",
        "project.create",
    ]
    token = next(
        t for t in live_server.container.tokens.list_tokens("acme") if t.name == "deployer"
    )
    update = by_action["job.update"]
    assert (update["actor_name"], update["actor_token_id"]) == ("deployer", token.id)
    assert update["request_id"] == "req-put-1"
    assert update["source_address"] == "127.0.0.1"
    assert (update["object_type"], update["object_id"]) == ("job", job["id"])
    assert update["object_name"] == "nightly" and update["project_id"] == project["id"]
    assert update["diff"]["schedule"] == ["0 2 * * *", "0 3 * * *"]
    assert update["diff"]["command"] == ["dbt build", "dbt run"]
    assert update["diff"]["secret_environment.API_KEY"] == [REDACTED, REDACTED]
    created = by_action["project.create"]["diff"]
    assert created["secret_environment.DB_PASSWORD"] == [None, REDACTED]
    assert created["name"] == [None, "analytics"]
    deploy = by_action["project.deploy"]
    assert deploy["request_id"] == "req-deploy-1" and deploy["diff"] == {"deployed": [False, True]}
    trigger = by_action["run.trigger"]
    assert trigger["request_id"] == "req-trig-1"
    assert (trigger["object_type"], trigger["object_id"]) == ("run", changes["run_id"])
    assert by_action["run.cancel"]["diff"]["status"][1] == "cancelled"
    # A request id the server made is recorded too, and it is the one the response gave.
    again = http.put(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}", json={"description": "nightly"}
    )
    latest = _events(http, limit=1)[0]
    assert latest["request_id"] == again.headers["x-request-id"]
    assert latest["diff"] == {"description": ["", "nightly"]}


def test_a_refused_change_records_nothing(changes: dict[str, Any]) -> None:
    http, job, project = changes["http"], changes["job"], changes["project"]
    before = _events(http, limit=200)
    bad = http.put(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}", json={"schedule": "every day"}
    )
    assert_problem(bad, 422)
    assert _events(http, limit=200) == before


def test_filters_and_cursors(changes: dict[str, Any]) -> None:
    http, job = changes["http"], changes["job"]
    everything = _events(http, limit=200)
    assert [e["action"] for e in _events(http, object=job["id"])] == ["job.update", "job.create"]
    assert {e["actor_name"] for e in _events(http, actor="deployer")} == {"deployer"}
    assert _events(http, since="1h") == everything
    assert _events(http, since="2000-01-01T00:00:00Z") == everything
    assert _events(http, since="2999-01-01T00:00:00Z") == []
    assert_problem(http.get("/api/v1/audit", params={"since": "yesterday"}), 422)
    # Pages of two: every event once, in the same order.
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = http.get("/api/v1/audit", params=params).json()
        paged += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in paged] == [e["id"] for e in everything]
    assert len(everything) >= 7


def test_viewers_and_other_orgs_see_none_of_it(
    changes: dict[str, Any], live_server: LiveServer
) -> None:
    http = changes["http"]
    first_page = http.get("/api/v1/audit", params={"limit": 2}).json()
    viewer = _client(live_server, "acme", "viewer", "dashboard")
    refused = assert_problem(viewer.get("/api/v1/audit"), 403)
    assert "The audit trail is for org admins" in refused["detail"]
    other = _client(live_server, "globex", "admin", "globex-admin")
    theirs = _events(other, limit=200)
    acme_ids = {e["id"] for e in _events(http, limit=200)}
    assert theirs and not acme_ids & {e["id"] for e in theirs}
    assert {e["action"] for e in theirs} == {"token.create"}  # their own token only
    assert _events(other, object=changes["job"]["id"]) == []
    # A cursor issued to acme means nothing to globex.
    stolen = other.get("/api/v1/audit", params={"cursor": first_page["next_cursor"]})
    assert_problem(stolen, 400)
    viewer.close()
    other.close()


def test_a_project_scoped_admin_reads_its_projects_entries_only(
    changes: dict[str, Any], live_server: LiveServer
) -> None:
    container: Container = live_server.container
    http = changes["http"]
    other = http.post("/api/v1/projects", json={"name": "finance", "kind": "dbt"}).json()
    token, _ = container.tokens.create("acme", "admin", "ci", project="analytics")
    scoped = httpx.Client(
        base_url=live_server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )
    seen = _events(scoped, limit=200)
    assert seen and {e["project_id"] for e in seen} == {changes["project"]["id"]}
    assert other["id"] not in {e["object_id"] for e in seen}
    scoped.close()


def test_the_cli_shows_the_trail(
    changes: dict[str, Any], live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    token, _ = live_server.container.tokens.create("acme", "admin", "auditor")
    where = ["--url", live_server.url, "--token", token]
    assert main(["audit", *where, "--actor", "deployer", "--object", "job"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("deployer", "job.update", "nightly"),
        ("deployer", "job.create", "nightly"),
    ]
    assert rows[0][4:6] == ["127.0.0.1", "req-put-1"]
    assert 'schedule: "0 2 * * *" -> "0 3 * * *"' in rows[0][6]
    assert main(["audit", *where, "--limit", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["items"]) == 1
    assert "more: runyard audit --cursor" not in captured.out
    assert main(["audit", *where, "--limit", "1"]) == 0
    assert "more: runyard audit --cursor " in capsys.readouterr().err
    viewer, _ = live_server.container.tokens.create("acme", "viewer", "v")
    assert main(["audit", "--url", live_server.url, "--token", viewer]) == 3
    assert "admin" in capsys.readouterr().err
