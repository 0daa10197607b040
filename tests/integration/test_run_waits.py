"""Waiting on a run without polling: GET /runs/{id}/wait and the /events stream, on real
dbt runs under the local executor, served by a real uvicorn."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api import run_waits
from app.container import Container
from app.store.db import Database
from tests.conftest import LiveServer, org_folder
from tests.conftest_examples import copy_example
from tests.integration.api_helpers import assert_problem
from tests.integration.test_local_executor import slow_model

Headers = dict[str, str]


@pytest.fixture
def dbt_project(tmp_path: Path) -> Path:
    project = copy_example("dbt_demo", org_folder(tmp_path) / "dbt_demo")
    slow_model(project, 3)
    return project


def _job(http: httpx.Client, headers: Headers, command: str = "dbt run --select slow") -> str:
    project = http.post(
        "/api/v1/projects",
        json={"name": "analytics", "kind": "dbt", "path": "dbt_demo"},
        headers=headers,
    )
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    job = http.post(
        f"/api/v1/projects/{pid}/jobs",
        json={"name": "slow", "command": command, "schedule": None},
        headers=headers,
    )
    assert job.status_code == 201, job.text
    return f"/api/v1/projects/{pid}/jobs/{job.json()['id']}"


def _trigger(http: httpx.Client, headers: Headers, job: str) -> str:
    response = http.post(f"{job}/trigger", json={}, headers=headers)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["job_run_id"]
    return run_id


def _events(response: httpx.Response) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            found.append((event, json.loads(line[len("data: ") :])))
    return found


@pytest.mark.slow
def test_wait_answers_when_the_run_ends_and_events_stream_its_log_and_status(
    live_server: LiveServer, admin_headers: Headers, dbt_project: Path
) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        job = _job(http, admin_headers)
        run_id = _trigger(http, admin_headers, job)
        with http.stream("GET", f"/api/v1/runs/{run_id}/events", headers=admin_headers) as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
            waited = http.get(f"/api/v1/runs/{run_id}/wait?timeout=60", headers=admin_headers)
            ended = time.monotonic()
            assert waited.status_code == 200, waited.text
            body = waited.json()
            assert body["id"] == run_id and body["is_terminal"] and body["status"] == "success"
            found = _events(events)
        stored = http.get(f"/api/v1/runs/{run_id}/logs", headers=admin_headers).text
        again = http.get(f"/api/v1/runs/{run_id}/wait?timeout=5", headers=admin_headers)
        answered = time.monotonic()
    # The wait answered as the run ended: the stream's end came no later.
    assert time.monotonic() - ended < 10
    kinds = [kind for kind, _ in found]
    assert kinds[-1] == "end" and found[-1][1]["status"] == "success"
    assert "status" in kinds and kinds.index("status") < kinds.index("end")
    # The log arrives whole, each chunk once, in order: the stored log and the stream agree.
    streamed = "".join(data["text"] for kind, data in found if kind == "log")
    assert streamed == stored
    assert "OK created sql table model main.slow" in streamed
    # A finished run's wait answers at once.
    assert again.status_code == 200 and again.json()["status"] == "success"
    assert answered - ended < 3


@pytest.mark.slow
def test_a_wait_wakes_on_the_status_change_not_on_a_poll(
    live_server: LiveServer,
    admin_headers: Headers,
    dbt_project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With the re-check pushed out of reach, only the tracker's wake-up can end the wait.
    monkeypatch.setattr(run_waits, "RECHECK_SECONDS", 60.0)
    slow_model(dbt_project, 60)
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        job = _job(http, admin_headers)
        run_id = _trigger(http, admin_headers, job)
        answer: dict[str, Any] = {}

        def wait() -> None:
            response = http.get(f"/api/v1/runs/{run_id}/wait?timeout=50", headers=admin_headers)
            answer["at"] = time.monotonic()
            answer["body"] = response.json()

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive()
        cancelled_at = time.monotonic()
        cancel = http.post(f"/api/v1/runs/{run_id}/cancel", headers=admin_headers)
        assert cancel.status_code == 200, cancel.text
        waiter.join(30)
    assert answer["body"]["status"] == "cancelled"
    assert answer["at"] - cancelled_at < 5.0  # the cancel itself stops dbt first


@pytest.mark.slow
def test_a_wait_times_out_with_the_run_as_it_is(
    live_server: LiveServer, admin_headers: Headers, dbt_project: Path
) -> None:
    slow_model(dbt_project, 60)
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        job = _job(http, admin_headers)
        run_id = _trigger(http, admin_headers, job)
        started = time.monotonic()
        response = http.get(f"/api/v1/runs/{run_id}/wait?timeout=1", headers=admin_headers)
        took = time.monotonic() - started
        http.post(f"/api/v1/runs/{run_id}/cancel", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["status"] in ("pending", "running")
    assert 0.9 <= took < 3


def test_waits_and_events_keep_tenancy_and_check_the_timeout(
    live_server: LiveServer,
    admin_headers: Headers,
    other_org_headers: Headers,
    container: Container,
    dbt_project: Path,
) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        job = _job(http, admin_headers, command="dbt run --select slow --fail-fast")
        run_id = _trigger(http, admin_headers, job)
        for path in (f"/api/v1/runs/{run_id}/wait?timeout=1", f"/api/v1/runs/{run_id}/events"):
            assert_problem(http.get(path, headers=other_org_headers), 404)
            assert http.get(path).status_code == 401
        assert_problem(http.get("/api/v1/runs/run_nope/events", headers=admin_headers), 404)
        for bad in ("0", "61", "soon"):
            response = http.get(f"/api/v1/runs/{run_id}/wait?timeout={bad}", headers=admin_headers)
            assert_problem(response, 422, field="timeout")
        http.post(f"/api/v1/runs/{run_id}/cancel", headers=admin_headers)


def test_a_client_that_does_not_read_is_dropped_not_buffered() -> None:
    import asyncio

    async def flood() -> tuple[bool, int, bool]:
        inbox = run_waits._Inbox(asyncio.get_running_loop())
        stopped: list[bool] = []
        inbox.stop = lambda: stopped.append(True)
        for _ in range(run_waits.MAX_PENDING_EVENTS + 50):
            inbox.push("log", "x" * 100)
        await asyncio.sleep(0.05)  # let the loop run the pushed callbacks
        return inbox.overflowed, len(inbox.take()), bool(stopped)

    overflowed, kept, stopped = asyncio.run(flood())
    assert overflowed and stopped
    assert kept == 0


def test_the_event_loop_connection_refuses_writes(tmp_path: Path) -> None:
    database = Database(tmp_path / "r.db")
    database.migrate()
    result: dict[str, Any] = {}

    def on_loop_thread() -> None:
        database.serve_reads_on_this_thread()
        result["read"] = database.scalar("SELECT count(*) FROM runs")
        try:
            with database.write() as db:
                db.conn.execute("DELETE FROM runs")
        except RuntimeError as exc:
            result["write"] = str(exc)
        try:
            database.execute("DELETE FROM runs")
        except Exception as exc:  # query_only: sqlite3.OperationalError
            result["execute"] = type(exc).__name__

    thread = threading.Thread(target=on_loop_thread)
    thread.start()
    thread.join()
    assert result["read"] == 0
    assert "worker thread" in result["write"]
    assert result["execute"] == "OperationalError"
    # Other threads still write.
    with database.write() as db:
        db.conn.execute("DELETE FROM runs")
    database.close()


def test_a_cached_body_is_kept_until_any_connection_commits(tmp_path: Path) -> None:
    from app.api.read_cache import ReadCache

    database = Database(tmp_path / "c.db")
    database.migrate()
    cache = ReadCache(database)
    seen: list[bytes] = []
    renders: list[int] = []
    written = threading.Event()

    def render() -> bytes:
        renders.append(1)
        return str(database.scalar("SELECT count(*) FROM orgs")).encode()

    def on_loop_thread() -> None:
        database.serve_reads_on_this_thread()
        seen.append(cache.get("orgs", render))
        seen.append(cache.get("orgs", render))  # nothing committed: kept, not rendered
        assert written.wait(10)
        seen.append(cache.get("orgs", render))  # another connection committed: rendered

    loop_thread = threading.Thread(target=on_loop_thread)
    loop_thread.start()
    while len(seen) < 2 and loop_thread.is_alive():
        time.sleep(0.01)
    with database.write() as db:
        db.conn.execute("INSERT INTO orgs (id, slug, created_at) VALUES ('org_1', 'a', 'now')")
    written.set()
    loop_thread.join()
    assert seen == [b"0", b"0", b"1"]
    assert len(renders) == 2
    # Off the loop's thread nothing is kept: each call renders.
    assert cache.get("orgs", render) == b"1" and len(renders) == 3
    database.close()
