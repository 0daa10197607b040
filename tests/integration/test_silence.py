"""Silence alerts end to end: real runyard servers, real dbt, real HTTP receivers.

* missed: runyard (a real ``runyard serve`` process) is stopped before a scheduled slot and
  started again after the slot's threshold: exactly one ``missed`` alert reaches the job's
  webhook and Slack, saying runyard was not running; a further restart sends no second.
* overdue: a run longer than its threshold sends exactly one ``overdue`` alert.
* the thresholds are validated (clear 422s) and shown on the job.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from app.container import Container
from app.ids import to_text
from app.main import create_app
from tests.conftest import org_folder
from tests.conftest_examples import copy_example
from tests.integration import test_notify_support as support
from tests.integration.api_helpers import assert_problem, make_job, make_project
from tests.integration.test_local_executor import slow_model
from tests.integration.test_notify_support import receiver, slack_api
from tests.integration.test_queue import wait_all_ended

REPO = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "app.cli")
Headers = dict[str, str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """``runyard serve`` as a real process on a database in ``folder``."""

    def __init__(self, folder: Path, **variables: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")} | {
            "RUNYARD_DATABASE": str(folder / "runyard.db"),
            "RUNYARD_EXECUTOR": "local",
            "RUNYARD_PORT": str(_free_port()),
            "RUNYARD_LOG_FORMAT": "json",
            "PYTHONPATH": str(REPO),
            **variables,
        }
        self.url = f"http://127.0.0.1:{self.env['RUNYARD_PORT']}"
        self.process: subprocess.Popen[str] | None = None

    def token(self) -> str:
        made = subprocess.run(
            [*CLI, "tokens", "create", "--org", "acme", "--role", "admin"],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return made.stdout.strip().splitlines()[-1]

    def start(self) -> Server:
        self.process = subprocess.Popen(
            [*CLI, "serve"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url + "/health", timeout=1)
                return self
            except httpx.HTTPError:
                assert self.process.poll() is None, "runyard serve exited"
                assert time.monotonic() < deadline, "runyard serve did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None


def api(server: Server, token: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method,
        server.url + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **kwargs,
    )
    assert response.status_code < 300, response.text
    return response.json()


def _watermark(database: Path, job_id: str) -> str | None:
    import sqlite3

    with sqlite3.connect(database) as conn:
        row = conn.execute(
            "SELECT checked_until FROM silence_state WHERE job_id = ?", (job_id,)
        ).fetchone()
    return None if row is None else str(row[0])


@pytest.mark.slow
def test_runyard_down_across_a_slot_sends_exactly_one_missed_alert(tmp_path: Path) -> None:
    copy_example("dbt_demo", org_folder(tmp_path) / "dbt_demo")
    with receiver() as hook, receiver(slack_api) as slack:
        server = Server(
            tmp_path,
            RUNYARD_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
            RUNYARD_SLACK_TOKEN="xoxb-silence",
            RUNYARD_SLACK_BASE_URL=slack.url("/api/"),
            RUNYARD_SILENCE_INTERVAL_SECONDS="0.3",
            # A threshold's minute lasts a second here, so the test waits seconds, not minutes.
            RUNYARD_SILENCE_MINUTE_SECONDS="1",
        )
        token = server.token()
        server.start()
        try:
            # The slot: the next minute boundary at least 15 s away, once a day (UTC).
            now = datetime.now(UTC)
            slot = (now + timedelta(seconds=75)).replace(second=0, microsecond=0)
            if (slot - now).total_seconds() > 75:
                slot -= timedelta(minutes=1)
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
                    "name": "morning-refresh",
                    "command": "dbt build",
                    "schedule": f"{slot.minute} {slot.hour} * * *",
                    "alert_if_not_started_within": 5,
                    "webhook_enabled": True,
                    "webhook_url": hook.url(),
                    "slack_alerts_enabled": True,
                    "slack_channel": "#data-alerts",
                },
            )
            assert job["alert_if_not_started_within"] == 5
            api(server, token, "POST", f"/api/v1/projects/{project['id']}/deploy")
            # The running server starts watching the job's slots.
            deadline = time.monotonic() + 20
            while _watermark(tmp_path / "runyard.db", job["id"]) is None:
                assert time.monotonic() < deadline, "the job's slots are not watched"
                time.sleep(0.2)
        finally:
            server.kill()  # runyard is down: no clean shutdown, nothing more is checked
        assert datetime.now(UTC) < slot, "the server was stopped after the slot; too slow"

        # Down across the slot and past its threshold (5 "minutes" of a second each).
        while datetime.now(UTC) < slot + timedelta(seconds=7):
            time.sleep(0.5)
        assert hook.requests == [] and slack.requests == []

        server.start()
        try:
            first = hook.wait_for(1, timeout=30)
            slack.wait_for(1, timeout=30)
            time.sleep(2)  # several checks later: still one
        finally:
            server.stop()
        assert len(hook.requests) == 1 and len(slack.requests) == 1
        body = first[0].json()
        assert first[0].headers["x-runyard-event"] == "missed"
        assert body["event"] == "missed"
        assert body["job"] == {"id": job["id"], "name": "morning-refresh"}
        assert datetime.fromisoformat(body["slot"].replace("Z", "+00:00")) == slot
        assert body["threshold_minutes"] == 5
        assert body["reason"].startswith("runyard was not running at the slot"), body["reason"]
        if body["run"] is not None:
            # Back within the scheduler's misfire grace (60 s), the slot fired late; the alert
            # names that run, whatever it was doing when the threshold had passed.
            assert body["run"]["scheduled_for"].replace("Z", "+00:00") == slot.isoformat()
            assert f"run {body['run']['id']}" in body["reason"] or "late" in body["reason"]
        message = slack.requests[0].json()
        assert message["channel"] == "#data-alerts"
        assert "morning-refresh" in message["text"] and "not running" in message["text"]
        assert message["metadata"]["event_type"] == "runyard_job_missed"

        # Started again: the alert was sent, it is not sent again.
        server.start()
        try:
            time.sleep(3)
        finally:
            server.stop()
        assert len(hook.requests) == 1 and len(slack.requests) == 1


@pytest.fixture
def dbt_project(tmp_path: Path) -> Path:
    project = copy_example("dbt_demo", org_folder(tmp_path) / "dbt_demo")
    slow_model(project, 6)
    return project


@pytest.mark.slow
def test_a_run_longer_than_its_threshold_sends_one_overdue_alert(
    container_factory: Callable[..., Container], dbt_project: Path
) -> None:
    with receiver() as hook:
        container = container_factory(
            webhook_allowed_hosts=("127.0.0.1",),
            silence_interval_seconds=0.2,
            silence_minute_seconds=1.0,
        )
        token, _ = container.tokens.create("acme", "admin")
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(container=container)) as client:
            project = make_project(client, headers, path="dbt_demo")
            common = {"command": "dbt run --select slow", "schedule": None}
            hooked = {"webhook_enabled": True, "webhook_url": hook.url()}
            long = make_job(
                client,
                headers,
                project["id"],
                name="long",
                alert_if_running_longer_than=2,
                **common,
                **hooked,
            )
            # The same webhook without a threshold: no overdue alert (the opt-in is the
            # threshold), only the events it lists.
            quiet = make_job(client, headers, project["id"], name="quiet", **common, **hooked)
            ids = []
            for job in (long, quiet):  # one after the other: they share a DuckDB file
                response = client.post(
                    f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger",
                    json={},
                    headers=headers,
                )
                assert response.status_code == 201, response.text
                ids.append(response.json()["job_run_id"])
                (ended,) = wait_all_ended(client, headers, ids[-1:])
                assert ended["status"] == "success", ended["error"]
            hook.wait_for(3, timeout=20)
            time.sleep(1)  # more checks: nothing more
        events = sorted(
            (r.json()["event"], r.json()["job"]["name"], r.json()["run"]["id"])
            for r in hook.requests
        )
        assert events == [
            ("overdue", "long", ids[0]),
            ("success", "long", ids[0]),
            ("success", "quiet", ids[1]),
        ]
        overdue = next(r.json() for r in hook.requests if r.json()["event"] == "overdue")
        assert overdue["threshold_minutes"] == 2 and overdue["slot"] is None
        assert f"run {ids[0]} has been running since" in overdue["reason"]
        # The alert is listed with the run's notifications.
        listed = container.notifications.for_run(ids[0])[0]
        assert sorted(n.event for n in listed) == ["overdue", "success"]


def test_thresholds_are_validated_and_shown(
    client: TestClient[Any], admin_headers: Headers
) -> None:
    project = make_project(client, admin_headers)
    url = f"/api/v1/projects/{project['id']}/jobs"
    base = {"name": "nightly", "command": "dbt build", "schedule": "0 2 * * *"}
    for field, value in (
        ("alert_if_not_started_within", 0),
        ("alert_if_not_started_within", 7 * 24 * 60 + 1),
        ("alert_if_running_longer_than", -5),
    ):
        response = client.post(url, json=base | {field: value}, headers=admin_headers)
        body = assert_problem(response, 422, field=field)
        assert "minutes" in body["detail"]
    unscheduled = base | {"schedule": None, "alert_if_not_started_within": 30}
    body = assert_problem(
        client.post(url, json=unscheduled, headers=admin_headers),
        422,
        field="alert_if_not_started_within",
    )
    assert "no schedule" in body["detail"]
    assert client.get(url, headers=admin_headers).json()["jobs"] == []  # nothing was made

    job = make_job(
        client,
        admin_headers,
        project["id"],
        alert_if_not_started_within=30,
        alert_if_running_longer_than=90,
    )
    assert (job["alert_if_not_started_within"], job["alert_if_running_longer_than"]) == (30, 90)
    listed = client.get(url, headers=admin_headers).json()["jobs"][0]
    assert listed["alert_if_running_longer_than"] == 90
    turned_off = client.put(
        f"{url}/{job['id']}", json={"alert_if_running_longer_than": None}, headers=admin_headers
    )
    assert turned_off.status_code == 200, turned_off.text
    assert turned_off.json()["alert_if_running_longer_than"] is None


def test_a_slot_whose_run_waits_in_the_queue_is_missed_naming_its_place(
    container_factory: Callable[..., Container],
) -> None:
    """Driven with explicit times: a slot whose run was running in time sends nothing; a
    slot whose run still waits in the queue after the threshold sends one missed alert
    naming the run and its place, once."""
    container = container_factory(start=False, webhook_allowed_hosts=("127.0.0.1",))
    project = support.make_project(container, deployed=True)
    job = support.make_job(
        container,
        project,
        schedule="0 * * * *",
        concurrency_policy="Queue",
        alert_if_not_started_within=10,
        webhook_enabled=True,
        webhook_url="http://127.0.0.1:9/hook",
    )
    watch = container.silence
    start = datetime(2026, 11, 30, 5, 30, tzinfo=UTC)
    watch.started_at = start - timedelta(days=1)  # runyard was up all along
    assert watch.check(start) == 0  # newly watched: from now on

    def scheduled(slot: datetime, status: str) -> str:
        run = support.make_run(container, project, job)
        container.store.database.execute(
            "UPDATE runs SET scheduled_for = ?, triggered_by = 'scheduled', status = ?"
            " WHERE id = ?",
            (to_text(slot), status, run.id),
        )
        return run.id

    six, seven = start.replace(hour=6, minute=0), start.replace(hour=7, minute=0)
    on_time = scheduled(six, "pending")
    container.tracker.started(on_time, six + timedelta(minutes=1))  # running at 06:01
    waiting = scheduled(seven, "queued")  # behind the 06:00 run, still running

    assert watch.check(seven + timedelta(minutes=9)) == 0  # within the threshold
    assert watch.check(seven + timedelta(minutes=11)) == 1
    assert watch.check(seven + timedelta(minutes=12)) == 0  # once
    [(event, key, reason)] = container.store.silence.sent(job.id)
    assert (event, key) == ("missed", to_text(seven))
    assert reason == f"the run is queued at place 1 (run {waiting})"
    [notification] = container.store.outbox.for_run(waiting)
    assert (notification.event, notification.kind) == ("missed", "webhook")
    assert container.store.outbox.for_run(on_time) == []
