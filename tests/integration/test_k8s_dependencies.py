"""Job chaining on the Kubernetes executor: A -> B on success, B -> C on failure, against the
emulator. Downstream runs are started by the tracker when an upstream Job ends."""

# ruff: noqa: F811 - the fixtures imported from the support module are test parameters here
from __future__ import annotations

import time
from typing import Any

from tests.integration.test_k8s_env import emulator, make_emulator  # noqa: F401
from tests.integration.test_k8s_tracker_support import (  # noqa: F401 - fixtures
    DBT_BROKEN,
    DBT_OK,
    Tracked,
    tracked,
    tracked_app,
)


def _first_run(tracked: Tracked, project_id: str, job_id: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (runs := tracked.runs_of(project_id, job_id)):
        assert time.monotonic() < deadline, f"job {job_id} never got a run"
        time.sleep(0.02)
    return runs[0]


def test_chain_runs_b_after_a_succeeds_and_c_after_b_fails(tracked: Tracked) -> None:
    project = tracked.project()
    a = tracked.job(project["id"], name="a-ingest", schedule=None)
    b = tracked.job(
        project["id"],
        name="b-build",
        schedule=None,
        depends_on=[{"job_id": a["id"], "on": "success"}],
    )
    c = tracked.job(
        project["id"],
        name="c-report",
        schedule=None,
        depends_on=[{"job_id": b["id"], "on": "failure"}],
    )
    d = tracked.job(
        project["id"],
        name="d-never",
        schedule=None,
        depends_on=[{"job_id": b["id"], "on": "success"}],
    )

    started = tracked.trigger(project["id"], a["id"])
    tracked.fake.run_job(tracked.ns, started["job_name"], exit_code=0, logs=DBT_OK)
    run_a = tracked.wait_status(started["job_run_id"], "success")

    run_b = _first_run(tracked, project["id"], b["id"])
    assert run_b["triggered_by"] == "dependency" and run_b["upstream_run_id"] == run_a["id"]
    # B is a real Kubernetes Job, labelled with its run, and it fails on the broken model.
    job_b = tracked.fake.get("jobs", tracked.ns, run_b["job_name"])
    assert job_b is not None
    assert job_b["metadata"]["labels"]["runyard.dev/run-id"] == run_b["id"]
    tracked.fake.run_job(tracked.ns, run_b["job_name"], exit_code=1, logs=DBT_BROKEN)
    assert tracked.wait_status(run_b["id"], "failed")["error"].startswith("model broken_orders")

    run_c = _first_run(tracked, project["id"], c["id"])
    assert run_c["triggered_by"] == "dependency" and run_c["upstream_run_id"] == run_b["id"]
    tracked.fake.run_job(tracked.ns, run_c["job_name"], exit_code=0, logs=DBT_OK)
    tracked.wait_status(run_c["id"], "success")
    tracked.settle()
    assert tracked.runs_of(project["id"], d["id"]) == []
