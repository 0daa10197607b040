"""The web UI's pages and forms through real HTTP (uvicorn): what they show, who may act,
and that another organization's things are 404 as in the API."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape

import httpx

from app.container import Container
from app.services.jobs import JobCreate, JobPatch
from app.store.jobs import config_of
from tests.conftest import LiveServer
from tests.factories import run_record, snapshot
from tests.integration.web_helpers import Seeded, browser, csrf_of, seed, sign_in

BUTTONS = ("btn-trigger", "btn-toggle", "btn-deploy", "btn-cancel", "btn-rerun", "btn-retry")


@contextmanager
def _signed_in(live_server: LiveServer, token: str) -> Iterator[httpx.Client]:
    with browser(live_server.url) as client:
        assert sign_in(client, token).status_code == 303
        yield client


def _viewer(container: Container) -> str:
    token, _ = container.tokens.create("acme", "viewer")
    return token


def test_overview_lists_jobs_and_what_is_failing(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with _signed_in(live_server, world.token) as client:
        page = client.get("/ui/")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="en">' in html and 'class="skip-link"' in html and "<main" in html
    failing = html[html.index('id="failing-now"') : html.index('id="jobs-heading"')]
    assert f'href="/ui/jobs/{world.job_id}"' in failing
    row = re.search(rf'<tr data-job-id="{world.job_id}">.*?</tr>', html, re.S)
    assert row, html
    # The last run is the running one: its status as text, with the class for its colour.
    assert '<span class="status status-running">running</span>' in row.group(0)
    assert '<svg class="spark"' in row.group(0)  # the seven days' sparkline
    assert "50%" in row.group(0)  # one success, one failure (the running one is not done)
    # Security headers on every page.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in html and "style=" not in html  # nothing inline (the CSP)


def test_job_page_chart_config_versions_and_diff(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    container.jobs.update(
        world.principal,
        world.project_id,
        world.job_id,
        JobPatch(command="dbt build --select orders", environment={"TARGET": "prod"}),
    )
    with _signed_in(live_server, world.token) as client:
        page = client.get(f"/ui/jobs/{world.job_id}")
        assert page.status_code == 200
        html = unescape(page.text)
        chart = html[html.index('id="run-history"') : html.index("</figure>")]
        bar = re.search(rf'<a href="/ui/runs/{world.failed_run_id}" aria-label="([^"]+)"', chart)
        assert bar and "failed" in bar.group(1) and "1m 35s" in bar.group(1)
        assert '"command": "dbt build --select orders"' in html  # id=job-config
        assert f"/ui/jobs/{world.job_id}/diff?from=1&to=2" in html
        assert 'id="job-models"' in html and "model_0000" in html
        for button in ("btn-trigger", "btn-toggle", "btn-deploy"):
            assert f'id="{button}"' in html
        diff = client.get(f"/ui/jobs/{world.job_id}/diff", params={"from": 1, "to": 2})
        assert diff.status_code == 200
        text = unescape(diff.text)
        assert '<span class="diff-del">-  "command": "dbt build",</span>' in text
        assert '<span class="diff-add">+  "command": "dbt build --select orders",</span>' in text
        assert '<span class="diff-add">+    "TARGET": "prod"</span>' in text
        missing = client.get(f"/ui/jobs/{world.job_id}/diff", params={"from": 1, "to": 9})
        assert missing.status_code == 404 and "no version 9" in missing.text
        assert client.get(f"/ui/jobs/{world.job_id}/diff?from=x&to=1").status_code == 400


def test_run_page_shows_failure_nodes_log_timeline_and_config(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container, nodes=5)
    with _signed_in(live_server, world.token) as client:
        page = client.get(f"/ui/runs/{world.failed_run_id}")
    assert page.status_code == 200
    html = unescape(page.text)
    assert re.search(r'id="run-status"[^>]*>failed<', html)
    failed = html[
        html.index('id="failed-nodes"') : html.index("</ul>", html.index('id="failed-nodes"'))
    ]
    assert "model_0000" in failed
    assert '<pre class="node-error">Binder Error: column <amount> not found</pre>' in failed
    assert page.text.count("&lt;amount&gt;") >= 1  # escaped, not markup
    table = html[
        html.index('id="node-results"') : html.index("</table>", html.index('id="node-results"'))
    ]
    assert table.count("<tr>") == 1 + 5  # the header and every node
    assert table.index("model_0000") < table.index("model_0001")  # failed first
    assert 'id="run-timeline"' in html and html.count('<rect class="status') >= 5
    assert "ERROR model_0000" in html[html.index('id="run-log"') :]
    assert 'id="log-search"' in html
    assert '"command": "dbt build"' in html  # id=run-config, the snapshot
    assert 'id="notifications"' in html
    # Admin on a failed run: run again and retry from failure, no cancel.
    assert 'id="btn-rerun"' in html and 'id="btn-retry"' in html and 'id="btn-cancel"' not in html


def test_retry_is_offered_only_where_it_applies(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with _signed_in(live_server, world.token) as client:
        ok = client.get(f"/ui/runs/{world.ok_run_id}").text
        assert 'id="btn-rerun"' in ok and 'id="btn-retry"' not in ok
        assert 'id="retry-refusal"' not in ok  # success: nothing to explain
        # Without its run_results.json, dbt cannot tell what to retry: no button, and why.
        container.store.artifacts.delete(world.failed_run_id, "run_results.json")
        failed = unescape(client.get(f"/ui/runs/{world.failed_run_id}").text)
        assert 'id="btn-retry"' not in failed and 'id="btn-rerun"' in failed
        assert "has no run_results.json" in failed


def test_a_long_run_page_is_paginated_and_light(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container, nodes=2000)
    with _signed_in(live_server, world.token) as client:
        client.get(f"/ui/runs/{world.failed_run_id}")  # templates compiled, caches warm
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            page = client.get(f"/ui/runs/{world.failed_run_id}")
            timings.append(time.perf_counter() - started)
            assert page.status_code == 200
        last = client.get(f"/ui/runs/{world.failed_run_id}?nodes=10")
    assert len(page.content) < 300_000, len(page.content)
    assert "page 1 of 10" in page.text and "Next nodes" in page.text
    assert "The 150 longest of 2000 timed nodes" in page.text
    assert "page 10 of 10" in last.text and "model_" in last.text
    # Generous for a shared test machine; the benchmark (bench/ui.py) measures p95.
    assert min(timings) < 1.0, timings


def test_live_log_tail_follows_from_an_offset(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with _signed_in(live_server, world.token) as client:
        page = client.get(f"/ui/runs/{world.active_run_id}")
        found = re.search(r'data-follow="([^"]+)" data-offset="(\d+)"', page.text)
        assert found, page.text
        url, offset = found.group(1), int(found.group(2))
        assert 'id="btn-cancel"' in page.text
        container.store.runs.append_log(
            world.active_run_id, "second <line>\n", 10**7, container.clock()
        )
        tail = client.get(url, params={"after": offset}).json()
        assert tail == {
            "text": "second <line>\n",
            "next": offset + len("second <line>\n"),
            "reset": False,
            "active": True,
            "status": "running",
            "label": "running",
        }
        assert client.get(url, params={"after": 10**9}).json()["reset"] is True
    # Without a session the fragment is no JSON, only the way to sign in.
    with browser(live_server.url) as anonymous:
        assert anonymous.get(url).status_code == 303


def test_admin_actions_work_and_redirect(container: Container, live_server: LiveServer) -> None:
    world = seed(container)
    with _signed_in(live_server, world.token) as client:
        page = client.get(f"/ui/jobs/{world.job_id}")
        csrf = csrf_of(page.text)
        toggled = client.post(f"/ui/jobs/{world.job_id}/toggle", data={"csrf_token": csrf})
        assert toggled.status_code == 303
        assert toggled.headers["location"] == f"/ui/jobs/{world.job_id}?done=disabled"
        assert not container.jobs.find(world.principal, world.job_id).enabled
        assert "Job disabled." in client.get(toggled.headers["location"]).text
        cancel = client.post(f"/ui/runs/{world.active_run_id}/cancel", data={"csrf_token": csrf})
        assert cancel.status_code == 303
        assert container.runs.get(world.principal, world.active_run_id).status == "cancelled"
        # Cancelling it again is the service's 409, as a page.
        again = client.post(f"/ui/runs/{world.active_run_id}/cancel", data={"csrf_token": csrf})
        assert again.status_code == 409 and "already ended" in again.text
        deployed = client.post(f"/ui/jobs/{world.job_id}/deploy", data={"csrf_token": csrf})
        assert deployed.status_code == 303
        assert container.jobs.project(world.principal, world.project_id).deployed


def test_viewers_see_no_controls_and_cannot_write(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with _signed_in(live_server, _viewer(container)) as client:
        pages = [
            client.get(f"/ui/jobs/{world.job_id}"),
            client.get(f"/ui/runs/{world.failed_run_id}"),
            client.get(f"/ui/runs/{world.active_run_id}"),
        ]
        for page in pages:
            assert page.status_code == 200
            for button in BUTTONS:
                assert f'id="{button}"' not in page.text
        csrf = csrf_of(pages[0].text)  # the sign-out form's: a valid token for this session
        writes = [
            f"/ui/jobs/{world.job_id}/trigger",
            f"/ui/jobs/{world.job_id}/toggle",
            f"/ui/jobs/{world.job_id}/deploy",
            f"/ui/runs/{world.active_run_id}/cancel",
            f"/ui/runs/{world.failed_run_id}/rerun",
            f"/ui/runs/{world.failed_run_id}/retry",
        ]
        for url in writes:
            response = client.post(url, data={"csrf_token": csrf})
            assert response.status_code == 403, url
            assert "viewer" in response.text
    assert container.jobs.find(world.principal, world.job_id).enabled
    assert container.runs.get(world.principal, world.active_run_id).status == "running"
    total = container.runs.list_runs(world.principal, job_id=world.job_id).total
    assert total == 3


def test_forms_without_the_csrf_token_are_refused(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with _signed_in(live_server, world.token) as client:
        for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}):
            response = client.post(f"/ui/jobs/{world.job_id}/toggle", data=data)
            assert response.status_code == 403
            assert "security token" in response.text
        # Another session's token is no good either.
        with _signed_in(live_server, world.token) as other:
            theirs = csrf_of(other.get("/ui/").text)
        response = client.post(f"/ui/jobs/{world.job_id}/toggle", data={"csrf_token": theirs})
        assert response.status_code == 403
    assert container.jobs.find(world.principal, world.job_id).enabled


def test_another_orgs_pages_are_404(container: Container, live_server: LiveServer) -> None:
    world: Seeded = seed(container)
    outsider, _ = container.tokens.create("globex", "admin")
    with _signed_in(live_server, outsider) as client:
        csrf = csrf_of(client.get("/ui/").text)
        assert world.job_id not in client.get("/ui/").text
        reads = [
            f"/ui/jobs/{world.job_id}",
            f"/ui/jobs/{world.job_id}/diff?from=1&to=1",
            f"/ui/runs/{world.failed_run_id}",
            f"/ui/runs/{world.failed_run_id}/log?after=0",
            f"/ui/runs/{world.failed_run_id}/log.txt",
        ]
        for url in reads:
            response = client.get(url)
            assert response.status_code == 404, url
            assert "model_0000" not in response.text and "nightly" not in response.text
        writes = [
            f"/ui/jobs/{world.job_id}/trigger",
            f"/ui/jobs/{world.job_id}/toggle",
            f"/ui/jobs/{world.job_id}/deploy",
            f"/ui/runs/{world.active_run_id}/cancel",
            f"/ui/runs/{world.failed_run_id}/rerun",
            f"/ui/runs/{world.failed_run_id}/retry",
        ]
        for url in writes:
            assert client.post(url, data={"csrf_token": csrf}).status_code == 404, url
    assert container.jobs.find(world.principal, world.job_id).enabled
    assert container.runs.get(world.principal, world.active_run_id).status == "running"


def test_static_files_and_unknown_pages(container: Container, live_server: LiveServer) -> None:
    world = seed(container)
    with browser(live_server.url) as client:
        css = client.get("/static/ui.css")
        assert css.status_code == 200 and ":focus-visible" in css.text
        assert client.get("/static/ui.js").status_code == 200
        assert client.get("/static/../main.py").status_code == 404
    with _signed_in(live_server, world.token) as client:
        response = client.get("/ui/runs/run_doesnotexist")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert 'id="signout"' in response.text  # the error page keeps the header
        unknown = client.get("/ui/no-such-page%3Cb%3E")
        assert unknown.status_code == 404 and "text/html" in unknown.headers["content-type"]
        assert "<b>" not in unknown.text


def test_overview_pages_its_jobs_but_lists_every_failure(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)  # "nightly", failing, sorts after the ones below
    for i in range(100):
        container.jobs.create(
            world.principal, world.project_id, JobCreate(name=f"a-job-{i:03d}", command="dbt run")
        )
    with _signed_in(live_server, world.token) as client:
        first = client.get("/ui/")
        second = client.get("/ui/?page=2")
    assert first.text.count("<tr data-job-id=") == 100
    assert second.text.count("<tr data-job-id=") == 1
    assert "101 jobs in 1 projects (page 1 of 2)" in first.text
    assert 'href="/ui/?page=2"' in first.text
    # The failing job is on page 2 of the table, and in "failing now" on every page.
    assert f'<tr data-job-id="{world.job_id}">' in second.text
    failing = first.text[first.text.index('id="failing-now"') : first.text.index('id="jobs"')]
    assert f'href="/ui/jobs/{world.job_id}"' in failing and "a run is under way" in failing
    assert len(first.content) < 300_000


def test_run_and_job_pages_never_show_secret_values(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    container.jobs.update(
        world.principal,
        world.project_id,
        world.job_id,
        JobPatch(
            secret_environment={"DBT_ENV_SECRET_PASSWORD": "hunter2-job-secret"},
            webhook_headers={"Authorization": "Bearer hunter2-header"},
        ),
    )
    job = container.jobs.find(world.principal, world.job_id)
    taken = snapshot(
        job=config_of(job), project_secret_environment={"WAREHOUSE_KEY": "hunter2-project"}
    )
    run = run_record(
        org_id=world.principal.org_id,
        project_id=world.project_id,
        job_id=world.job_id,
        status="failed",
        snapshot_=taken,
    )
    container.store.runs.insert(run)
    with _signed_in(live_server, world.token) as client:
        pages = [
            client.get(f"/ui/runs/{run.id}"),
            client.get(f"/ui/jobs/{world.job_id}"),
            client.get(f"/ui/jobs/{world.job_id}/diff?from=1&to=2"),
        ]
    for page in pages:
        assert page.status_code == 200
        assert "hunter2" not in page.text
    assert '"DBT_ENV_SECRET_PASSWORD": "********"' in unescape(pages[0].text)
