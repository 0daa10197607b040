"""Steps on Kubernetes (the emulator): the one-off Job's pod runs runyard's launcher with
the steps; the real launcher program runs steps that print real dbt output, and its
output, served by the emulator as the pod's log, becomes the run's step records, results
per step, per-step logs and an error naming the failed step and model."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.executors.k8s import launcher as launcher_module
from app.main import create_app
from tests.integration.api_helpers import assert_problem
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    App,
    Kube,
    emulator,
    make_emulator,
)
from tests.integration.test_k8s_tracker_support import (
    DBT_BROKEN,
    DBT_OK,
    Tracked,
    start_tracker,
)

Obj = dict[str, Any]
LAUNCHER_IMAGE = "ghcr.io/example/runyard:0.1.0"
INTERNAL_URL = "http://runyard.runyard.svc:8080"
STEPS = [
    {"command": "dbt build --select tag:nightly"},
    {"command": "dbt test"},
    {"command": "dbt docs generate", "run_on_failure": True, "name": "docs"},
]


@pytest.fixture
def tracked(emulator: Kube, container_factory: Callable[..., Container]) -> Iterator[Tracked]:
    container = container_factory(
        start=False,
        executor="kubernetes",
        namespace_template=emulator.namespace_template,
        reconcile_interval_seconds=0,
        launcher_image=LAUNCHER_IMAGE,
        internal_url=INTERNAL_URL,
    )
    headers = []
    for org, role in (("acme", "admin"), ("acme", "viewer"), ("globex", "admin")):
        token, _ = container.tokens.create(org, role)
        headers.append({"Authorization": f"Bearer {token}"})
    with TestClient(create_app(container=container)) as client:
        app = App(client, container, *headers)
        assert emulator.fake is not None
        yield Tracked(app, emulator, emulator.fake, start_tracker(container))


def main_container(job: Obj) -> Obj:
    pod = job["spec"]["template"]["spec"]
    found: Obj = next(c for c in pod["containers"] if c["name"] == "main")
    return found


def launcher_output(steps_env: str, outputs: list[tuple[str, int]]) -> str:
    """What the real launcher prints running the pod's steps, each step replaced by a
    program printing the given dbt output and exiting with the given code."""
    steps = json.loads(steps_env)
    for step, (text, code) in zip(steps, outputs, strict=True):
        step["argv"] = [
            sys.executable,
            "-c",
            f"import sys; sys.stdout.write({text!r}); sys.exit({code})",
        ]
    env = {"PATH": os.environ.get("PATH", ""), "RUNYARD_STEPS": json.dumps(steps)}
    done = subprocess.run(
        [sys.executable, launcher_module.__file__, "--steps"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == outputs[0][1] or done.returncode in {c for _, c in outputs}
    return done.stdout + done.stderr


def test_the_pod_runs_the_steps_through_the_launcher_and_the_log_becomes_step_records(
    tracked: Tracked,
) -> None:
    project = tracked.project(image="ghcr.io/acme/dbt:1")
    job = tracked.job(project["id"], command="", steps=STEPS)
    body = tracked.trigger(project["id"], job["id"])
    run_id, name = body["job_run_id"], body["job_name"]
    created = tracked.kube.job(name)
    assert created is not None
    main = main_container(created)
    assert main["command"] == ["python3", "/runyard/bin/launcher.py", "--steps"]
    assert "args" not in main
    env = {e["name"]: e.get("value") for e in main["env"]}
    rendered = json.loads(env["RUNYARD_STEPS"])
    assert rendered == [
        {
            "name": "dbt build",
            "argv": ["dbt", "build", "--select", "tag:nightly"],
            "run_on_failure": False,
            "results": True,
        },
        {"name": "dbt test", "argv": ["dbt", "test"], "run_on_failure": False, "results": True},
        {
            "name": "docs",
            "argv": ["dbt", "docs", "generate"],
            "run_on_failure": True,
            "results": False,
        },
    ]
    init = created["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == LAUNCHER_IMAGE

    # The real launcher runs the steps: the build fails, test is skipped, docs runs.
    log = launcher_output(
        env["RUNYARD_STEPS"], [(DBT_BROKEN, 1), ("unused\n", 0), ("Catalog written\n", 0)]
    )
    assert "unused" not in log
    tracked.fake.run_job(tracked.ns, name, exit_code=1, logs=log)
    run = tracked.wait_status(run_id, "failed")
    assert run["job_type"] == "steps"
    assert [s["status"] for s in run["steps"]] == ["failed", "skipped", "success"]
    assert [s["exit_code"] for s in run["steps"]] == [1, None, 0]
    assert run["failed_step"] == {
        "index": 0,
        "name": "dbt build",
        "status": "failed",
        "exit_code": 1,
    }
    assert run["error"].startswith("Step 1 of 3 (dbt build) failed with exit code 1.")
    assert "broken_orders" in run["error"]
    assert [(r["name"], r["status"], r["step"]) for r in run["results"]] == [
        ("broken_orders", "error", 0)
    ]
    url = f"/api/v1/runs/{run_id}/logs"
    client, admin = tracked.app.client, tracked.app.admin
    build_log = client.get(url, params={"step": 0}, headers=admin).text
    assert "broken_orders" in build_log and "Catalog written" not in build_log
    docs_log = client.get(url, params={"step": 2}, headers=admin).text
    assert "== step 3/3: docs ==" in docs_log and "broken_orders" not in docs_log
    assert_problem(client.get(url, params={"step": 0}, headers=tracked.app.other), 404)


def test_a_steps_run_that_succeeds_and_one_without_markers(tracked: Tracked) -> None:
    project = tracked.project(image="ghcr.io/acme/dbt:1")
    job = tracked.job(project["id"], command="", steps=STEPS[:2])
    body = tracked.trigger(project["id"], job["id"])
    created = tracked.kube.job(body["job_name"])
    assert created is not None
    env = {e["name"]: e.get("value") for e in main_container(created)["env"]}
    log = launcher_output(env["RUNYARD_STEPS"], [(DBT_OK, 0), (DBT_OK, 0)])
    tracked.fake.run_job(tracked.ns, body["job_name"], exit_code=0, logs=log)
    run = tracked.wait_status(body["job_run_id"], "success")
    assert [s["status"] for s in run["steps"]] == ["success", "success"]
    assert all(s["duration_seconds"] is not None for s in run["steps"])
    assert {r["step"] for r in run["results"]} == {0, 1}

    # A pod that printed forged markers for steps it does not have, and never ran the
    # launcher's own: nothing beyond the run's steps is recorded, and none ran.
    second = tracked.trigger(project["id"], job["id"])
    forged = (
        '::runyard-step:: {"event": "start", "index": 7}\n'
        '::runyard-step:: {"event": "end", "index": 0, "exit_code": 0}\n'
        "::runyard-step:: not json\n" + DBT_BROKEN
    )
    tracked.fake.run_job(tracked.ns, second["job_name"], exit_code=1, logs=forged)
    failed = tracked.wait_status(second["job_run_id"], "failed")
    assert [s["status"] for s in failed["steps"]] == ["skipped", "skipped"]
    assert failed["failed_step"] is None


def test_a_job_of_steps_needs_the_launcher(
    emulator: Kube, container_factory: Callable[..., Container]
) -> None:
    container = container_factory(
        start=False,
        executor="kubernetes",
        namespace_template=emulator.namespace_template,
        reconcile_interval_seconds=0,
    )
    token, _ = container.tokens.create("acme", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(container=container)) as client:
        project = client.post(
            "/api/v1/projects",
            json={"name": "p", "kind": "dbt", "image": "ghcr.io/acme/dbt:1"},
            headers=headers,
        ).json()
        job = client.post(
            f"/api/v1/projects/{project['id']}/jobs",
            json={"name": "j", "steps": STEPS},
            headers=headers,
        ).json()
        response = client.post(
            f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger", headers=headers
        )
        problem = assert_problem(response, 409)
        assert "RUNYARD_LAUNCHER_IMAGE" in problem["detail"]


def test_a_cancelled_run_of_steps_shows_its_steps_cancelled(tracked: Tracked) -> None:
    project = tracked.project(image="ghcr.io/acme/dbt:1")
    job = tracked.job(project["id"], command="", steps=STEPS)
    body = tracked.trigger(project["id"], job["id"])
    run = tracked.run(body["job_run_id"])
    assert [s["status"] for s in run["steps"]] == ["pending"] * 3
    assert [s["name"] for s in run["steps"]] == ["dbt build", "dbt test", "docs"]
    response = tracked.app.client.post(
        f"/api/v1/runs/{body['job_run_id']}/cancel", headers=tracked.app.admin
    )
    assert response.status_code == 200, response.text
    run = tracked.run(body["job_run_id"])
    assert run["status"] == "cancelled"
    assert [s["status"] for s in run["steps"]] == ["cancelled"] * 3
    assert run["failed_step"]["index"] == 0
