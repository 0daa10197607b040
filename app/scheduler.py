"""The embedded cron scheduler of the local executor, owned by the container.

Schedules are live while a job has a schedule, is enabled, and its project is deployed
(the same meaning as CronJobs on Kubernetes). Fire times come from ``app.cron`` (wall-clock
slots in the job's zone, DST-correct). Each fire goes through a ``RunStarter`` (the run
service's ``start_run``, see ``fire_through``) with
``triggered_by="scheduled"`` and ``scheduled_for=<slot>``: the database's unique index on
(job_id, scheduled_for) makes a slot run at most once, and the concurrency policy applies.

``tick(now)`` does all the work synchronously: tests drive it with any clock, and the
background thread calls it with the real clock, then sleeps until the next due fire or a
wake-up (a job or project changed). Due fires come off a heap ordered by fire time, so a
tick costs O(fires · log jobs), not a scan of every job.

Timeliness: a slot handled within ``misfire_grace`` (60 s) after it is on time and fires.
An older slot was *missed* (runyard was down, the machine slept): all the slots a job
missed collapse into one decision per ``missed_fire_policy``: ``skip`` fires none,
``run_once`` fires one run for the most recent of them. Either way each slot is considered
once: the last slot considered per job is stored, so a restart never fires a slot again.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from app.cron import fires_between
from app.errors import RunyardError
from app.ids import utcnow
from app.models import Job, Project
from app.ports import RunStarter, SyncReport
from app.settings import MissedFirePolicy
from app.store import Store

log = logging.getLogger("runyard.scheduler")

FireFn = Callable[[Project, Job, datetime], bool]
"""Start the scheduled run of ``job`` for ``slot``; False when it was not started
(Forbid with a run active, or the slot already has its run)."""


def fire_through(runs: RunStarter) -> FireFn:
    """Fires that start runs through ``runs``. An org at its cap on running runs
    (max_concurrent_runs) does not skip the slot: its run is recorded queued and starts
    when a place frees up (docs/queues.md)."""

    def fire(project: Project, job: Job, slot: datetime) -> bool:
        started = runs.start_run(project, job, triggered_by="scheduled", scheduled_for=slot)
        return started is not None

    return fire


MISFIRE_GRACE = timedelta(seconds=60)
RESYNC_SECONDS = 60.0  # full reload from the database, in case a wake-up was missed
MAX_SLEEP_SECONDS = 30.0  # notice wall-clock jumps (NTP, suspend) at least this often
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


class Fire(msgspec.Struct, frozen=True):
    """What a tick did with one due slot."""

    job_id: str
    slot: datetime
    outcome: Literal["started", "skipped", "missed", "failed"]


class _Entry:
    __slots__ = (
        "fires",
        "gen",
        "job_id",
        "last_slot",
        "next_slot",
        "project_id",
        "schedule",
        "timezone",
    )

    def __init__(self, job: Job, since: datetime, gen: int) -> None:
        assert job.schedule is not None
        self.job_id = job.id
        self.project_id = job.project_id
        self.schedule = job.schedule
        self.timezone = job.timezone
        self.gen = gen
        self.last_slot = since
        self.fires: Iterator[datetime] = fires_between(
            job.schedule, job.timezone, since, _END_OF_TIME
        )
        self.next_slot = next(self.fires)

    def same_schedule(self, job: Job) -> bool:
        return (self.schedule, self.timezone) == (job.schedule, job.timezone)

    def restart_after(self, slot: datetime) -> None:
        """Continue with the first fire after ``slot`` (after collapsing missed slots)."""
        self.last_slot = slot
        self.fires = fires_between(self.schedule, self.timezone, slot, _END_OF_TIME)
        self.next_slot = next(self.fires)


def latest_fire(schedule: str, timezone: str, after: datetime, upto: datetime) -> datetime | None:
    """The last fire time t with after < t <= upto. Looks back through growing windows so
    an every-minute job after a month of downtime costs minutes of cron steps, not a month."""
    for window in (timedelta(hours=2), timedelta(days=2), timedelta(days=40), timedelta(days=400)):
        start = max(after, upto - window)
        found = None
        for found in fires_between(schedule, timezone, start, upto):  # noqa: B007
            pass
        if found is not None or start == after:
            return found
    return None


class Scheduler:
    def __init__(
        self,
        store: Store,
        fire: FireFn,
        *,
        clock: Callable[[], datetime] = utcnow,
        missed_fire_policy: MissedFirePolicy = "skip",
        misfire_grace: timedelta = MISFIRE_GRACE,
    ) -> None:
        self._store = store
        self._fire = fire
        self._clock = clock
        self._policy = missed_fire_policy
        self._grace = misfire_grace
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._gen = itertools.count()
        self._tick_lock = threading.Lock()
        # Changes to pick up at the next tick, in order: ("all"|"project"|"job"|"forget", id).
        self._pending: list[tuple[str, str]] = [("all", "")]
        self._pending_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- telling the scheduler about changes (any thread) -------------------------------

    def refresh_job(self, job_id: str) -> None:
        self._enqueue("job", job_id)

    def refresh_project(self, project_id: str) -> None:
        self._enqueue("project", project_id)

    def forget_job(self, job_id: str) -> None:
        """Stop the job's schedule now (undeploy, delete), before the database says so."""
        self._enqueue("forget", job_id)

    def resync(self) -> None:
        self._enqueue("all", "")

    def _enqueue(self, kind: str, key: str) -> None:
        with self._pending_lock:
            self._pending.append((kind, key))
        self._wakeup.set()

    def preview(self, jobs: Sequence[Job], *, deployed: bool) -> SyncReport:
        """What (un)deploying these jobs changes among the active schedules."""
        report = SyncReport()
        for job in jobs:
            scheduled = deployed and job.enabled and bool(job.schedule)
            entry = self._entries.get(job.id)
            if scheduled and entry is None:
                report.created += 1
            elif scheduled and entry is not None and not entry.same_schedule(job):
                report.updated += 1
            elif not scheduled and entry is not None:
                report.deleted += 1
            else:
                report.unchanged += 1
        return report

    # --- the work -----------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """The earliest pending fire time (None with no active schedule)."""
        with self._tick_lock:
            self._drop_stale_heads()
            return self._heap[0][0] if self._heap else None

    def tick(self, now: datetime | None = None) -> list[Fire]:
        """Pick up changes, then handle every slot due at ``now``, in fire-time order."""
        with self._tick_lock:
            now = now or self._clock()
            self._apply_pending(now)
            done: list[Fire] = []
            while self._heap and self._heap[0][0] <= now and not self._stopping.is_set():
                _, gen, job_id = heapq.heappop(self._heap)
                entry = self._entries.get(job_id)
                if entry is None or entry.gen != gen:
                    continue  # superseded by a later change
                fire = self._handle(entry, now)
                if fire is not None:
                    done.append(fire)
            return done

    def _handle(self, entry: _Entry, now: datetime) -> Fire | None:
        on_time = entry.next_slot > now - self._grace
        slot = entry.next_slot
        if not on_time:
            slot = (
                latest_fire(entry.schedule, entry.timezone, entry.last_slot, now - self._grace)
                or slot
            )
        # Read the job fresh: its configuration is snapshotted by the run, and a change
        # whose wake-up has not been handled yet must not fire an outdated schedule.
        job = self._store.jobs.get_any(entry.job_id)
        project = self._store.projects.get_any(entry.project_id) if job else None
        if (
            job is None
            or project is None
            or not _active(project, job)
            or (not entry.same_schedule(job))
        ):
            self._drop(entry.job_id)
            if job is not None and project is not None and _active(project, job):
                self._add(project, job, now, None)  # the schedule changed: from now on
            return None
        outcome: Literal["started", "skipped", "missed", "failed"]
        if not on_time and self._policy == "skip":
            outcome = "missed"
            log.warning(
                "missed scheduled fires skipped (missed_fire_policy skip)",
                extra={
                    "job_id": job.id,
                    "first_missed": entry.next_slot.isoformat(),
                    "last_missed": slot.isoformat(),
                },
            )
        else:
            outcome = self._start(project, job, slot)
        self._store.local.set_slot(job.id, slot, now)
        if on_time:
            entry.last_slot = slot
            entry.next_slot = next(entry.fires)
        else:
            entry.restart_after(slot)
        heapq.heappush(self._heap, (entry.next_slot, entry.gen, entry.job_id))
        return Fire(job.id, slot, outcome)

    def _start(
        self, project: Project, job: Job, slot: datetime
    ) -> Literal["started", "skipped", "failed"]:
        try:
            started = self._fire(project, job, slot)
        except RunyardError as exc:  # e.g. the project's directory is missing: the run
            # is recorded as failed with this reason; no traceback needed.
            log.warning(
                "a scheduled run could not start: %s",
                exc.detail,
                extra={"job_id": job.id, "slot": slot.isoformat()},
            )
            return "failed"
        except Exception:
            log.exception(
                "a scheduled run could not be started",
                extra={"job_id": job.id, "slot": slot.isoformat()},
            )
            return "failed"
        if not started:
            log.info(
                "scheduled run not started: a run of the job is still active "
                "(concurrency_policy Forbid) or the slot already has its run",
                extra={"job_id": job.id, "slot": slot.isoformat()},
            )
            return "skipped"
        return "started"

    # --- keeping entries in step with the database --------------------------------------

    def _apply_pending(self, now: datetime) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        slots = self._store.local.slots()
        for kind, key in pending:
            if kind == "all":
                self._load_all(now, slots)
            elif kind == "forget":
                self._drop(key)
            elif kind == "project":
                project = self._store.projects.get_any(key)
                jobs = self._store.jobs.for_project(key) if project else []
                ids = {j.id for j in jobs}
                for entry in [e for e in self._entries.values() if e.project_id == key]:
                    if entry.job_id not in ids:
                        self._drop(entry.job_id)
                for job in jobs:
                    assert project is not None
                    self._sync(project, job, now, slots)
            else:
                changed = self._store.jobs.get_any(key)
                owner = self._store.projects.get_any(changed.project_id) if changed else None
                if changed is None or owner is None:
                    self._drop(key)
                else:
                    self._sync(owner, changed, now, slots)
        self._compact()

    def _load_all(self, now: datetime, slots: dict[str, datetime]) -> None:
        wanted: dict[str, tuple[Project, Job]] = {}
        for project in self._store.projects.list_deployed():
            for job in self._store.jobs.for_project(project.id):
                if _active(project, job):
                    wanted[job.id] = (project, job)
        for job_id in [j for j in self._entries if j not in wanted]:
            self._drop(job_id)
        for project, job in wanted.values():
            self._sync(project, job, now, slots)
        for job_id in slots.keys() - wanted.keys():
            self._store.local.forget_slot(job_id)  # no longer scheduled: no missed fires

    def _sync(self, project: Project, job: Job, now: datetime, slots: dict[str, datetime]) -> None:
        if not _active(project, job):
            self._drop(job.id)
            return
        entry = self._entries.get(job.id)
        if entry is not None and entry.same_schedule(job):
            return
        # A changed schedule starts from now; a job seen for the first time continues from
        # the last slot considered before a restart (its missed slots are then due).
        since = None if entry is not None else slots.get(job.id)
        self._drop(job.id, keep_state=True)
        self._add(project, job, now, since)

    def _add(self, project: Project, job: Job, now: datetime, since: datetime | None) -> None:
        try:
            entry = _Entry(job, since or now, next(self._gen))
        except Exception:  # a schedule that never fires (e.g. 30 February)
            log.warning(
                "the job's schedule has no next fire time; it will not run",
                extra={"job_id": job.id, "schedule": job.schedule},
            )
            return
        if since is None:
            self._store.local.set_slot(job.id, now, now)
        self._entries[job.id] = entry
        heapq.heappush(self._heap, (entry.next_slot, entry.gen, entry.job_id))

    def _drop(self, job_id: str, keep_state: bool = False) -> None:
        """Stop scheduling the job; its heap item becomes stale and is skipped. Its state
        goes too, so re-enabling or redeploying it later counts no fires as missed."""
        if self._entries.pop(job_id, None) is not None and not keep_state:
            self._store.local.forget_slot(job_id)

    def _drop_stale_heads(self) -> None:
        while self._heap:
            _, gen, job_id = self._heap[0]
            entry = self._entries.get(job_id)
            if entry is not None and entry.gen == gen:
                return
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        """Rebuild the heap when superseded items pile up (many changes, few fires)."""
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [(e.next_slot, e.gen, e.job_id) for e in self._entries.values()]
            heapq.heapify(self._heap)

    # --- the background thread ----------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="runyard-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop at a safe point: between two fires, each one's slot already recorded."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        next_resync = time.monotonic() + RESYNC_SECONDS
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                self.tick()
            except Exception:
                log.exception("a scheduler tick failed; retrying shortly")
                self._stopping.wait(5)
            if time.monotonic() >= next_resync:
                next_resync = time.monotonic() + RESYNC_SECONDS
                self.resync()
                continue
            timeout = min(MAX_SLEEP_SECONDS, next_resync - time.monotonic())
            due = self.next_due()
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self._clock()).total_seconds()))
            self._wakeup.wait(timeout)


def _active(project: Project, job: Job) -> bool:
    return project.deployed and job.enabled and bool(job.schedule)
