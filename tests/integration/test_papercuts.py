"""Small things a newcomer tripped over (issue 13), each checked end to end."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.logs import JsonFormatter
from app.main import create_app
from tests.integration.api_helpers import assert_problem, make_project
from tests.integration.test_local_executor import (
    _crash,
    create_job,
    create_project,
    dbt_project,  # noqa: F401  (a fixture)
    process_of,
    slow_model,
    trigger,
    wait_gone,
    wait_log,
    wait_terminal,
)

Headers = dict[str, str]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.slow
def test_a_run_that_ended_while_runyard_was_down_keeps_its_own_end_time(
    container_factory: Callable[..., Container],
    admin_headers: Headers,
    dbt_project: Path,  # noqa: F811
) -> None:
    slow_model(dbt_project, 2)
    first = container_factory()
    with TestClient(create_app(container=first)) as client:
        project_id = create_project(client, admin_headers)
        job_id = create_job(client, admin_headers, project_id, command="dbt run --select slow")
        run_id = trigger(client, admin_headers, project_id, job_id)
        wait_log(client, admin_headers, run_id, "START sql table model main.slow")
    pid = process_of(first, run_id)
    _crash(first)
    wait_gone(pid, timeout=60)  # dbt ends on its own while runyard is down
    gone = datetime.now(UTC)
    time.sleep(4)  # runyard stays down a while longer

    second = container_factory()
    with TestClient(create_app(container=second)) as client:
        run = wait_terminal(client, admin_headers, run_id)
    restarted = gone.timestamp() + 4
    assert run["status"] == "success"
    end = _time(run["end_time"])
    # Before the fix: the restart's time, over 4 s after dbt's own end.
    assert end.timestamp() <= gone.timestamp() + 0.5, (run["end_time"], gone)
    assert end >= _time(run["start_time"])
    assert run["duration_seconds"] < restarted - _time(run["start_time"]).timestamp() - 3


def test_local_deploy_answers_in_schedules_and_marks_jobs_in_sync(
    client: TestClient[Any], admin_headers: Headers
) -> None:
    project = make_project(client, admin_headers)
    base = f"/api/v1/projects/{project['id']}"
    for name, schedule in (("hourly", "0 * * * *"), ("manual", None)):
        response = client.post(
            f"{base}/jobs",
            json={"name": name, "command": "dbt build", "schedule": schedule},
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        assert response.json()["sync_state"] == "not_deployed"

    deployed = client.post(f"{base}/deploy", headers=admin_headers)
    assert deployed.status_code == 200, deployed.text
    body = deployed.json()
    assert "cronjobs" not in body  # there are none with the local executor
    assert body["schedules"] | {"errors": []} == {
        "created": 1,
        "updated": 0,
        "deleted": 0,
        "unchanged": 1,
        "failed": 0,
        "errors": [],
    }
    jobs = client.get(f"{base}/jobs", headers=admin_headers).json()["jobs"]
    assert {j["name"]: j["sync_state"] for j in jobs} == {"hourly": "in_sync", "manual": "in_sync"}

    undeployed = client.post(f"{base}/undeploy", headers=admin_headers)
    assert undeployed.status_code == 200, undeployed.text
    assert undeployed.json()["schedules"]["deleted"] == 1
    jobs = client.get(f"{base}/jobs", headers=admin_headers).json()["jobs"]
    assert {j["sync_state"] for j in jobs} == {"not_deployed"}


def test_validation_errors_name_the_field_and_list_allowed_values(
    client: TestClient[Any], admin_headers: Headers
) -> None:
    project = make_project(client, admin_headers)
    jobs = f"/api/v1/projects/{project['id']}/jobs"

    missing = client.post(jobs, json={"name": "nightly"}, headers=admin_headers)
    body = assert_problem(missing, 422, field="command")
    assert body["errors"] == [
        {
            "field": "command",
            "message": 'required: the dbt or SQLMesh command to run (e.g. "dbt build"), or '
            "steps, a list of commands run in order",
        }
    ]

    typo = client.post(
        jobs,
        json={"name": "nightly", "command": "dbt build", "scheduel": "0 2 * * *"},
        headers=admin_headers,
    )
    body = assert_problem(typo, 422, field="scheduel")
    assert body["errors"][0]["message"] == "unknown field; did you mean schedule?"
    assert "data" not in body["detail"]

    unknown = client.post(
        jobs, json={"name": "n", "command": "dbt build", "zzzz": 1}, headers=admin_headers
    )
    body = assert_problem(unknown, 422, field="zzzz")
    assert "known fields:" in body["errors"][0]["message"]
    assert "schedule" in body["errors"][0]["message"]

    enum = client.post(
        jobs,
        json={"name": "n", "command": "dbt build", "concurrency_policy": "Sometimes"},
        headers=admin_headers,
    )
    body = assert_problem(enum, 422, field="concurrency_policy")
    assert body["errors"][0]["message"].endswith("use one of: Allow, Forbid, Queue, Replace")

    kind = client.post(
        "/api/v1/projects", json={"name": "b", "kind": "dbtx"}, headers=admin_headers
    )
    body = assert_problem(kind, 422, field="kind")
    assert "use one of: dbt, sqlmesh" in body["errors"][0]["message"]

    patch = client.put(
        f"/api/v1/projects/{project['id']}", json={"kindd": 1}, headers=admin_headers
    )
    body = assert_problem(patch, 422, field="kindd")
    assert body["errors"][0]["message"] == "unknown field; did you mean kind?"


def test_json_logs_carry_no_colour_copy_of_the_message() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("uvicorn.error.papercut")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # As uvicorn logs its start-up: the message, and a copy with ANSI colours.
        logger.warning(
            "Uvicorn running on %s",
            "http://127.0.0.1:8080",
            extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m"},
        )
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue().strip()
    entry = json.loads(line)
    assert entry["message"] == "Uvicorn running on http://127.0.0.1:8080"
    assert "color_message" not in entry
    assert "\x1b" not in line and "\\u001b" not in line
