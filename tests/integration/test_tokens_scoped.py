"""Scoped, named, expiring tokens over HTTP: an expired token is a 401 saying when it
expired; a project-scoped token sees its project only (others answer 404, word for word as
another org's); a trigger-only token may read and trigger but not change anything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from app.cli import main
from app.container import Container
from tests.factories import run_record
from tests.integration.api_helpers import assert_problem, make_job, make_project


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_expired_token_is_refused_saying_when(
    client: TestClient[Any], container: Container
) -> None:
    token, info = container.tokens.create("acme", "admin", "old-ci", expires_in="90d")
    assert client.get("/api/v1/projects", headers=_bearer(token)).status_code == 200
    with container.store.database.write() as db:
        db.conn.execute(
            "UPDATE tokens SET expires_at = ? WHERE id = ?",
            ("2026-01-31T08:00:00.000000Z", info.id),
        )
    expired, _ = container.tokens.create("acme", "admin", "older")
    with container.store.database.write() as db:
        db.conn.execute(
            "UPDATE tokens SET expires_at = '2025-03-01T00:00:00.000000Z' WHERE name = 'older'"
        )
    body = assert_problem(client.get("/api/v1/projects", headers=_bearer(expired)), 401)
    assert "expired on 2025-03-01 00:00 UTC" in body["detail"]
    assert "runyard tokens create" in body["detail"]
    # The first token was cached as valid: the cache keeps a token at most 2 s, and the
    # expiry it carries is checked on every hit.
    container.tokens._cache.clear()
    body = assert_problem(client.get("/api/v1/projects", headers=_bearer(token)), 401)
    assert "expired on 2026-01-31 08:00 UTC" in body["detail"]


@pytest.fixture
def two_projects(client: TestClient[Any], admin_headers: dict[str, str]) -> dict[str, Any]:
    mine = make_project(client, admin_headers, name="analytics")
    theirs = make_project(client, admin_headers, name="finance")
    return {
        "mine": mine,
        "theirs": theirs,
        "my_job": make_job(client, admin_headers, mine["id"], schedule=None),
        "their_job": make_job(client, admin_headers, theirs["id"], schedule=None),
    }


def test_a_project_scoped_token_sees_only_its_project(
    client: TestClient[Any],
    container: Container,
    two_projects: dict[str, Any],
    other_org_headers: dict[str, str],
) -> None:
    mine, theirs = two_projects["mine"], two_projects["theirs"]
    token, info = container.tokens.create(
        "acme", "admin", "ci", project="analytics", actions="trigger"
    )
    assert info.scope_project_id == mine["id"] and info.scope_actions == ["read", "trigger"]
    ci = _bearer(token)
    listed = client.get("/api/v1/projects", headers=ci).json()
    assert [p["name"] for p in listed["projects"]] == ["analytics"]
    assert client.get(f"/api/v1/projects/{mine['id']}/jobs", headers=ci).status_code == 200
    job = two_projects["their_job"]
    for method, path in [
        ("GET", f"/api/v1/projects/{theirs['id']}"),
        ("GET", f"/api/v1/projects/{theirs['id']}/jobs"),
        ("GET", f"/api/v1/projects/{theirs['id']}/jobs/{job['id']}"),
        ("GET", f"/api/v1/projects/{theirs['id']}/jobs/{job['id']}/runs"),
        ("POST", f"/api/v1/projects/{theirs['id']}/jobs/{job['id']}/trigger"),
    ]:
        scoped = assert_problem(client.request(method, path, headers=ci), 404)
        assert_problem(client.request(method, path, headers=other_org_headers), 404)
        # Nothing tells the project exists: the answer for a project that does not is the
        # same, word for word.
        nowhere = path.replace(theirs["id"], "proj_doesnotexist0000")
        absent = assert_problem(client.request(method, nowhere, headers=ci), 404)
        assert scoped["detail"] == absent["detail"].replace("proj_doesnotexist0000", theirs["id"])
    # Nothing org-wide, even with every action: creating a project is refused.
    admin_token, _ = container.tokens.create("acme", "admin", "project-admin", project=mine["id"])
    body = {"name": "x", "kind": "dbt"}
    made = client.post("/api/v1/projects", json=body, headers=_bearer(admin_token))
    assert "scoped to one project" in assert_problem(made, 403)["detail"]
    assert client.get("/api/v1/projects", headers=ci).json()["total"] == 1


def test_a_scoped_token_cannot_reach_another_projects_runs(
    client: TestClient[Any],
    container: Container,
    admin_headers: dict[str, str],
    two_projects: dict[str, Any],
) -> None:
    theirs, job = two_projects["theirs"], two_projects["their_job"]
    run = _stored_run(container, theirs["id"], job["id"])
    token, _ = container.tokens.create("acme", "admin", "ci", project="analytics")
    ci = _bearer(token)
    assert client.get(f"/api/v1/runs/{run}", headers=admin_headers).status_code == 200
    for method, path in [
        ("GET", f"/api/v1/runs/{run}"),
        ("GET", f"/api/v1/runs/{run}/logs"),
        ("GET", f"/api/v1/runs/{run}/config"),
        ("GET", f"/api/v1/runs/{run}/artifacts"),
        ("GET", f"/api/v1/runs/{run}/notifications"),
        ("POST", f"/api/v1/runs/{run}/cancel"),
        ("POST", f"/api/v1/runs/{run}/rerun"),
        ("POST", f"/api/v1/runs/{run}/retry"),
    ]:
        body = assert_problem(client.request(method, path, headers=ci), 404)
        assert body["detail"] == f"No run with id {run!r} in your organization.", path
    # Lists show the token's project only, whatever is asked for.
    assert client.get("/api/v1/runs", headers=admin_headers).json()["runs"]
    assert client.get("/api/v1/runs", headers=ci).json()["runs"] == []
    asked = client.get("/api/v1/runs", params={"project_id": theirs["id"]}, headers=ci)
    assert_problem(asked, 404)


def _stored_run(container: Container, project_id: str, job_id: str) -> str:
    """A failed run of the job, recorded directly: what matters here is who may see it."""
    project = container.store.projects.get_any(project_id)
    assert project is not None
    record = run_record(
        org_id=project.org_id, project_id=project_id, job_id=job_id, status="failed"
    )
    assert container.store.runs.insert(record)
    return record.id


def test_a_trigger_only_token_is_refused_on_changes(
    client: TestClient[Any],
    container: Container,
    two_projects: dict[str, Any],
) -> None:
    mine, job = two_projects["mine"], two_projects["my_job"]
    token, _ = container.tokens.create("acme", "admin", "ci", actions="trigger")
    ci = _bearer(token)
    base = f"/api/v1/projects/{mine['id']}"
    assert client.get(f"{base}/jobs/{job['id']}", headers=ci).status_code == 200
    for method, path, body in [
        ("PUT", f"{base}/jobs/{job['id']}", {"schedule": "0 3 * * *"}),
        ("DELETE", f"{base}/jobs/{job['id']}", None),
        ("POST", f"{base}/jobs", {"name": "more", "command": "dbt run"}),
        ("POST", f"{base}/deploy", None),
        ("PUT", base, {"description": "changed"}),
    ]:
        refused = assert_problem(client.request(method, path, json=body, headers=ci), 403)
        assert "may only: read, trigger" in refused["detail"], path
    assert_problem(client.get("/api/v1/audit", headers=ci), 403)
    after = client.get(f"{base}/jobs/{job['id']}", headers=ci).json()
    assert after["schedule"] is None and after["version"] == 1  # nothing changed


def test_a_viewer_cannot_be_given_write_actions(container: Container) -> None:
    from app.errors import Invalid

    with pytest.raises(Invalid, match="viewer token can only read"):
        container.tokens.create("acme", "viewer", "ci", actions="trigger")
    with pytest.raises(Invalid, match="no project with that name"):
        container.tokens.create("acme", "admin", "ci", project="nope")
    # Refused input changes nothing: not even the org it names is created.
    with pytest.raises(Invalid, match="no project with that name"):
        container.tokens.create("initech", "admin", "ci", project="analytics")
    assert container.store.orgs.by_slug("initech") is None


def test_cli_tokens_create_and_list(
    client: TestClient[Any],
    container: Container,
    two_projects: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNYARD_DATABASE", container.settings.database)
    args = ["tokens", "create", "--org", "acme", "--role", "admin", "--name", "ci"]
    scope = ["--project", "analytics", "--actions", "trigger", "--expires-in", "90d"]
    assert main([*args, *scope]) == 0
    made = capsys.readouterr()
    token = made.out.strip().splitlines()[-1]
    assert token.startswith("ryd_") and "project analytics; read,trigger" in made.err
    assert client.get("/api/v1/projects", headers=_bearer(token)).json()["total"] == 1
    assert main(["tokens", "list", "--org", "acme"]) == 0
    listed = capsys.readouterr().out
    row = next(line for line in listed.splitlines() if "\tci\t" in line)
    expires = (container.clock() + timedelta(days=90)).strftime("%Y-%m-%d")
    assert "project analytics; read,trigger" in row and expires in row
    assert main([*args, "--expires-in", "90 days"]) == 2
    assert "use a whole number and a unit" in capsys.readouterr().err
    assert main([*args, "--actions", "launch"]) == 2
    assert "'launch' unknown" in capsys.readouterr().err
    # The token's creation is in the audit trail, made by the local operator.
    org = container.store.orgs.by_slug("acme")
    assert org is not None
    entry = container.store.audit.page(org.id, before_seq=None, limit=1, actor="cli").events[0]
    assert (entry.action, entry.actor_name, entry.object_name) == ("token.create", "cli", "ci")
    assert entry.diff is not None and entry.diff["scope_actions"] == [None, ["read", "trigger"]]
    assert token not in str(entry.diff)


def test_scope_matrix_over_every_route(
    client: TestClient[Any], container: Container, admin_headers: dict[str, str]
) -> None:
    """Every /api/v1 route with a path parameter, found from the router (a new route is
    covered without editing this test), asked by an admin token of the same org scoped to
    another project: 404 as for a thing that does not exist, or 403 for what spans the org."""
    from app.api.auth import ORG_WIDE
    from tests.integration.test_api_tenancy import _body, _fill, _has_params, _routes, _seed

    ids = _seed(client, container, admin_headers)
    make_project(client, admin_headers, name="finance")
    token, _ = container.tokens.create("acme", "admin", "finance-ci", project="finance")
    scoped = _bearer(token)
    org_wide = {
        (method, route.path)
        for route in client.app.routes
        for handler in getattr(route, "route_handlers", [])
        if handler.opt.get(ORG_WIDE)
        for method in handler.http_methods
    }
    checked = 0
    for method, path in _routes(client):
        if not _has_params(path):
            continue
        response = client.request(
            method, _fill(path, ids), headers=scoped, json=_body(method, path)
        )
        if (method, path) in org_wide:
            assert_problem(response, 403)
            continue
        assert response.status_code == 404, (method, path, response.text)
        assert_problem(response, 404)
        checked += 1
    assert checked >= 20
    # Nothing was changed or deleted on the way.
    project = client.get(f"/api/v1/projects/{ids['project_id']}", headers=admin_headers)
    assert project.status_code == 200 and project.json()["description"] == "the warehouse"
    jobs = client.get(f"/api/v1/projects/{ids['project_id']}/jobs", headers=admin_headers)
    assert jobs.json()["total"] == 1


def test_a_scoped_token_sees_and_makes_no_links_to_other_projects(
    client: TestClient[Any],
    container: Container,
    admin_headers: dict[str, str],
    two_projects: dict[str, Any],
) -> None:
    mine, job, theirs = two_projects["mine"], two_projects["my_job"], two_projects["their_job"]
    base = f"/api/v1/projects/{mine['id']}/jobs"
    # An org-wide admin links the two projects: analytics' job runs after finance's.
    link = {"depends_on": [{"job_id": theirs["id"]}]}
    assert client.put(f"{base}/{job['id']}", json=link, headers=admin_headers).status_code == 200
    upstream = client.get(f"{base}/{job['id']}/dependencies", headers=admin_headers).json()
    assert [u["job_name"] for u in upstream["upstream"]] == ["nightly"]
    token, _ = container.tokens.create("acme", "admin", "ci", project="analytics")
    ci = _bearer(token)
    seen = client.get(f"{base}/{job['id']}/dependencies", headers=ci).json()
    assert seen["upstream"] == [] and seen["downstream"] == []
    # The link it cannot see stays through its changes; it cannot make a new one.
    kept = client.put(f"{base}/{job['id']}", json={"description": "x"}, headers=ci)
    assert kept.status_code == 200
    assert [d["job_id"] for d in kept.json()["depends_on"]] == [theirs["id"]]
    new = {"name": "after", "command": "dbt run", "depends_on": [{"job_id": theirs["id"]}]}
    refused = assert_problem(client.post(base, json=new, headers=ci), 422, field="depends_on")
    assert "no other job" in str(refused["errors"])
    assert client.get(base, headers=admin_headers).json()["total"] == 1
