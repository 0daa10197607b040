"""The web UI's pages for runs of steps, queued runs and environments, through real HTTP:
steps in order with the failed one named, each step's part of the log, the queue's places,
cancelling a queued run, the environment a run ran with, and no secret value anywhere."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from pathlib import Path

import httpx
import pytest

from app.container import Container
from app.models import Step
from app.services.jobs import JobCreate
from app.services.projects import ProjectCreate
from tests.conftest import LiveServer
from tests.integration.web_helpers import (
    ENV_SECRET,
    browser,
    csrf_of,
    seed,
    seed_steps,
    sign_in,
)


@contextmanager
def _signed_in(live_server: LiveServer, token: str) -> Iterator[httpx.Client]:
    with browser(live_server.url) as client:
        assert sign_in(client, token).status_code == 303
        yield client


def _section(html: str, marker: str, end: str = "</table>") -> str:
    start = html.index(marker)
    return html[start : html.index(end, start)]


def test_run_of_steps_lists_its_steps_and_names_the_failed_one(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    steps = seed_steps(container, world)
    with _signed_in(live_server, world.token) as client:
        page = client.get(f"/ui/runs/{steps.steps_run_id}")
        assert page.status_code == 200, page.text
        html = unescape(page.text)
        table = _section(html, 'id="run-steps"')
        rows = re.findall(r"<tr id=\"step-(\d)\"(.*?)</tr>", table, re.S)
        assert [index for index, _ in rows] == ["0", "1", "2", "3"]  # in order
        names = ["freshness", "dbt build", "dbt test", "dbt docs generate"]
        for (_, row), name in zip(rows, names, strict=True):
            assert f">{name}" in row
        build = rows[1][1]
        assert ' class="step-failed"' in build and "failed the run" in build
        assert '<span class="status status-failed">failed</span>' in build
        assert "<code>dbt build</code>" in build and "41s" in build and "<td>1</td>" in build
        assert '<span class="status status-skipped">skipped</span>' in rows[2][1]
        assert "none" in rows[2][1] and "?step=2" not in rows[2][1]  # no log: it never ran
        assert "runs on failure" in rows[3][1]
        assert '<span class="status status-success">success</span>' in rows[3][1]
        # The summary names the failed step and links to its row.
        failed = re.search(r'id="failed-step"[^>]*>(.*?)</dd>', html, re.S)
        assert failed and "step 2 of 4 (dbt build)" in failed.group(1)
        assert 'href="#step-1"' in failed.group(1) and "exit code 1" in failed.group(1)
        # The failed node says which step reported it.
        nodes = _section(html, 'id="failed-nodes"', "</ul>")
        assert "broken_orders" in nodes and "in " in nodes
        assert re.search(r'class="node-step">in <a href="#step-1">step 2 of 4 \(dbt build\)', nodes)
        # The whole log has every step's part; a step's link shows only its part.
        log = html[html.index('id="run-log"') :]
        assert "freshness output" in log and "build output" in log and "docs output" in log
        link = f"/ui/runs/{steps.steps_run_id}?step=1#run-log"
        assert f'href="{link}"' in page.text
        part = unescape(client.get(link.split("#")[0]).text)
        shown = part[part.index('id="run-log"') : part.index("</pre>", part.index('id="run-log"'))]
        assert "build output: ERROR broken_orders" in shown
        assert "freshness output" not in shown and "docs output" not in shown
        assert "Log of step 2 of 4 (dbt build)" in part and "Show the whole log" in part
        assert 'name="step" value="1"' in part  # a search stays within the step
        searched = unescape(client.get(f"/ui/runs/{steps.steps_run_id}?step=3&q=catalog").text)
        found = searched[searched.index('id="run-log"') :]
        assert "docs output: catalog written" in found[: found.index("</pre>")]
        # A step the run does not have is the API's 4xx, as a page saying why.
        missing = client.get(f"/ui/runs/{steps.steps_run_id}?step=9")
        assert missing.status_code == 422 and "numbered 0 to 3" in unescape(missing.text)
        no_steps = client.get(f"/ui/runs/{world.failed_run_id}?step=0")
        assert no_steps.status_code == 422 and "has no steps" in no_steps.text
        # Retried from the failed step (docs/steps.md), not by dbt retry: offered although
        # the run kept no run_results.json.
        assert 'id="btn-retry"' in html and 'id="retry-refusal"' not in html
        # A run without steps shows no steps section.
        assert 'id="run-steps"' not in client.get(f"/ui/runs/{world.failed_run_id}").text


def test_run_page_shows_the_environment_and_no_secret(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    steps = seed_steps(container, world)
    with _signed_in(live_server, world.token) as client:
        pages = {
            "run": client.get(f"/ui/runs/{steps.steps_run_id}"),
            "queued": client.get(f"/ui/runs/{steps.queued_run_ids[0]}"),
            "job": client.get(f"/ui/jobs/{steps.job_id}"),
            "overview": client.get("/ui/"),
            "step log": client.get(f"/ui/runs/{steps.steps_run_id}?step=1"),
            "log text": client.get(f"/ui/runs/{steps.steps_run_id}/log.txt"),
        }
        for name, page in pages.items():
            assert page.status_code == 200, name
            assert ENV_SECRET not in page.text, name
            assert "hunter2" not in page.text, name
        run = unescape(pages["run"].text)
        env = re.search(r'id="run-environment">(.*?)</dd>', run, re.S)
        assert env and "staging" in env.group(1) and "<code>stg</code>" in env.group(1)
        assert "WAREHOUSE_PASSWORD" not in env.group(1)
        assert "staging" in unescape(pages["queued"].text)
        job = unescape(pages["job"].text)
        job_env = re.search(r'id="job-environment">(.*?)</dd>', job, re.S)
        assert job_env and "staging" in job_env.group(1) and "stg" in job_env.group(1)
        assert "one-off runs in other environments not allowed" in job_env.group(1)
        # The default environment of a job that names none.
        plain = unescape(client.get(f"/ui/jobs/{world.job_id}").text)
        plain_env = re.search(r'id="job-environment">(.*?)</dd>', plain, re.S)
        assert plain_env and plain_env.group(1).startswith("default")


def test_job_page_shows_steps_queue_policy_and_silence_alerts(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    steps = seed_steps(container, world)
    with _signed_in(live_server, world.token) as client:
        html = unescape(client.get(f"/ui/jobs/{steps.job_id}").text)
        plain = unescape(client.get(f"/ui/jobs/{world.job_id}").text)
    table = _section(html, 'id="job-steps"')
    assert table.index("freshness") < table.index("dbt build") < table.index("dbt docs generate")
    assert "<code>dbt source freshness</code>" in table
    assert table.count("<td>runs</td>") == 1 and table.count("<td>skipped</td>") == 3
    assert '<a href="#job-steps">4 steps</a>' in html
    concurrency = re.search(r'id="job-concurrency">(.*?)</dd>', html, re.S)
    assert concurrency and "<code>Queue</code>" in concurrency.group(1)
    assert "waits in line" in concurrency.group(1)
    silence = re.search(r'id="job-silence">(.*?)</dd>', html, re.S)
    assert silence and "not started within 15 min" in silence.group(1)
    assert "longer than 90 min" in silence.group(1)
    assert re.search(r'id="job-silence">off<', plain) and 'id="job-steps"' not in plain
    assert re.search(r'id="job-open-runs">1 active, 2 queued<', html)


def test_queued_runs_show_their_place_and_can_be_cancelled(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    steps = seed_steps(container, world)
    first, second = steps.queued_run_ids
    with _signed_in(live_server, world.token) as client:
        page = client.get(f"/ui/runs/{second}")
        html = unescape(page.text)
        assert re.search(
            r'id="run-status" class="status status-queued"[^>]*>queued, 2nd in line<', html
        )
        assert "2nd in its job's queue" in html and 'id="btn-cancel"' in html
        # The page follows the queued run: it starts by itself.
        assert 'data-follow="/ui/runs/' in html
        tail = client.get(f"/ui/runs/{second}/log", params={"after": 0}).json()
        assert tail["active"] is True and tail["label"] == "queued, 2nd in line"
        # Lists: the job's runs and the overview's last status and queued count.
        job = unescape(client.get(f"/ui/jobs/{steps.job_id}").text)
        runs = _section(job, 'id="job-runs"')
        assert '<span class="status status-queued">queued, 2nd in line</span>' in runs
        assert '<span class="status status-queued">queued, 1st in line</span>' in runs
        overview = unescape(client.get("/ui/").text)
        row = re.search(rf'<tr data-job-id="{steps.job_id}">.*?</tr>', overview, re.S)
        assert row and "queued, 2nd in line" in row.group(0)
        assert '<span class="tag tag-queued">2 queued</span>' in row.group(0)
        assert re.search(r'id="queued-total">2 runs queued<', overview)
        # An admin cancels the first: it ends cancelled, the second moves up.
        csrf = csrf_of(page.text)
        cancelled = client.post(f"/ui/runs/{first}/cancel", data={"csrf_token": csrf})
        assert cancelled.status_code == 303, cancelled.text
        assert container.runs.get(world.principal, first).status == "cancelled"
        moved = unescape(client.get(f"/ui/runs/{second}").text)
        assert re.search(r'id="run-status"[^>]*>queued, 1st in line<', moved)
        gone = unescape(client.get(f"/ui/runs/{first}").text)
        assert 'id="btn-cancel"' not in gone and re.search(r'id="run-status"[^>]*>cancelled<', gone)
    # A viewer sees the place but no cancel button, and cannot cancel.
    viewer, _ = container.tokens.create("acme", "viewer")
    with _signed_in(live_server, viewer) as client:
        page = client.get(f"/ui/runs/{second}")
        assert "queued, 1st in line" in page.text and 'id="btn-cancel"' not in page.text
        refused = client.post(f"/ui/runs/{second}/cancel", data={"csrf_token": csrf_of(page.text)})
        assert refused.status_code == 403
    assert container.runs.get(world.principal, second).status == "queued"


def test_another_org_sees_no_step_log_or_queued_run(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    steps = seed_steps(container, world)
    outsider, _ = container.tokens.create("globex", "admin")
    with _signed_in(live_server, outsider) as client:
        csrf = csrf_of(client.get("/ui/").text)
        for url in (
            f"/ui/runs/{steps.steps_run_id}?step=1",
            f"/ui/runs/{steps.queued_run_ids[0]}",
            f"/ui/jobs/{steps.job_id}",
        ):
            response = client.get(url)
            assert response.status_code == 404, url
            assert "staging" not in response.text and "build output" not in response.text
        refused = client.post(
            f"/ui/runs/{steps.queued_run_ids[0]}/cancel", data={"csrf_token": csrf}
        )
        assert refused.status_code == 404
    assert container.runs.get(world.principal, steps.queued_run_ids[0]).status == "queued"


@pytest.mark.slow
def test_a_real_local_run_of_steps_on_its_page(
    container: Container, live_server: LiveServer, dbt_project_dir: Path
) -> None:
    """Real dbt on DuckDB through the local executor: the records the supervisor writes
    (steps, each step's part of the log, node results tagged with their step) as the page
    shows them."""
    token, _ = container.tokens.create("acme", "admin")
    principal = container.tokens.authenticate(token)
    project = container.projects.create(
        principal, ProjectCreate(name="demo", kind="dbt", path=str(dbt_project_dir))
    )
    job = container.jobs.create(
        principal,
        project.id,
        JobCreate(
            name="stepped",
            steps=[
                Step(command="dbt build --exclude tag:slow"),
                Step(command="dbt test --select stg_orders"),
                Step(command="dbt docs generate", run_on_failure=True),
            ],
        ),
    )
    run_id = container.runs.trigger(principal, project.id, job.id).run.id
    deadline = time.monotonic() + 240
    while not container.runs.get(principal, run_id).is_terminal:
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.3)
    with _signed_in(live_server, token) as client:
        html = unescape(client.get(f"/ui/runs/{run_id}").text)
        build_log = unescape(client.get(f"/ui/runs/{run_id}?step=0").text)
        docs_log = unescape(client.get(f"/ui/runs/{run_id}?step=2").text)
    assert re.search(r'id="run-status"[^>]*>failed<', html), html[:3000]
    table = _section(html, 'id="run-steps"')
    statuses = re.findall(r'<td><span class="status status-(\w+)">', table)
    assert statuses == ["failed", "skipped", "success"], table
    assert ' class="step-failed"' in table.split('id="step-1"')[0]
    failed = re.search(r'id="failed-step"[^>]*>(.*?)</dd>', html, re.S)
    assert failed and "step 1 of 3 (dbt build)" in failed.group(1)
    nodes = _section(html, 'id="failed-nodes"', "</ul>")
    assert "broken_orders" in nodes and "step 1 of 3 (dbt build)" in nodes
    assert f'href="/ui/runs/{run_id}?step=0#run-log"' in html
    assert f'href="/ui/runs/{run_id}?step=1#run-log"' not in html  # skipped: no log

    def shown(page: str) -> str:
        start = page.index('id="run-log"')
        return page[start : page.index("</pre>", start)]

    assert "== step 1/3: dbt build ==" in shown(build_log)
    assert "broken_orders" in shown(build_log) and "Catalog written" not in shown(build_log)
    assert "Catalog written" in shown(docs_log) and "broken_orders" not in shown(docs_log)
