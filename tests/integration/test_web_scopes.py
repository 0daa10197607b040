"""A UI session acts exactly as its token does on the API (docs/ui.md, docs/tokens.md): the
token's expiry ends it, its action set decides which buttons show and which forms are
refused, its project scope hides every other project, and what it changes is in the audit
trail under the token's name. Real HTTP (uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx

from app.container import Container
from app.ids import to_text, utcnow
from app.services.jobs import JobCreate
from app.services.projects import ProjectCreate, ProjectPatch
from tests.conftest import LiveServer
from tests.factories import run_record
from tests.integration.web_helpers import Seeded, browser, csrf_of, seed, sign_in

JOB_BUTTONS = ("btn-trigger", "btn-toggle", "btn-deploy")


@contextmanager
def _signed_in(live_server: LiveServer, token: str) -> Iterator[httpx.Client]:
    with browser(live_server.url) as client:
        assert sign_in(client, token).status_code == 303
        yield client


def test_an_expired_tokens_session_ends_and_the_sign_in_page_says_why(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    token, info = container.tokens.create("acme", "admin", "short-lived", expires_in="1h")
    with browser(live_server.url) as client:
        signed = sign_in(client, token)
        assert signed.status_code == 303
        # The cookie lives as long as the token, not the 12-hour session lifetime.
        max_age = int(signed.headers["set-cookie"].split("Max-Age=")[1].split(";")[0])
        assert 3500 < max_age <= 3600
        page = f"/ui/jobs/{world.job_id}"
        assert client.get(page).status_code == 200
        # The hour passes (the token's expiry is moved to the past, as time would).
        with container.store.database.write() as db:
            db.conn.execute(
                "UPDATE tokens SET expires_at = ? WHERE id = ?",
                (to_text(utcnow() - timedelta(seconds=1)), info.id),
            )
        ended = client.get(page)
        assert ended.status_code == 303
        assert ended.headers["location"] == f"/ui/signin?next={page}&why=expired"
        form = client.get(ended.headers["location"])
        assert form.status_code == 200
        assert "Your session ended. The bearer token expired on" in form.text
        assert "runyard tokens create" in form.text
        # Forms are refused too, and change nothing.
        csrf = csrf_of(form.text)  # the sign-in form's; no session token is left anyway
        toggled = client.post(f"{page}/toggle", data={"csrf_token": csrf})
        assert toggled.status_code == 303 and "why=expired" in toggled.headers["location"]
        # Signing in with an expired token: the API's words, with the date. (Another token:
        # this one's principal may still be in the token service's two-second cache, with
        # the expiry it had before the test moved it.)
        stale, stale_info = container.tokens.create("acme", "admin", "stale", expires_in="1h")
        with container.store.database.write() as db:
            db.conn.execute(
                "UPDATE tokens SET expires_at = ? WHERE id = ?",
                (to_text(utcnow() - timedelta(seconds=1)), stale_info.id),
            )
        again = sign_in(client, stale)
        assert again.status_code == 401
        assert "The bearer token expired on" in again.text
        assert "runyard_session" not in again.headers.get("set-cookie", "")
    assert container.jobs.find(world.principal, world.job_id).enabled
    # A session that simply ran out says nothing about expiry.
    with browser(live_server.url) as client:
        client.cookies.set("runyard_session", "forged.value", path="/ui")
        assert client.get("/ui/").headers["location"] == "/ui/signin"


def test_a_trigger_only_token_sees_and_may_use_only_trigger_controls(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    token, _ = container.tokens.create("acme", "admin", "ci-bot", actions="trigger")
    with _signed_in(live_server, token) as client:
        job_page = client.get(f"/ui/jobs/{world.job_id}")
        assert job_page.status_code == 200
        # The header says which token this is and what it may do.
        assert '<strong id="who-token">ci-bot</strong>' in job_page.text
        assert '<strong id="who-actions">read, trigger</strong>' in job_page.text
        # The job is scheduled and its project not deployed: an unscoped admin sees Deploy.
        assert 'id="btn-trigger"' in job_page.text
        assert 'id="btn-toggle"' not in job_page.text and 'id="btn-deploy"' not in job_page.text
        failed = client.get(f"/ui/runs/{world.failed_run_id}").text
        assert 'id="btn-rerun"' in failed and 'id="btn-retry"' in failed
        assert 'id="btn-cancel"' in client.get(f"/ui/runs/{world.active_run_id}").text
        csrf = csrf_of(job_page.text)
        for url, needs in (
            (f"/ui/jobs/{world.job_id}/toggle", "write"),
            (f"/ui/jobs/{world.job_id}/deploy", "deploy"),
        ):
            refused = client.post(url, data={"csrf_token": csrf})
            assert refused.status_code == 403, url
            assert "text/html" in refused.headers["content-type"]
            assert (
                f"This token (ci-bot) may only: read, trigger; this request needs '{needs}'"
                in refused.text.replace("&#39;", "'")
            )
        # What it may do, it can.
        cancelled = client.post(f"/ui/runs/{world.active_run_id}/cancel", data={"csrf_token": csrf})
        assert cancelled.status_code == 303
    assert container.jobs.find(world.principal, world.job_id).enabled
    assert not container.jobs.project(world.principal, world.project_id).deployed
    assert container.runs.get(world.principal, world.active_run_id).status == "cancelled"
    # The same token's full-rights twin sees every button (the check above can fail).
    with _signed_in(live_server, world.token) as client:
        page = client.get(f"/ui/jobs/{world.job_id}").text
        assert all(f'id="{button}"' in page for button in JOB_BUTTONS)


def _other_project(container: Container, world: Seeded) -> tuple[str, str, str]:
    """A second project of the same org, with a job and a run: (project, job, run) ids."""
    project = container.projects.create(world.principal, ProjectCreate(name="finance", kind="dbt"))
    job = container.jobs.create(
        world.principal, project.id, JobCreate(name="ledger", command="dbt build")
    )
    run = run_record(
        org_id=world.principal.org_id, project_id=project.id, job_id=job.id, status="failed"
    )
    container.store.runs.insert(run)
    return project.id, job.id, run.id


def test_a_project_scoped_token_sees_only_its_project(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    other_project, other_job, other_run = _other_project(container, world)
    token, _ = container.tokens.create("acme", "admin", "analytics-ci", project=world.project_id)
    with _signed_in(live_server, token) as client:
        overview = client.get("/ui/")
        assert overview.status_code == 200
        assert "1 jobs in 1 projects" in overview.text
        assert 'id="who-project">one project only' in overview.text
        assert world.job_id in overview.text and "nightly" in overview.text
        assert other_job not in overview.text and "finance" not in overview.text
        assert "ledger" not in overview.text
        csrf = csrf_of(overview.text)
        for url in (
            f"/ui/jobs/{other_job}",
            f"/ui/jobs/{other_job}/diff?from=1&to=1",
            f"/ui/runs/{other_run}",
            f"/ui/runs/{other_run}/log?after=0",
            f"/ui/runs/{other_run}/log.txt",
        ):
            response = client.get(url)
            assert response.status_code == 404, url
            assert "finance" not in response.text and "ledger" not in response.text
            assert other_project not in response.text
        job_404 = client.get(f"/ui/jobs/{other_job}").text
        assert f"No job with id &#39;{other_job}&#39; in your organization." in job_404
        for url in (
            f"/ui/jobs/{other_job}/trigger",
            f"/ui/jobs/{other_job}/toggle",
            f"/ui/jobs/{other_job}/deploy",
            f"/ui/runs/{other_run}/rerun",
            f"/ui/runs/{other_run}/retry",
        ):
            assert client.post(url, data={"csrf_token": csrf}).status_code == 404, url
        # Its own project's pages work.
        assert client.get(f"/ui/jobs/{world.job_id}").status_code == 200
        assert client.get(f"/ui/runs/{world.failed_run_id}").status_code == 200
    assert container.jobs.find(world.principal, other_job).enabled
    assert container.runs.list_runs(world.principal, job_id=other_job).total == 1
    # An unscoped token of the org sees both projects.
    with _signed_in(live_server, world.token) as client:
        assert "2 jobs in 2 projects" in client.get("/ui/").text


def test_ui_writes_are_in_the_audit_trail_as_the_tokens(
    container: Container, live_server: LiveServer, dbt_project_dir: Path
) -> None:
    world = seed(container)
    # A folder to run in (the run is cancelled at once: no dbt work is waited for).
    container.projects.update(
        world.principal, world.project_id, ProjectPatch(path=str(dbt_project_dir))
    )
    token, info = container.tokens.create("acme", "admin", "release-manager")
    with _signed_in(live_server, token) as client:
        csrf = csrf_of(client.get(f"/ui/jobs/{world.job_id}").text)
        # The seeded running run first (the job's concurrency policy forbids a second).
        cancelled = client.post(
            f"/ui/runs/{world.active_run_id}/cancel",
            data={"csrf_token": csrf},
            headers={"X-Request-ID": "ui-cancel-1"},
        )
        assert cancelled.status_code == 303
        triggered = client.post(
            f"/ui/jobs/{world.job_id}/trigger",
            data={"csrf_token": csrf},
            headers={"X-Request-ID": "ui-trigger-1"},
        )
        assert triggered.status_code == 303, triggered.text
        run_id = triggered.headers["location"].split("/ui/runs/")[1].split("?")[0]
        toggled = client.post(
            f"/ui/jobs/{world.job_id}/toggle",
            data={"csrf_token": csrf},
            headers={"X-Request-ID": "ui-toggle-1"},
        )
        assert toggled.status_code == 303
        stopped = client.post(f"/ui/runs/{run_id}/cancel", data={"csrf_token": csrf})
        assert stopped.status_code == 303
    auditor = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {world.token}"}, timeout=30
    )
    with auditor:
        response = auditor.get("/api/v1/audit", params={"limit": 200})
    assert response.status_code == 200, response.text
    events = response.json()["items"]
    by_request = {e["request_id"]: e for e in events if e["request_id"]}
    trigger = by_request["ui-trigger-1"]
    assert trigger["action"] == "run.trigger" and trigger["object_id"] == run_id
    toggle = by_request["ui-toggle-1"]
    assert toggle["action"] == "job.update" and toggle["object_id"] == world.job_id
    cancel = by_request["ui-cancel-1"]
    assert cancel["action"] == "run.cancel" and cancel["object_id"] == world.active_run_id
    for event in (cancel, trigger, toggle):
        assert event["actor_name"] == "release-manager"
        assert event["actor_token_id"] == info.id
        assert event["source_address"] == "127.0.0.1"
    # Every UI write, and nothing else, is the token's (newest first); none is "system".
    assert [e["action"] for e in events if e["actor_name"] == "release-manager"] == [
        "run.cancel",
        "job.update",
        "run.trigger",
        "run.cancel",
    ]
