"""Builders for the web UI's tests: an org's project, job and runs (with node results and
timings), and a browser-like HTTP session that signs in through the form."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta

import httpx

from app.container import Container
from app.ids import to_text, utcnow
from app.models import NodeSummary, Principal, RunStep, Step
from app.services.environments import EnvironmentCreate
from app.services.jobs import JobCreate
from app.services.projects import ProjectCreate
from app.store.history import NodeRow
from tests.factories import run_record

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Seeded:
    token: str
    principal: Principal
    project_id: str
    job_id: str
    failed_run_id: str
    ok_run_id: str
    active_run_id: str


def seed(container: Container, org: str = "acme", nodes: int = 3) -> Seeded:
    """A project with one scheduled job and three runs: a successful one, then a failed one
    whose ``nodes`` nodes have timings (the first one failed), then a running one with a
    log."""
    token, _ = container.tokens.create(org, "admin")
    principal = container.tokens.authenticate(token)
    project = container.projects.create(principal, ProjectCreate(name="analytics", kind="dbt"))
    job = container.jobs.create(
        principal,
        project.id,
        JobCreate(name="nightly", command="dbt build", schedule="0 2 * * *"),
    )
    now = utcnow()
    start = now - timedelta(hours=2)
    results = [
        NodeSummary(
            unique_id=f"model.shop.model_{i:04d}",
            name=f"model_{i:04d}",
            resource_type="model",
            status="error" if i == 0 else "success",
            execution_time=1.0 + i % 7,
            message="Binder Error: column <amount> not found" if i == 0 else "OK",
        )
        for i in range(nodes)
    ]
    # Inserted oldest first: runs list in the order they were recorded.
    ok = run_record(
        org_id=principal.org_id,
        project_id=project.id,
        job_id=job.id,
        status="success",
        start_time=now - timedelta(hours=3),
        end_time=now - timedelta(hours=3) + timedelta(seconds=30),
        duration_seconds=30.0,
        created_at=now - timedelta(hours=3),
    )
    container.store.runs.insert(ok)
    failed = run_record(
        org_id=principal.org_id,
        project_id=project.id,
        job_id=job.id,
        status="failed",
        start_time=start,
        end_time=start + timedelta(seconds=95),
        duration_seconds=95.0,
        exit_code=1,
        error="dbt exited with 1",
        results=results,
        created_at=start,
    )
    container.store.runs.insert(failed)
    rows = [
        NodeRow(
            unique_id=r.unique_id,
            name=r.name,
            resource_type=r.resource_type,
            status=r.status,
            started_at=to_text(start + timedelta(seconds=i % 40)),
            completed_at=to_text(start + timedelta(seconds=i % 40 + (r.execution_time or 0))),
            execution_time=r.execution_time,
            rows_affected=i,
            message=r.message,
        )
        for i, r in enumerate(results)
    ]
    container.store.history.record(failed.id, job.id, start, rows, "artifacts")
    # What dbt wrote: retry from failure applies to this run.
    results_json = {
        "args": {"which": "build"},
        "results": [{"unique_id": results[0].unique_id, "status": "error"}],
    }
    container.store.artifacts.put(
        failed.id, "run_results.json", json.dumps(results_json).encode(), limit_bytes=10**6
    )
    container.store.runs.append_log(
        failed.id, "12:00:01 Running with dbt\n12:00:05 ERROR model_0000\n", 10**7, start
    )
    active = run_record(
        org_id=principal.org_id,
        project_id=project.id,
        job_id=job.id,
        status="running",
        start_time=now,
        created_at=now,
    )
    container.store.runs.insert(active)
    container.store.runs.append_log(active.id, "first line\n", 10**7, now)
    return Seeded(
        token=token,
        principal=principal,
        project_id=project.id,
        job_id=job.id,
        failed_run_id=failed.id,
        ok_run_id=ok.id,
        active_run_id=active.id,
    )


def browser(base_url: str) -> httpx.Client:
    """A client that keeps cookies and does not follow redirects (tests look at them)."""
    return httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:2000]
    return found.group(1)


def sign_in(client: httpx.Client, token: str, next_path: str | None = None) -> httpx.Response:
    form = client.get("/ui/signin")
    assert form.status_code == 200, form.text
    data = {"token": token, "csrf_token": csrf_of(form.text)}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/ui/signin", data=data)


# --- runs of steps, queued runs, environments (docs/steps.md, queues.md, environments.md) ---

ENV_SECRET = "hunter2-environment-secret"
STEPS = [
    Step(command="dbt source freshness", name="freshness"),
    Step(command="dbt build"),
    Step(command="dbt test"),
    Step(command="dbt docs generate", run_on_failure=True),
]


@dataclass
class StepsWorld:
    job_id: str
    environment_id: str
    steps_run_id: str  # failed at step 2 (dbt build), step 3 skipped, docs ran on failure
    queued_run_ids: list[str]  # 2 runs waiting behind ``blocker_run_id``
    blocker_run_id: str


def _run_step(
    container: Container, run_id: str, steps: list[RunStep], index: int, output: str
) -> None:
    """What the local supervisor does for a step (app/executors/local/executor.py
    ``_begin_step``): where its part of the log starts, then its header line and output."""
    step = steps[index]
    step.status = "running"
    step.started_at = container.clock()
    step.log_seq = container.store.runs.next_log_seq(run_id)
    container.store.runs.set_steps(run_id, steps, container.clock())
    header = f"== step {index + 1}/{len(steps)}: {step.name} ==\n"
    container.store.runs.append_log(run_id, header + output, 10**7, container.clock())


def seed_steps(container: Container, world: Seeded) -> StepsWorld:
    """A job of steps in a "staging" environment (with a secret variable) and the Queue
    policy. Its runs are recorded by the real trigger (the snapshot: steps, environment);
    one is then run as the supervisor records a run of steps; two wait in the queue
    behind a running run."""
    principal = world.principal
    env = container.environments.create(
        principal,
        world.project_id,
        EnvironmentCreate(
            name="staging",
            target="stg",
            environment={"WAREHOUSE": "STAGING_WH"},
            secret_environment={"WAREHOUSE_PASSWORD": ENV_SECRET},
        ),
    )
    job = container.jobs.create(
        principal,
        world.project_id,
        JobCreate(
            name="stepped",
            steps=STEPS,
            schedule="0 3 * * *",
            concurrency_policy="Queue",
            environment_id=env.id,
            alert_if_not_started_within=15,
            alert_if_running_longer_than=90,
        ),
    )
    blocker = run_record(
        org_id=principal.org_id,
        project_id=world.project_id,
        job_id=job.id,
        status="running",
        start_time=utcnow(),
    )
    container.store.runs.insert(blocker)
    triggered = [container.runs.trigger(principal, world.project_id, job.id).run for _ in range(3)]
    assert [r.status for r in triggered] == ["queued"] * 3, triggered
    # The first of them runs (out of turn, as an Allow job's would): claimed like the
    # dispatcher claims it, then the steps recorded as the supervisor records them.
    run_id = triggered[0].id
    now = container.clock()
    assert container.store.runs.claim_queued(run_id, exclusive=False, cap=100, now=now)
    assert container.store.runs.mark_running(run_id, now, now)
    record = container.store.runs.record(run_id)
    assert record is not None and len(record.steps) == 4
    steps = record.steps
    failed_node = NodeSummary(
        unique_id="model.shop.broken_orders",
        name="broken_orders",
        resource_type="model",
        status="error",
        message="Binder Error: column <amount> not found",
        step=1,
    )
    _run_step(container, run_id, steps, 0, "freshness output: sources are fresh\n")
    steps[0].status, steps[0].exit_code, steps[0].duration_seconds = "success", 0, 4.1
    _run_step(container, run_id, steps, 1, "build output: ERROR broken_orders\n")
    steps[1].status, steps[1].exit_code, steps[1].duration_seconds = "failed", 1, 41.2
    steps[2].status = "skipped"
    container.store.runs.append_log(
        run_id, "[runyard] step 3 (dbt test) skipped\n", 10**7, container.clock()
    )
    _run_step(container, run_id, steps, 3, "docs output: catalog written\n")
    steps[3].status, steps[3].exit_code, steps[3].duration_seconds = "success", 0, 7.5
    container.store.runs.set_steps(run_id, steps, container.clock(), results=[failed_node])
    assert container.store.runs.finish(
        run_id,
        status="failed",
        end_time=container.clock(),
        exit_code=1,
        error="Step 2 of 4 (dbt build) failed with exit code 1.",
        results=[failed_node],
        now=container.clock(),
    )
    return StepsWorld(
        job_id=job.id,
        environment_id=env.id,
        steps_run_id=run_id,
        queued_run_ids=[r.id for r in triggered[1:]],
        blocker_run_id=blocker.id,
    )
