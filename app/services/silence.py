"""Silence alerts: a scheduled slot that did not produce a running run in time (``missed``)
and a run running longer than its job allows (``overdue``).

Each job opts in by setting a threshold in minutes: ``alert_if_not_started_within`` or
``alert_if_running_longer_than``. A checker (a thread, every ``interval`` seconds) looks at:

* missed: every slot of every live schedule (deployed project, enabled job, schedule set)
  whose deadline (slot + threshold) has passed since the job's watermark. The watermark
  (``silence_state.checked_until``) is kept in the database, so the slots that passed
  while runyard was down are computed from the schedule at the next start: a server down
  across a slot is exactly a watermark before a slot that already passed. A slot is fine
  when its run reached running by the deadline; otherwise one alert, with the reason
  runyard knows (not running at the slot, queued at place N, launch failed, still
  pending, no run recorded).
* overdue: every running run whose job has a threshold, once per run.

Each alert is recorded in ``silence_alerts`` (job, event, slot or run) in the transaction
that writes its notifications to the outbox: sent once, also across restarts. Delivery is
the outbox's (Slack when the job's ``slack_alerts_enabled``, its webhook when enabled).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from app.cron import fires_between
from app.errors import FieldError
from app.ids import to_text, utcnow
from app.models import Job, JobConfig, Project, Run
from app.notify.messages import Alert, JobRef, ProjectRef
from app.notify.outbox import NotificationOutbox
from app.store import Store

log = logging.getLogger("runyard.silence")

INTERVAL_SECONDS = 20.0
MAX_THRESHOLD_MINUTES = 7 * 24 * 60  # a week
# A job whose slots piled up (a minutely job after a day of downtime) gets alerts for its
# most recent slots only; the reason of the oldest of them says how many more there were.
MAX_SLOTS_PER_CHECK = 10


def check_silence_alerts(job: JobConfig) -> list[FieldError]:
    """The thresholds' checks, for the job service's validation (clear 422s)."""
    errors = []
    for field in ("alert_if_not_started_within", "alert_if_running_longer_than"):
        value = getattr(job, field)
        if value is not None and not 1 <= value <= MAX_THRESHOLD_MINUTES:
            errors.append(
                FieldError(
                    field,
                    f"minutes: use 1 to {MAX_THRESHOLD_MINUTES} (a week), or null to turn "
                    f"the alert off; got {value}",
                )
            )
    if job.alert_if_not_started_within is not None and not job.schedule:
        errors.append(
            FieldError(
                "alert_if_not_started_within",
                "the job has no schedule, so it has no slot that could be missed: set a "
                "schedule or leave this null",
            )
        )
    return errors


class SilenceWatch:
    def __init__(
        self,
        store: Store,
        outbox: NotificationOutbox,
        *,
        clock: Callable[[], datetime] = utcnow,
        interval_seconds: float = INTERVAL_SECONDS,
        minute_seconds: float = 60.0,
    ) -> None:
        """``minute_seconds``: how long a threshold's minute lasts. 60; tests shorten it
        (RUNYARD_SILENCE_MINUTE_SECONDS, for tests only)."""
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self.interval = interval_seconds
        self.minute = minute_seconds
        # When this process began serving: a slot before it with no run was missed
        # because runyard was not running.
        self.started_at = clock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _threshold(self, minutes: int) -> timedelta:
        return timedelta(seconds=minutes * self.minute)

    # --- checking -------------------------------------------------------------------------

    def check(self, now: datetime | None = None) -> int:
        """One pass over missed slots and overdue runs; how many alerts were written."""
        with self._lock:
            now = now or self._clock()
            return self._check_missed(now) + self._check_overdue(now)

    def _watched(self) -> list[tuple[Project, Job]]:
        found = []
        for project in self._store.projects.list_deployed():
            for job in self._store.jobs.for_project(project.id):
                if job.enabled and job.schedule and job.alert_if_not_started_within:
                    found.append((project, job))
        return found

    def _check_missed(self, now: datetime) -> int:
        watched = self._watched()
        marks = self._store.silence.checked_until()
        self._store.silence.forget([j for j in marks if j not in {job.id for _, job in watched}])
        sent = 0
        for project, job in watched:
            assert job.schedule is not None and job.alert_if_not_started_within is not None
            threshold = self._threshold(job.alert_if_not_started_within)
            upto = now - threshold  # slots up to here have had their time to start
            since = marks.get(job.id)
            if since is None:  # newly watched: from now on
                self._store.silence.set_checked(job.id, upto)
                continue
            if upto <= since:
                continue
            try:
                slots = list(fires_between(job.schedule, job.timezone, since, upto))
            except Exception:
                log.warning("could not compute the job's slots", extra={"job_id": job.id})
                slots = []
            skipped = max(0, len(slots) - MAX_SLOTS_PER_CHECK)
            for slot in slots[skipped:]:
                reason = self._missed_reason(job, slot, slot + threshold)
                if reason is None:
                    continue
                if skipped and slot == slots[skipped]:
                    reason += f" ({skipped} earlier slot(s) were missed as well)"
                run = self._store.runs.for_slot(job.id, slot)
                if self._send(project, job, "missed", to_text(slot), reason, now, slot, run):
                    sent += 1
            self._store.silence.set_checked(job.id, upto)
        return sent

    def _missed_reason(self, job: Job, slot: datetime, deadline: datetime) -> str | None:
        """Why the slot's run was not running by the deadline; None when it was."""
        reason = self._run_reason(job, slot, deadline)
        if reason is not None and self.started_at > slot:
            down = (
                "runyard was not running at the slot (this runyard started at "
                f"{self.started_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
            return f"{down}, so no run was started" if not reason else f"{down}; {reason}"
        return reason

    def _run_reason(self, job: Job, slot: datetime, deadline: datetime) -> str | None:
        """What the slot's run did ("" when there is none and runyard was down)."""
        run = self._store.runs.for_slot(job.id, slot)
        if run is None:
            if self.started_at > slot:
                return ""
            return (
                "no run was recorded for the slot (a run of the job was still active under "
                "concurrency_policy Forbid, or the organization could not start runs)"
            )
        launch_failed = bool(run.error and run.error.startswith("runyard could not start"))
        if run.start_time is not None and run.status not in ("queued", "pending"):
            if launch_failed:
                return f"the run could not start: {run.error}"
            if run.status == "lost" and run.error and "before its process" in run.error:
                return f"the run was lost before it started: {run.error}"
            # Cancelled while queued or pending: it never ran (its end is its start).
            never_ran = run.exit_code is None and run.start_time == run.end_time
            if run.status == "cancelled" and never_ran:
                return f"the run was cancelled before it started ({run.error})"
            if run.start_time <= deadline:
                return None
            return f"the run started late, at {run.start_time:%Y-%m-%d %H:%M:%S} UTC"
        if run.status == "queued":
            return f"the run is queued at place {run.queue_position or '?'} (run {run.id})"
        if run.status == "pending":
            return (
                f"the run is still pending (run {run.id}): the executor has not started it "
                "(on Kubernetes: the pod is not running, e.g. unschedulable or pulling)"
            )
        return f"the run has status {run.status} (run {run.id})"

    def _check_overdue(self, now: datetime) -> int:
        sent = 0
        jobs: dict[str, tuple[Job | None, Project | None]] = {}
        for run in self._store.runs.running_longer_than(now - timedelta(seconds=self.minute)):
            if run.job_id not in jobs:
                job = self._store.jobs.get_any(run.job_id)
                project = self._store.projects.get_any(job.project_id) if job else None
                jobs[run.job_id] = (job, project)
            job, project = jobs[run.job_id]
            if job is None or project is None or not job.alert_if_running_longer_than:
                continue
            assert run.start_time is not None
            limit = self._threshold(job.alert_if_running_longer_than)
            if now - run.start_time <= limit:
                continue
            reason = (
                f"run {run.id} has been running since "
                f"{run.start_time:%Y-%m-%d %H:%M:%S} UTC, longer than "
                f"{job.alert_if_running_longer_than} min (its timeout is "
                f"{run_timeout(self._store, run)} s)"
            )
            if self._send(project, job, "overdue", run.id, reason, now, None, run):
                sent += 1
        return sent

    def _send(
        self,
        project: Project,
        job: Job,
        event: Literal["missed", "overdue"],
        key: str,
        reason: str,
        now: datetime,
        slot: datetime | None,
        run: Run | None,
    ) -> bool:
        threshold = (
            job.alert_if_not_started_within
            if event == "missed"
            else job.alert_if_running_longer_than
        )
        assert threshold is not None
        alert = Alert(
            event=event,
            project=ProjectRef(id=project.id, name=project.name, kind=project.kind),
            job=JobRef(id=job.id, name=job.name),
            threshold_minutes=threshold,
            reason=reason,
            detected_at=now,
            slot=slot,
            run=run,
        )
        with self._store.database.write():
            if not self._store.silence.claim(
                job_id=job.id,
                event=event,
                key=key,
                run_id=run.id if run else None,
                reason=reason,
                now=now,
            ):
                return False  # sent before (an earlier pass, or before a restart)
            self._outbox.enqueue_alert(alert, job, org_id=job.org_id, project=project)
        self._outbox.wake()
        log.warning(
            "silence alert: %s",
            event,
            extra={"job_id": job.id, "key": key, "reason": reason},
        )
        return True

    # --- the background thread ----------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="runyard-silence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.check()
            except Exception:
                log.exception("a silence check failed; retrying at the next interval")
            self._stopping.wait(self.interval)


def run_timeout(store: Store, run: Run) -> int | str:
    record = store.runs.record(run.id)
    return record.snapshot.job.timeout_seconds if record else "unknown"
