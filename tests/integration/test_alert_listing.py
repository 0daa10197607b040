"""A job's notifications over real HTTP (a uvicorn server): its runs' and its ``missed``
alerts about slots without a run, which no run lists. The alerts are written by the silence
checker itself (app/services/silence.py), delivered to local receivers, listed with their
slot, paged with cursors, hidden from other orgs and other projects' tokens, and pruned by
retention when old (their once-per-slot records only when no second alert can follow)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.api.auth import action_of
from app.container import Container
from app.ids import to_text, utcnow
from app.main import create_app
from app.models import Job, Project
from app.services.retention import RetentionWorker
from tests.conftest import LiveServer
from tests.integration import test_notify_support as support
from tests.integration.api_helpers import assert_problem
from tests.integration.test_notify_support import Receiver, receiver, slack_api

SECRET = "whsec-never-shown-1234"
HEADER_VALUE = "hdr-value-never-shown-5678"


class World:
    def __init__(self, container: Container, server: LiveServer, project: Project, job: Job):
        self.container, self.server, self.project, self.job = container, server, project, job
        self.path = f"/api/v1/projects/{project.id}/jobs/{job.id}/notifications"

    def token(self, org: str = "acme", role: str = "admin", **scope: Any) -> dict[str, str]:
        token, _ = self.container.tokens.create(org, role, **scope)
        return {"Authorization": f"Bearer {token}"}

    def get(self, headers: dict[str, str], path: str | None = None, **params: Any) -> Any:
        return httpx.get(
            self.server.url + (path or self.path), headers=headers, params=params, timeout=30
        )


@pytest.fixture
def world(container_factory: Callable[..., Container]) -> Iterator[tuple[World, datetime]]:
    with receiver(slack_api) as slack, receiver() as hook:
        # Not started: the silence checker is driven with explicit times below, and only
        # delivery runs (to the local receivers).
        container = container_factory(
            start=False,
            slack_token="xoxb-test-token",
            slack_base_url=slack.url("/api/"),
            slack_default_channel="#runyard-default",
            webhook_allowed_hosts=("127.0.0.1",),
            notify_timeout_seconds=1.0,
        )
        project = support.make_project(container, deployed=True)
        job = support.make_job(
            container,
            project,
            secret=SECRET,
            schedule="0 * * * *",
            alert_if_not_started_within=10,
            slack_alerts_enabled=True,
            webhook_enabled=True,
            webhook_url=hook.url(),
            webhook_headers={"X-Api-Key": HEADER_VALUE},
        )
        container.notifications.start()
        server = LiveServer(container).start()
        try:
            yield World(container, server, project, job), _alerts(container, project, job, hook)
        finally:
            server.stop()
            container.notifications.stop()


def _alerts(container: Container, project: Project, job: Job, hook: Receiver) -> datetime:
    """Three weeks ago: the 06:00 slot had no run at all (a run-less ``missed`` alert); the
    07:00 slot's run was still pending after the threshold (an alert with its run).
    Returns the 06:00 slot."""
    watch = container.silence
    start = (utcnow() - timedelta(days=21)).replace(hour=5, minute=30, second=0, microsecond=0)
    watch.started_at = start - timedelta(days=1)  # runyard was up all along
    assert watch.check(start) == 0  # newly watched: from now on
    six, seven = start + timedelta(minutes=30), start + timedelta(minutes=90)
    assert watch.check(six + timedelta(minutes=11)) == 1  # no run for 06:00
    run = support.make_run(container, project, job)
    container.store.database.execute(
        "UPDATE runs SET scheduled_for = ?, triggered_by = 'scheduled' WHERE id = ?",
        (to_text(seven), run.id),
    )
    assert watch.check(seven + timedelta(minutes=11)) == 1  # 07:00's run still pending
    hook.wait_for(2)
    deadline = time.monotonic() + 15
    while container.store.outbox.counts().get("delivered", 0) < 4:
        assert time.monotonic() < deadline, container.store.outbox.counts()
        time.sleep(0.05)
    return six


def test_a_jobs_list_shows_its_missed_alerts_with_their_slot(
    world: tuple[World, datetime],
) -> None:
    w, six = world
    seven = six + timedelta(hours=1)
    listed = w.get(w.token(role="viewer"))  # viewers read
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["next_cursor"] is None
    rows = body["notifications"]
    # Newest first: the 07:00 alert's two (Slack and webhook), then the 06:00 alert's.
    assert [(r["event"], r["slot"]) for r in rows] == [
        ("missed", to_text(seven).replace(".000000", "")),
    ] * 2 + [("missed", to_text(six).replace(".000000", ""))] * 2, rows
    assert sorted(r["kind"] for r in rows[2:]) == ["slack", "webhook"]
    for row in rows:
        assert row["state"] == "delivered" and row["attempts"] == 1
        assert row["last_error"] is None and row["history"][0]["outcome"] == "delivered"
    assert {r["run_id"] for r in rows[2:]} == {None}  # the slot without a run
    run_ids = {r["run_id"] for r in rows[:2]}
    assert len(run_ids) == 1 and None not in run_ids
    # The alert with a run is also on the run's own list; the run-less one on no run's.
    [run_id] = run_ids
    admin = w.token()
    on_run = w.get(admin, f"/api/v1/runs/{run_id}/notifications").json()["notifications"]
    assert {n["id"] for n in on_run} == {r["id"] for r in rows[:2]}
    # Secrets never show: not the webhook secret, not a header value.
    assert SECRET not in listed.text and HEADER_VALUE not in listed.text

    # Pages: newest first, the cursor opaque and bound to the org.
    first = w.get(admin, limit=3).json()
    assert [r["id"] for r in first["notifications"]] == [r["id"] for r in rows[:3]]
    cursor = first["next_cursor"]
    assert cursor and str(rows[2]["id"]) not in cursor
    second = w.get(admin, limit=3, cursor=cursor).json()
    assert [r["id"] for r in second["notifications"]] == [rows[3]["id"]]
    assert second["next_cursor"] is None
    assert_problem(w.get(admin, cursor=cursor[:-2] + "AA"), 400, field="cursor")
    assert_problem(w.get(admin, limit=0), 422, field="limit")


def test_other_orgs_and_other_projects_tokens_get_404(world: tuple[World, datetime]) -> None:
    w, _ = world
    finance = support.make_project(w.container, name="finance", deployed=True)
    other_org = w.token(org="globex")
    scoped = w.token(name="ci", project="finance")
    for headers in (other_org, scoped):
        found = assert_problem(w.get(headers), 404)
        assert "nightly" not in found["detail"]
    # The job under a project it is not in: 404 as well, for its own org.
    elsewhere = f"/api/v1/projects/{finance.id}/jobs/{w.job.id}/notifications"
    assert_problem(w.get(w.token(), elsewhere), 404)
    # A token scoped to the job's own project reads it.
    assert w.get(w.token(name="ci-analytics", project="analytics")).status_code == 200


def test_the_route_reads(world: tuple[World, datetime]) -> None:
    w, _ = world
    [handler] = [
        h
        for route in create_app(container=w.container).routes
        if route.path == "/api/v1/projects/{project_id:str}/jobs/{job_id:str}/notifications"
        for h in getattr(route, "route_handlers", [])
        if "GET" in h.http_methods
    ]
    assert action_of(handler, "GET") == "read"
    schema = httpx.get(w.server.url + "/schema/openapi.json", timeout=30).json()
    operation = schema["paths"]["/api/v1/projects/{project_id}/jobs/{job_id}/notifications"]
    assert {p["name"] for p in operation["get"]["parameters"]} >= {"cursor", "limit"}


def test_retention_prunes_old_runless_alerts_and_keeps_recent_ones(
    world: tuple[World, datetime],
) -> None:
    w, six = world
    store = w.container.store
    admin = w.token()
    rows = w.get(admin).json()["notifications"]
    old = [r["id"] for r in rows if r["run_id"] is None]
    recent_runless = [r["id"] for r in rows if r["run_id"] is not None]
    assert len(old) == 2 and len(recent_runless) == 2
    # Age the 06:00 alert's notifications (written just now by the checker) by 40 days.
    forty = to_text(utcnow() - timedelta(days=40))
    for notification_id in old:
        store.database.execute(
            "UPDATE notifications SET created_at = ? WHERE id = ?", (forty, notification_id)
        )
    # A recent run-less alert: the 06:00 alert of yesterday (its slot is after the
    # watermark only once the checker looked; a claim stands for an alert being written).
    yesterday = six + timedelta(days=20)
    assert store.silence.claim(
        job_id=w.job.id,
        event="missed",
        key=to_text(yesterday),
        run_id=None,
        reason="written just before a crash",
        now=utcnow() - timedelta(days=30),
    )
    worker = RetentionWorker(store, days=10, clock=utcnow, pause_seconds=0.0)
    worker.prune_once()

    left = w.get(admin).json()["notifications"]
    assert {r["id"] for r in left} == set(recent_runless)  # the run's alert: the run is recent
    assert store.outbox.attempts(old) == {i: [] for i in old}  # attempts went with them
    sent = {key for _event, key, _reason in store.silence.sent(w.job.id)}
    # The 06:00 and 07:00 records are behind the job's watermark and older than the
    # longest threshold: never looked at again, so they went. Yesterday's slot is after
    # the watermark: the checker will look at it, so its record stays (else a second alert).
    assert sent == {to_text(yesterday)}
    # The checker now looks at the slots since 07:00 three weeks ago (the 10 latest get
    # alerts): yesterday's 06:00 is not alerted a second time, nor 06:00 or 07:00 again.
    assert w.container.silence.check(yesterday + timedelta(minutes=11)) == 9
    slots = [r["slot"] for r in w.get(admin, limit=200).json()["notifications"]]
    assert len(slots) == 2 + 9 * 2
    shown = {to_text(t).replace(".000000", "") for t in (six, six + timedelta(hours=1), yesterday)}
    assert shown.isdisjoint(slots[: 9 * 2])
