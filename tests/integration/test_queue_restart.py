"""The queue survives a kill -9: five triggers of a Queue job on a real ``runyard serve``
process, killed (SIGKILL) while the queue is half done and started again: all five end, in
trigger order, never two at once. The run that was running when runyard died is handled
by the executor's restart logic (re-attached to its dbt process); then the queue goes on."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import org_folder
from tests.conftest_examples import copy_example
from tests.integration.test_local_executor import slow_model
from tests.integration.test_silence import Server, api


def _runs(server: Server, token: str, ids: list[str]) -> list[dict[str, Any]]:
    return [api(server, token, "GET", f"/api/v1/runs/{run_id}") for run_id in ids]


@pytest.mark.slow
def test_five_queued_runs_survive_a_kill_9_in_order_without_overlap(tmp_path: Path) -> None:
    project_dir = copy_example("dbt_demo", org_folder(tmp_path) / "dbt_demo")
    slow_model(project_dir, 2)
    server = Server(tmp_path)
    token = server.token()
    server.start()
    try:
        project = api(
            server,
            token,
            "POST",
            "/api/v1/projects",
            json={"name": "analytics", "kind": "dbt", "path": "dbt_demo"},
        )
        job = api(
            server,
            token,
            "POST",
            f"/api/v1/projects/{project['id']}/jobs",
            json={
                "name": "refresh",
                "command": "dbt run --select slow",
                "concurrency_policy": "Queue",
            },
        )
        path = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger"
        triggered = [api(server, token, "POST", path, json={}) for _ in range(5)]
        ids = [t["job_run_id"] for t in triggered]
        assert [t["status"] for t in triggered] == ["pending"] + ["queued"] * 4
        assert [t["queue_position"] for t in triggered[1:]] == [1, 2, 3, 4]
        # Half way: the first has ended and the second is running.
        deadline = time.monotonic() + 180
        while True:
            runs = _runs(server, token, ids)
            if runs[0]["is_terminal"] and runs[1]["status"] == "running":
                break
            assert time.monotonic() < deadline, [r["status"] for r in runs]
            time.sleep(0.2)
    finally:
        server.kill()
    at_kill = _statuses_after_kill(tmp_path, ids)
    queued_at_kill = [run_id for run_id, status in at_kill if status == "queued"]
    assert len(queued_at_kill) >= 2, "the kill came too late to test the queue"

    server.start()
    try:
        deadline = time.monotonic() + 300
        while True:
            runs = _runs(server, token, ids)
            if all(r["is_terminal"] for r in runs):
                break
            assert time.monotonic() < deadline, [r["status"] for r in runs]
            time.sleep(0.3)
        listed = api(server, token, "GET", "/api/v1/runs", params={"status": "queued"})
    finally:
        server.stop()
    assert listed["runs"] == []
    statuses = [r["status"] for r in runs]
    # The one running at the kill: re-attached (success) or, if its process was gone, lost.
    assert statuses[0] == "success" and statuses[1] in ("success", "lost"), statuses
    assert statuses[2:] == ["success"] * 3, [r["error"] for r in runs]
    for before, after in itertools.pairwise(runs):
        ended = datetime.fromisoformat(before["end_time"])
        started = datetime.fromisoformat(after["start_time"])
        assert started >= ended, (before["id"], before["end_time"], after["start_time"])


def _statuses_after_kill(folder: Path, ids: list[str]) -> list[tuple[str, str]]:
    """(run id, status) as the killed server left them in the database."""
    import sqlite3

    with sqlite3.connect(folder / "runyard.db") as conn:
        found = dict(conn.execute("SELECT id, status FROM runs").fetchall())
    return [(run_id, found[run_id]) for run_id in ids]
