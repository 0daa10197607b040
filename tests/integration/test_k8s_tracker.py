"""The run tracker on the emulator (real HTTP, the real client): runs follow their Kubernetes
Jobs to the end with their logs; scheduled Jobs get one run each; timeouts, cancels, TTL
deletion and vanished Jobs end as users expect."""

# ruff: noqa: F811 - the fixtures imported from the support module are test parameters here
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from app.container import Container
from app.models import RunRecord
from tests.integration.test_k8s_env import Kube, emulator, make_emulator  # noqa: F401
from tests.integration.test_k8s_tracker_support import (  # noqa: F401 - fixtures
    DBT_BROKEN,
    Obj,
    Tracked,
    tracked,
    tracked_app,
)

SLOT = datetime(2026, 4, 28, 2, 0, tzinfo=UTC)


def test_a_manual_run_is_followed_to_success_with_its_logs(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    run_id, name = body["job_run_id"], body["job_name"]
    tracked.fake.start_job(tracked.ns, name, logs="Running with dbt=1.11.16\n")
    running = tracked.wait_status(run_id, "running")
    assert running["start_time"] is not None
    # While it runs, its logs come from the pod.
    assert tracked.logs(run_id) == "Running with dbt=1.11.16\n"
    tracked.fake.finish_job(tracked.ns, name, logs="Done. PASS=3 WARN=0 ERROR=0\n")
    run = tracked.wait_status(run_id, "success")
    assert run["exit_code"] == 0 and run["error"] is None and run["end_time"] is not None
    assert run["duration_seconds"] >= 0 and run["start_time"] == running["start_time"]
    assert tracked.logs(run_id) == "Running with dbt=1.11.16\nDone. PASS=3 WARN=0 ERROR=0\n"


def test_logs_are_stored_before_the_run_is_finished(tracked: Tracked) -> None:
    """Notifications (hooks in the finishing transaction) and the API see the logs."""
    store = tracked.app.container.store
    seen: list[tuple[str, str]] = []

    def hook(record: RunRecord) -> None:
        seen.append((record.status, store.runs.read_log(record.id)))

    tracked.app.container.tracker.on_finished_tx.append(hook)
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.run_job(tracked.ns, body["job_name"], exit_code=1, logs=DBT_BROKEN)
    tracked.wait_status(body["job_run_id"], "failed")
    assert seen == [("failed", DBT_BROKEN)]


def test_a_failed_dbt_run_names_its_model(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None, command="dbt run -s broken_orders")
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.run_job(tracked.ns, body["job_name"], exit_code=1, logs=DBT_BROKEN)
    run = tracked.wait_status(body["job_run_id"], "failed")
    assert run["exit_code"] == 1
    assert run["error"].startswith("model broken_orders failed: Conversion Error: Could not"), run[
        "error"
    ]
    (result,) = run["results"]
    assert (result["name"], result["resource_type"], result["status"]) == (
        "broken_orders",
        "model",
        "error",
    )
    assert tracked.logs(body["job_run_id"]) == DBT_BROKEN


def test_a_retried_job_keeps_every_attempts_log_and_says_how_many(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None, retries=2)
    body = tracked.trigger(project["id"], job["id"])
    # Exit code 3 is not one of the no-retry codes: the Job tries three times.
    tracked.fake.run_job(tracked.ns, body["job_name"], exit_code=3, logs="boom: disk full\n")
    run = tracked.wait_status(body["job_run_id"], "failed")
    assert run["exit_code"] == 3
    assert run["error"] == "dbt exited with code 3: boom: disk full (after 3 attempts)"
    text = tracked.logs(body["job_run_id"])
    pods = [p["metadata"]["name"] for p in tracked.fake.job_pods(tracked.ns, body["job_name"])]
    assert text == "".join(
        f"==> attempt {i} of 3: {pod}/main <==\nboom: disk full\n" for i, pod in enumerate(pods, 1)
    )


def test_an_oom_killed_run_says_so(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.run_job(
        tracked.ns, body["job_name"], exit_code=137, reason="OOMKilled", logs="Running\n"
    )
    run = tracked.wait_status(body["job_run_id"], "failed")
    assert run["exit_code"] == 137
    assert run["error"].startswith("OOMKilled: dbt exited with code 137 (killed by SIGKILL)")


def test_deadline_exceeded_is_timed_out(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None, timeout_seconds=600)
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.start_job(tracked.ns, body["job_name"], logs="Running\n")
    tracked.wait_status(body["job_run_id"], "running")
    tracked.fake.finish_job(tracked.ns, body["job_name"], reason="DeadlineExceeded")
    run = tracked.wait_status(body["job_run_id"], "timed_out")
    assert run["error"] == "The run took longer than its timeout of 600 seconds and was stopped."
    assert run["is_failed"] is True and run["end_time"] is not None


def test_a_scheduled_job_gets_exactly_one_run(tracked: Tracked) -> None:
    project = tracked.project()
    tracked.app.deploy(project["id"])
    job = tracked.job(project["id"], timezone="Europe/Berlin")
    name = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", SLOT)
    runs = _wait_runs(tracked, project["id"], job["id"], 1)
    # The watch saw it; resyncs racing each other and the watch change nothing.
    for _ in range(3):
        tracked.tracker.resync()
    tracked.settle()
    (run,) = tracked.runs_of(project["id"], job["id"])
    assert run == runs[0]
    assert run["triggered_by"] == "scheduled" and run["job_name"] == name
    assert run["scheduled_for"] == "2026-04-28T02:00:00Z"  # the annotation says 04:00+02:00
    assert run["cronjob_name"] == "analytics-nightly" and run["namespace"] == tracked.ns
    assert run["status"] == "pending"
    tracked.fake.run_job(tracked.ns, name, logs="scheduled and done\n")
    assert tracked.wait_status(run["id"], "success")["triggered_by"] == "scheduled"
    assert tracked.logs(run["id"]) == "scheduled and done\n"
    assert len(tracked.runs_of(project["id"], job["id"])) == 1


def test_a_scheduled_job_is_recorded_while_a_manual_run_is_active(tracked: Tracked) -> None:
    """Forbid keeps runyard from starting a second run, but the CronJob does not know the
    manual run: the Job it created runs, so it has a run record."""
    project = tracked.project()
    tracked.app.deploy(project["id"])
    job = tracked.job(project["id"])
    manual = tracked.trigger(project["id"], job["id"])
    tracked.fake.start_job(tracked.ns, manual["job_name"])
    tracked.wait_status(manual["job_run_id"], "running")
    name = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", SLOT)
    runs = _wait_runs(tracked, project["id"], job["id"], 2)
    scheduled = next(r for r in runs if r["job_name"] == name)
    tracked.fake.run_job(tracked.ns, name)
    tracked.wait_status(scheduled["id"], "success")


def test_cancel_while_running_stays_cancelled_and_after_the_end_is_409(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.start_job(tracked.ns, body["job_name"], logs="working\n")
    tracked.wait_status(body["job_run_id"], "running")
    url = f"/api/v1/runs/{body['job_run_id']}/cancel"
    response = tracked.app.client.post(url, headers=tracked.app.admin)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert tracked.kube.job(body["job_name"]) is None  # deleted, with its pods
    time.sleep(1.5)  # past the grace the tracker gives a deletion before calling it lost
    tracked.settle()
    run = tracked.run(body["job_run_id"])
    assert run["status"] == "cancelled" and run["error"] == "cancelled by a user"
    again = tracked.app.client.post(url, headers=tracked.app.admin)
    assert again.status_code == 409, again.text

    done = tracked.trigger(project["id"], job["id"])
    tracked.fake.run_job(tracked.ns, done["job_name"], logs="ok\n")
    tracked.wait_status(done["job_run_id"], "success")
    late = tracked.app.client.post(
        f"/api/v1/runs/{done['job_run_id']}/cancel", headers=tracked.app.admin
    )
    assert late.status_code == 409 and "already ended" in late.json()["detail"]


def test_logs_outlive_the_job_deleted_by_its_ttl(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.run_job(tracked.ns, body["job_name"], logs="kept forever\n")
    tracked.wait_status(body["job_run_id"], "success")
    assert tracked.fake.run_ttl_controller() == [f"{tracked.ns}/{body['job_name']}"]
    assert tracked.kube.job(body["job_name"]) is None
    time.sleep(1.2)
    tracked.settle()
    run = tracked.run(body["job_run_id"])
    assert run["status"] == "success"
    assert tracked.logs(body["job_run_id"]) == "kept forever\n"


def test_a_job_deleted_before_its_end_is_lost(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.start_job(tracked.ns, body["job_name"], logs="half way\n")
    tracked.wait_status(body["job_run_id"], "running")
    tracked.fake.delete("job", tracked.ns, body["job_name"])  # someone's kubectl delete
    run = tracked.wait_status(body["job_run_id"], "lost")
    assert "was deleted before it finished" in run["error"]
    assert run["is_failed"] is True


@pytest.fixture
def small_cap(emulator: Kube, container_factory: Callable[..., Container]) -> Iterator[Tracked]:
    def factory(**overrides: object) -> Container:
        return container_factory(**overrides, log_cap_bytes=4096)

    with tracked_app(emulator, factory) as result:
        yield result


def test_a_huge_log_keeps_its_head_and_tail(small_cap: Tracked) -> None:
    project = small_cap.project()
    job = small_cap.job(project["id"], schedule=None)
    body = small_cap.trigger(project["id"], job["id"])
    lines = "".join(f"line {i:05d}\n" for i in range(20_000))  # 220 kB
    small_cap.fake.run_job(small_cap.ns, body["job_name"], exit_code=1, logs=lines)
    run = small_cap.wait_status(body["job_run_id"], "failed")
    text = small_cap.logs(body["job_run_id"])
    assert len(text.encode()) <= 4096
    assert text.startswith("line 00000\n") and text.endswith("line 19999\n")
    assert "bytes of log were dropped here" in text
    assert run["error"] == "dbt exited with code 1: line 19999"


def test_a_job_of_an_unknown_job_id_is_ignored_and_logged(
    tracked: Tracked, caplog: pytest.LogCaptureFixture
) -> None:
    project = tracked.project()
    tracked.app.deploy(project["id"])
    job = tracked.job(project["id"])
    response = tracked.app.client.delete(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}", headers=tracked.app.admin
    )
    assert response.status_code == 204
    cronjob = {
        "metadata": {"name": "analytics-nightly", "labels": _labels(project["id"], job["id"])},
        "spec": {"schedule": "0 2 * * *", "jobTemplate": _job_template(project["id"], job["id"])},
    }
    tracked.kube.create_cronjob(cronjob)  # left behind, or recreated by hand
    with caplog.at_level(logging.WARNING, logger="runyard.k8s_tracker"):
        name = tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", SLOT)
        tracked.fake.run_job(tracked.ns, name)
        time.sleep(0.3)
        tracked.settle()
    assert tracked.app.container.store.runs.by_k8s_job(tracked.ns, name) is None
    warnings = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1 and f"its job {job['id']} no longer exists" in warnings[0]


def _labels(project_id: str, job_id: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "runyard",
        "runyard.dev/org": "acme",
        "runyard.dev/project-id": project_id,
        "runyard.dev/job-id": job_id,
    }


def _job_template(project_id: str, job_id: str) -> dict[str, object]:
    return {
        "metadata": {"labels": _labels(project_id, job_id)},
        "spec": {
            "template": {
                "metadata": {"labels": _labels(project_id, job_id)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "ghcr.io/acme/analytics:1.4"}],
                },
            }
        },
    }


def _wait_runs(tracked: Tracked, project_id: str, job_id: str, count: int) -> list[Obj]:
    deadline = time.monotonic() + 10
    while True:
        runs = tracked.runs_of(project_id, job_id)
        if len(runs) >= count:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(runs)} runs, not {count}")
        time.sleep(0.02)
