"""Scheduled fires queue on Kubernetes (the emulator, real HTTP): every CronJob makes its Jobs
suspended; the tracker records each fire's run and resumes its Job when the run may start
(the job's Queue policy, the org's max_concurrent_runs), else the run waits ``queued`` and
the queue resumes the Job later. Cancelling a queued fire deletes its Job; a restart of
runyard resumes the queue where it was (docs/queues.md#kubernetes)."""

# ruff: noqa: F811 - the fixtures imported from the support module are test parameters here
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.container import Container
from app.ids import to_text
from tests.integration.test_k8s_env import Kube, emulator, make_emulator  # noqa: F401
from tests.integration.test_k8s_tracker_support import (  # noqa: F401 - fixtures
    Tracked,
    tracked,
    tracked_app,
)
from tests.unit.test_k8s_deploy import NEEDED

Obj = dict[str, Any]
SLOT = datetime(2026, 4, 28, 2, tzinfo=UTC)


def _slot(i: int) -> datetime:
    return SLOT + timedelta(minutes=i)


def _deploy(tracked: Tracked, project_id: str) -> None:
    response = tracked.app.client.post(
        f"/api/v1/projects/{project_id}/deploy", headers=tracked.app.admin
    )
    assert response.status_code == 200, response.text


def _suspended(tracked: Tracked, name: str) -> bool:
    job = tracked.kube.job(name)
    assert job is not None, f"the Job {name} is gone"
    return (job.get("spec") or {}).get("suspend") is True


def _run_of(tracked: Tracked, name: str, timeout: float = 10.0) -> Obj:
    """The run the tracker recorded for the scheduled Job ``name``."""
    store = tracked.app.container.store
    deadline = time.monotonic() + timeout
    while (run := store.runs.by_k8s_job(tracked.ns, name)) is None:
        assert time.monotonic() < deadline, f"no run was recorded for the Job {name}"
        time.sleep(0.02)
    return tracked.run(run.id)


