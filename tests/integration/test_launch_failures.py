"""A run whose launch fails for a reason that is not a runyard error (a NUL byte where the
operating system refuses one) ends `failed` with a readable error, the API answers a
problem instead of a 500, and nothing stays `pending`: a Forbid job is not blocked.

The projects are written through the store, as a database from before today's save-time
checks would hold them; the runs are real local launches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.factories import saved_project
from tests.integration.api_helpers import assert_problem

H = dict[str, str]


@pytest.fixture
def http(live_server: LiveServer) -> httpx.Client:
    token, _ = live_server.container.tokens.create("acme", "admin")
    return httpx.Client(
        base_url=live_server.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    )


def _project(live_server: LiveServer, **fields: Any) -> str:
    store = live_server.container.store
    org = store.orgs.get_or_create("acme")
    return saved_project(store, org_id=org.id, org_slug=org.slug, name="broken", **fields).id


def _job(http: httpx.Client, project_id: str) -> str:
    response = http.post(
        f"/api/v1/projects/{project_id}/jobs",
        json={"name": "debug", "command": "dbt debug", "concurrency_policy": "Forbid"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def broken_project(live_server: LiveServer, dbt_project_dir: Path) -> str:
    # (A NUL byte in an old record's environment no longer fails a launch: runs receive only
    # the variables today's rules accept, see tests/unit/test_env_allowlist.py.)
    return _project(live_server, path=str(dbt_project_dir) + "\x00/elsewhere")


def _runs(http: httpx.Client, project_id: str, job_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/v1/projects/{project_id}/jobs/{job_id}/runs")
    assert response.status_code == 200, response.text
    return list(response.json()["runs"])


def test_a_launch_failure_is_a_problem_and_a_failed_run(
    http: httpx.Client, broken_project: str
) -> None:
    job_id = _job(http, broken_project)
    trigger = f"/api/v1/projects/{broken_project}/jobs/{job_id}/trigger"
    first = http.post(trigger)
    problem = assert_problem(first, first.status_code)
    assert 400 <= first.status_code < 500
    [run] = _runs(http, broken_project, job_id)
    assert run["status"] == "failed" and run["is_terminal"]
    assert run["error"].startswith("runyard could not start the run: ")
    assert run["id"] in problem["detail"] or run["error"].split(": ", 1)[1] in problem["detail"]
    assert "Traceback" not in run["error"]
    # Forbid does not see a stuck pending run: the next trigger is tried again (and fails the
    # same way) instead of a 409 until a restart.
    second = http.post(trigger)
    assert second.status_code == first.status_code, second.text
    statuses = [r["status"] for r in _runs(http, broken_project, job_id)]
    assert statuses == ["failed", "failed"]
    # A rerun of the failed run goes the same way.
    rerun = http.post(f"/api/v1/runs/{run['id']}/rerun")
    assert 400 <= rerun.status_code < 500, rerun.text
    assert all(r["status"] == "failed" for r in _runs(http, broken_project, job_id))


def test_an_unexpected_launch_error_is_told_in_plain_words(
    http: httpx.Client,
    live_server: LiveServer,
    dbt_project_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operating system's own refusal (here the executor meets a NUL byte the checks
    before it did not catch) becomes a readable reason, not a 500 and not a traceback."""
    project_id = _project(live_server, path=str(dbt_project_dir))
    job_id = _job(http, project_id)

    def refuse(run: object) -> None:
        raise ValueError("embedded null byte")

    monkeypatch.setattr(live_server.container.executor, "launch", refuse)
    response = http.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger")
    problem = assert_problem(response, 422)
    assert "NUL byte" in problem["detail"] and problem["title"] == "Run could not start"
    [run] = _runs(http, project_id, job_id)
    assert run["status"] == "failed" and "NUL byte" in run["error"]
