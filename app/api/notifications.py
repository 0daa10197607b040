"""What notifications did: /api/v1/runs/{run_id}/notifications (a run's, and retrying
one) and /api/v1/projects/{project_id}/jobs/{job_id}/notifications (a job's: its runs' and
its silence alerts about slots without a run, which no run lists)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter

from app.models import Principal
from app.notify.outbox import NotificationOutbox
from app.services import audit
from app.services.cursors import CursorCodec
from app.services.jobs import JobService
from app.services.projects import require_writer
from app.services.runs import RunService
from app.services.tokens import ACTION_OPT
from app.store import Store
from app.store.outbox import Attempt, JobNotification, Notification


class NotificationOut(msgspec.Struct, kw_only=True):
    id: str
    delivery_id: str  # the X-Runyard-Delivery header (and the Slack message metadata)
    run_id: str | None
    kind: str  # slack or webhook
    event: str  # started, success, failure or cancelled
    target: str | None  # the Slack channel or the webhook URL
    state: str  # pending, delivering, delivered or failed
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    history: list[Attempt]


class NotificationList(msgspec.Struct):
    notifications: list[NotificationOut]
    total: int


class JobNotificationOut(NotificationOut, kw_only=True):
    slot: datetime | None  # the scheduled slot a ``missed`` alert is about


class JobNotificationList(msgspec.Struct):
    notifications: list[JobNotificationOut]  # newest first
    next_cursor: str | None  # pass as ``cursor`` for the next page; null: no more


def _out(notification: Notification, history: list[Attempt]) -> NotificationOut:
    return NotificationOut(
        id=notification.id,
        delivery_id=notification.id,
        run_id=notification.run_id,
        kind=notification.kind,
        event=notification.event,
        target=notification.target,
        state=notification.state,
        attempts=notification.attempts,
        last_status_code=notification.last_status_code,
        last_error=notification.last_error,
        next_attempt_at=notification.due_at if notification.state == "pending" else None,
        created_at=notification.created_at,
        updated_at=notification.updated_at,
        delivered_at=notification.delivered_at,
        history=history,
    )


def _job_out(notification: JobNotification, history: list[Attempt]) -> JobNotificationOut:
    base = msgspec.structs.asdict(_out(notification, history))
    return JobNotificationOut(**base, slot=notification.slot)


def _cursors(store: Store) -> CursorCodec:
    # Positions in the notifications sequence all orgs share: opaque and bound to the org
    # (app/services/cursors.py), under a key of their own derived from the server's.
    return CursorCodec(store.database.box.derive(b"notification pagination cursors"))


RUN = "/runs/{run_id:str}/notifications"


class NotificationController(Controller):
    # One controller for both paths (app/main.py registers this class).
    path = "/api/v1"

    @get(
        RUN, sync_to_thread=True, tags=["runs"], summary="The run's Slack and webhook notifications"
    )
    def list_notifications(
        self, principal: Principal, runs: RunService, notifications: NotificationOutbox, run_id: str
    ) -> NotificationList:
        runs.get(principal, run_id)  # 404 unless the run is the caller's org's
        found, history = notifications.for_run(run_id)
        return NotificationList([_out(n, history.get(n.id, [])) for n in found], len(found))

    @get(
        "/projects/{project_id:str}/jobs/{job_id:str}/notifications",
        sync_to_thread=True,
        tags=["jobs"],
        summary="The job's notifications, newest first, with silence alerts about slots "
        "without a run",
    )
    def list_job_notifications(
        self,
        principal: Principal,
        jobs: JobService,
        store: Store,
        project_id: str,
        job_id: str,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> JobNotificationList:
        job = jobs.get(principal, project_id, job_id)  # 404 unless the caller may see it
        codec = _cursors(store)
        before = codec.decode(principal.org_id, cursor) if cursor else None
        found, more = store.outbox.for_job(job.org_id, job.id, before=before, limit=limit)
        history = store.outbox.attempts([n.id for n in found])
        return JobNotificationList(
            [_job_out(n, history.get(n.id, [])) for n in found],
            codec.encode(principal.org_id, more) if more is not None else None,
        )

    @post(
        RUN + "/{notification_id:str}/retry",
        sync_to_thread=True,
        status_code=202,
        tags=["runs"],
        summary="Deliver a permanently failed notification again",
        opt={ACTION_OPT: "write"},
    )
    def retry(
        self,
        principal: Principal,
        runs: RunService,
        notifications: NotificationOutbox,
        store: Store,
        run_id: str,
        notification_id: str,
    ) -> NotificationOut:
        require_writer(principal)
        run = runs.get(principal, run_id)
        notification = notifications.retry(run_id, notification_id)
        # The outbox (app/notify) sits below the services: the retry is recorded here.
        audit.record(
            store,
            org_id=principal.org_id,
            action="notification.retry",
            object_type="notification",
            object_id=notification.id,
            object_name=f"{notification.kind} {notification.event} of run {run_id}",
            diff=audit.field_diff({"state": "failed"}, {"state": notification.state}),
            project_id=run.project_id,
        )
        history = notifications.for_run(run_id)[1].get(notification.id, [])
        return _out(notification, history)