def _wait_resumed(tracked: Tracked, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _suspended(tracked, name):
        assert time.monotonic() < deadline, f"the Job {name} was not resumed"
        time.sleep(0.02)


def test_a_queue_jobs_cronjob_allows_fires_and_makes_suspended_jobs(tracked: Tracked) -> None:
    project = tracked.project()
    queue = tracked.job(project["id"], name="queued", concurrency_policy="Queue")
    forbid = tracked.job(project["id"], name="forbid")
    _deploy(tracked, project["id"])
    cronjobs = {c["metadata"]["name"]: c for c in tracked.fake.list("cronjobs", tracked.ns)}
    spec = cronjobs["analytics-queued"]["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["jobTemplate"]["spec"]["suspend"] is True
    # Every CronJob holds its Jobs for runyard (the org cap); Forbid stays Forbid.
    other = cronjobs["analytics-forbid"]["spec"]
    assert other["concurrencyPolicy"] == "Forbid"
    assert other["jobTemplate"]["spec"]["suspend"] is True
    assert queue["id"] != forbid["id"]
    # The reconcile sees the rendered object as the live one: nothing to write.
    report = tracked.app.container.executor.reconcile()  # type: ignore[attr-defined]
    assert (report.created, report.updated, report.failed) == (0, 0, 0)
    # A live jobTemplate edited to run at once is drift, put back.
    tracked.kube.edit_cronjob(
        "analytics-queued", {"spec": {"jobTemplate": {"spec": {"suspend": False}}}}
    )
    edited = tracked.kube.cronjob("analytics-queued")
    assert edited is not None and edited["spec"]["jobTemplate"]["spec"]["suspend"] is False
    assert tracked.app.container.executor.reconcile().updated == 1  # type: ignore[attr-defined]
    restored = tracked.kube.cronjob("analytics-queued")
    assert restored is not None and restored["spec"]["jobTemplate"]["spec"]["suspend"] is True


def test_scheduled_fires_queue_and_start_one_after_another(tracked: Tracked) -> None:
    tracked.app.container.queue.start()
    project = tracked.project()
    job = tracked.job(project["id"], concurrency_policy="Queue")
    _deploy(tracked, project["id"])
    first = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", _slot(0))
    assert _run_of(tracked, first)["status"] in ("pending", "running")
    _wait_resumed(tracked, first)  # room: resumed at once
    tracked.fake.start_job(tracked.ns, first)
    tracked.wait_status(_run_of(tracked, first)["id"], "running")

    # Three fires while the first runs: Kubernetes makes their Jobs (Allow), suspended.
    fire = tracked.fake.fire_cronjob
    names = [fire(tracked.ns, "analytics-nightly", _slot(i)) for i in (1, 2, 3)]
    runs = [_run_of(tracked, name) for name in names]
    assert [r["status"] for r in runs] == ["queued"] * 3
    assert [r["queue_position"] for r in runs] == [1, 2, 3]
    assert [r["triggered_by"] for r in runs] == ["scheduled"] * 3
    assert all(_suspended(tracked, name) for name in names)
    assert all(not tracked.fake.job_pods(tracked.ns, name) for name in names)  # no pod
    status = tracked.app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/status", headers=tracked.app.admin
    ).json()
    assert status["queued_runs"] == 3

    tracked.fake.finish_job(tracked.ns, first)
    for index, name in enumerate(names):
        _wait_resumed(tracked, name)
        for later in names[index + 1 :]:
            assert _suspended(tracked, later)  # still waiting its turn
        tracked.fake.run_job(tracked.ns, name)
        tracked.wait_status(runs[index]["id"], "success")
    ended = [tracked.wait_status(r["id"], "success") for r in runs]
    starts = [r["start_time"] for r in ended]
    assert starts == sorted(starts)


def test_the_org_cap_holds_scheduled_fires_of_two_jobs(tracked: Tracked) -> None:
    tracked.app.container.queue.start()
    assert tracked.app.container.store.orgs.set_max_concurrent_runs("acme", 1)
    project = tracked.project()
    tracked.job(project["id"], name="one", concurrency_policy="Allow")
    tracked.job(project["id"], name="two", concurrency_policy="Allow")
    _deploy(tracked, project["id"])
    a = tracked.fake.fire_cronjob(tracked.ns, "analytics-one", _slot(0))
    _wait_resumed(tracked, a)
    b = tracked.fake.fire_cronjob(tracked.ns, "analytics-two", _slot(0))
    c = tracked.fake.fire_cronjob(tracked.ns, "analytics-one", _slot(1))
    assert _run_of(tracked, b)["status"] == "queued"
    assert _run_of(tracked, c)["status"] == "queued"
    time.sleep(0.5)
    assert _suspended(tracked, b) and _suspended(tracked, c)  # the cap (1) holds them

    tracked.fake.run_job(tracked.ns, a)
    tracked.wait_status(_run_of(tracked, a)["id"], "success")
    _wait_resumed(tracked, b)  # the oldest waiting run of the org, whichever job
    assert _suspended(tracked, c)
    tracked.fake.run_job(tracked.ns, b)
    tracked.wait_status(_run_of(tracked, b)["id"], "success")
    _wait_resumed(tracked, c)
    tracked.fake.run_job(tracked.ns, c)
    tracked.wait_status(_run_of(tracked, c)["id"], "success")


def test_cancelling_a_queued_scheduled_run_deletes_its_job(tracked: Tracked) -> None:
    tracked.app.container.queue.start()
    project = tracked.project()
    tracked.job(project["id"], concurrency_policy="Queue")
    _deploy(tracked, project["id"])
    first = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", _slot(0))
    _wait_resumed(tracked, first)
    second = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", _slot(1))
    run = _run_of(tracked, second)
    assert run["status"] == "queued"
    response = tracked.app.client.post(
        f"/api/v1/runs/{run['id']}/cancel", headers=tracked.app.admin
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert tracked.kube.job(second) is None  # deleted: it can never run
    tracked.fake.run_job(tracked.ns, first)
    tracked.wait_status(_run_of(tracked, first)["id"], "success")
    time.sleep(0.5)
    assert tracked.run(run["id"])["status"] == "cancelled"  # not "lost": runyard deleted it
    # Another org sees nothing of it.
    other = tracked.app.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=tracked.app.other)
    assert other.status_code == 404


def test_a_restart_resumes_the_queue_of_suspended_jobs(
    emulator: Kube, container_factory: Callable[..., Container]
) -> None:
    with tracked_app(emulator, container_factory) as before:
        before.app.container.queue.start()
        project = before.project()
        before.job(project["id"], concurrency_policy="Queue")
        _deploy(before, project["id"])
        first = before.fake.fire_cronjob(before.ns, "analytics-nightly", _slot(0))
        _wait_resumed(before, first)
        names = [before.fake.fire_cronjob(before.ns, "analytics-nightly", _slot(i)) for i in (1, 2)]
        queued = [_run_of(before, name) for name in names]
        assert [r["status"] for r in queued] == ["queued", "queued"]
        database = before.app.container.settings.database
        before.app.container.stop()
    # The first waiting run as a process killed between claiming it and resuming its Job
    # leaves it: pending, its Job still suspended.
    with sqlite3.connect(database) as db:
        claimed = to_text(datetime.now(UTC) - timedelta(minutes=1))
        db.execute(
            "UPDATE runs SET status = 'pending', created_at = ? WHERE id = ?",
            (claimed, queued[0]["id"]),
        )

    # While runyard is down, the running Job ends; the suspended ones wait.
    fake = emulator.fake
    assert fake is not None
    fake.run_job(emulator.ns(), first)
    assert all(
        ((emulator.job(name) or {}).get("spec") or {}).get("suspend") is True for name in names
    )

    with tracked_app(emulator, container_factory) as after:
        after.app.container.queue.start()
        first_run = after.app.container.store.runs.by_k8s_job(after.ns, first)
        assert first_run is not None
        after.wait_status(first_run.id, "success")
        _wait_resumed(after, names[0])
        assert _suspended(after, names[1])
        after.fake.run_job(after.ns, names[0])
        after.wait_status(queued[0]["id"], "success")
        _wait_resumed(after, names[1])
        after.fake.run_job(after.ns, names[1])
        after.wait_status(queued[1]["id"], "success")


def test_a_resume_the_api_cannot_serve_is_tried_again(tracked: Tracked) -> None:
    tracked.app.container.queue.start()
    project = tracked.project()
    tracked.job(project["id"], concurrency_policy="Queue")
    _deploy(tracked, project["id"])
    tracked.fake.reset_requests()
    # The API server answers 503 to the first three resumes: the run waits, never fails.
    tracked.fake.fail_next("PATCH", r"/jobs/analytics-nightly-", status=503, times=3)
    name = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", _slot(0))
    _wait_resumed(tracked, name)
    run = _run_of(tracked, name)
    assert run["status"] in ("queued", "pending")  # not failed
    tracked.fake.run_job(tracked.ns, name)
    tracked.wait_status(run["id"], "success")
    patches = [r for r in tracked.fake.requests if r.method == "PATCH"]
    assert len(patches) >= 4 and all(f"/namespaces/{tracked.ns}/jobs/" in r.path for r in patches)
    # The only write to a Job besides create and delete: allowed by deploy/rbac.yaml.
    assert "patch" in NEEDED[("batch", "jobs")]


def test_a_job_deleted_while_its_run_waited_fails_the_run(tracked: Tracked) -> None:
    tracked.app.container.queue.start()
    project = tracked.project()
    tracked.job(project["id"], concurrency_policy="Queue")
    _deploy(tracked, project["id"])
    first = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", _slot(0))
    _wait_resumed(tracked, first)
    second = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", _slot(1))
    run = _run_of(tracked, second)
    assert run["status"] == "queued"
    tracked.fake.delete("job", tracked.ns, second)  # someone else's kubectl delete
    tracked.fake.run_job(tracked.ns, first)
    # Whichever sees it first: the queue's resume finds no Job (failed, saying so), or the
    # tracker sees the deletion (lost). Never a run waiting for a Job that cannot come.
    ended = tracked.wait_status(run["id"], "failed", "lost")
    assert "deleted" in ended["error"] or "no longer exists" in ended["error"]
