"""concurrency_policy Queue on the local executor: real dbt runs, driven through the API.

Five triggers of a Queue job run one after another in trigger order, never two at once;
the waiting runs are listed by ``GET /api/v1/runs?status=queued`` with their place, and a
queued run can be cancelled (the queue goes on without it).
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from tests.conftest import org_folder
from tests.conftest_examples import copy_example
from tests.integration.api_helpers import assert_problem
from tests.integration.test_local_executor import create_job, create_project, slow_model

Client = TestClient[Any]
Headers = dict[str, str]
SLOW = "dbt run --select slow"


@pytest.fixture
def dbt_project(tmp_path: Path) -> Path:
    project = copy_example("dbt_demo", org_folder(tmp_path) / "dbt_demo")
    slow_model(project, 1)
    return project


def trigger(client: Client, headers: Headers, project_id: str, job_id: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def run_of(client: Client, headers: Headers, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}", headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def wait_all_ended(
    client: Client, headers: Headers, run_ids: list[str], timeout: float = 240
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [run_of(client, headers, r) for r in run_ids]
        if all(r["is_terminal"] for r in runs):
            return runs
        assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in runs]
        time.sleep(0.3)


def assert_one_after_another(runs: list[dict[str, Any]]) -> None:
    """Each run started after the one before it ended: in order, never two at once."""
    for before, after in itertools.pairwise(runs):
        ended = datetime.fromisoformat(before["end_time"])
        started = datetime.fromisoformat(after["start_time"])
        assert started >= ended, (before["id"], before["end_time"], after["start_time"])


def test_five_triggers_run_one_after_another_in_order(
    container: Container, client: Client, admin_headers: Headers, dbt_project: Path
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id, command=SLOW, concurrency_policy="Queue")
    triggered = [trigger(client, admin_headers, project_id, job_id) for _ in range(5)]
    ids = [t["job_run_id"] for t in triggered]

    # The first starts at once, the others wait in line, each with its place.
    assert triggered[0]["status"] == "pending"
    assert [t["status"] for t in triggered[1:]] == ["queued"] * 4
    listing = client.get("/api/v1/runs", params={"status": "queued"}, headers=admin_headers)
    assert listing.status_code == 200, listing.text
    queued = listing.json()["runs"]
    by_id = {r["id"]: r["queue_position"] for r in queued}
    assert set(by_id) <= set(ids[1:]) and by_id  # some may have started meanwhile
    assert sorted(by_id.values()) == list(range(1, len(by_id) + 1))
    assert run_of(client, admin_headers, ids[0])["queue_position"] is None

    runs = wait_all_ended(client, admin_headers, ids)
    assert [r["status"] for r in runs] == ["success"] * 5, [r["error"] for r in runs]
    assert_one_after_another(runs)
    assert all(r["queue_position"] is None for r in runs)


def test_a_queued_run_can_be_cancelled_and_the_queue_goes_on(
    container: Container, client: Client, admin_headers: Headers, dbt_project: Path
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id, command=SLOW, concurrency_policy="Queue")
    ids = [trigger(client, admin_headers, project_id, job_id)["job_run_id"] for _ in range(3)]

    cancelled = client.post(f"/api/v1/runs/{ids[1]}/cancel", headers=admin_headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    # The last one moved up to the first place.
    assert run_of(client, admin_headers, ids[2])["queue_position"] in (1, None)
    again = client.post(f"/api/v1/runs/{ids[1]}/cancel", headers=admin_headers)
    assert_problem(again, 409)

    first, second, third = wait_all_ended(client, admin_headers, ids)
    assert (first["status"], second["status"], third["status"]) == (
        "success",
        "cancelled",
        "success",
    )
    assert second["start_time"] is None or second["exit_code"] is None
    assert_one_after_another([first, third])


def test_forbid_still_refuses_while_a_run_waits_and_viewers_cannot_cancel(
    container: Container,
    client: Client,
    admin_headers: Headers,
    viewer_headers: Headers,
    other_org_headers: Headers,
    dbt_project: Path,
) -> None:
    project_id = create_project(client, admin_headers)
    job_id = create_job(client, admin_headers, project_id, command=SLOW, concurrency_policy="Queue")
    ids = [trigger(client, admin_headers, project_id, job_id)["job_run_id"] for _ in range(2)]
    assert run_of(client, admin_headers, ids[1])["status"] == "queued"
    # Another org does not see the queue, nor can it cancel a queued run.
    assert client.get(f"/api/v1/runs/{ids[1]}", headers=other_org_headers).status_code == 404
    theirs = client.get("/api/v1/runs", params={"status": "queued"}, headers=other_org_headers)
    assert theirs.json()["runs"] == []
    assert_problem(client.post(f"/api/v1/runs/{ids[1]}/cancel", headers=other_org_headers), 404)
    assert_problem(client.post(f"/api/v1/runs/{ids[1]}/cancel", headers=viewer_headers), 403)
    wait_all_ended(client, admin_headers, ids)
