"""The tracker's dispatcher: Job events in, run state forward (see ``k8s_tracker``).

One thread owns the state here. It drains the queue in batches, keeps the newest state of
each Job in a batch (by resourceVersion), and per Job: identifies its run (a Job a CronJob
created gets its run record through ``RunService.start_run``: exactly one, the database's
unique index on (namespace, Job name) turning a repeat into None), marks it running, or hands
it to the pipeline that reads its logs and records its end (``k8s_pipeline``). A Job deleted
before its end makes its run ``lost`` after a short grace, unless runyard deleted it itself
(cancel: ``expect_deletion``), whose caller records ``cancelled``.

Every step is monotone and conditional in the database (pending -> running -> terminal,
each at most once), so repeated, stale or out-of-order events, a resync racing the watch,
or a restart replaying everything change nothing twice; the memory here only saves work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from app.errors import RunyardError
from app.executors.k8s.status import JobView, resource_version, view_of
from app.executors.k8s.tracking.finish import Finish, Finisher
from app.executors.k8s.tracking.pipeline import Completed, Pipeline
from app.models import RunRecord
from app.ports import RunEvents, RunStarter
from app.store import Store
from app.types import Obj

log = logging.getLogger("runyard.k8s_tracker")

Key = tuple[str, str]  # (namespace, Job name)
Stage = Literal["pending", "running", "finishing", "done"]

BATCH_MAX = 2000  # queue items handled per pass
LOST_GRACE_SECONDS = 1.0  # a deletion seen while runyard's own cancel is still recording
EXPECTED_DELETION_SECONDS = 60.0
STARTUP_SLACK = timedelta(seconds=5)  # clocks of the old and new process may differ a little
REMEMBER_DONE = 50_000  # finished Jobs remembered, so replays cost no database read


class Seen(msgspec.Struct):
    """A Job from a watch event or a list."""

    namespace: str
    obj: Obj
    deleted: bool


class Listed(msgspec.Struct):
    """A full list of a namespace (None: of every namespace): the Jobs in it, and when it
    was asked for."""

    namespace: str | None
    keys: frozenset[Key]
    asked_at: datetime
    initial: bool


Item = Seen | Listed | Completed


class _Tracked(msgspec.Struct):
    run_id: str
    uid: str
    stage: Stage


class Dispatcher:
    def __init__(
        self,
        store: Store,
        events: RunEvents,
        finisher: Finisher,
        namespace_for: Callable[[str], str],
        runs: RunStarter,
        *,
        workers: int,
        launch_grace: timedelta,
        write_lock: threading.Lock,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._events = events
        self.queue: queue.Queue[Item | None] = queue.Queue()
        self._pipeline = Pipeline(finisher, workers, self.queue.put)
        self._namespace_for = namespace_for
        self._runs = runs  # resolved late: the run service is built after the executor
        # A run recorded this recently may still be having its Job created: not lost yet.
        self.launch_grace = launch_grace
        self._write_lock = write_lock
        self._clock = clock
        self._lock = threading.Lock()  # guards _expected (cancels come from API threads)
        self._expected: dict[Key, float] = {}
        # Owned by the dispatching thread.
        self._jobs: dict[Key, _Tracked] = {}
        self._done: OrderedDict[Key, str] = OrderedDict()  # Job -> uid
        self._ignored: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._lost_due: dict[Key, tuple[float, JobView]] = {}
        self._retry: list[tuple[float, Finish]] = []
        self.initial: set[str | None] = set()
        self.synced = threading.Event()  # every namespace listed once and handled
        self.started_at = clock() - STARTUP_SLACK

    def run(self, stopping: threading.Event) -> None:
        """Dispatch until ``stopping``."""
        self._pipeline.start()
        try:
            while not stopping.is_set():
                batch = self._drain()
                try:
                    self._dispatch(batch)
                except Exception:
                    log.exception("handling Job events failed")
                finally:
                    for _ in batch:
                        self.queue.task_done()
        finally:
            self._pipeline.stop()

    def expect_deletion(self, key: Key) -> None:
        with self._lock:
            self._expected[key] = time.monotonic() + EXPECTED_DELETION_SECONDS

    def busy(self) -> bool:
        return bool(
            self._pipeline.busy() or self.queue.unfinished_tasks or self._lost_due or self._retry
        )

    def _drain(self) -> list[Item]:
        batch: list[Item] = []
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return batch
        if first is None:
            self.queue.task_done()
            return batch
        batch.append(first)
        while len(batch) < BATCH_MAX:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.queue.task_done()
                break
            batch.append(item)
        return batch

    def _dispatch(self, batch: list[Item]) -> None:
        latest: dict[Key, Seen] = {}
        listed: list[Listed] = []
        for item in batch:
            if isinstance(item, Seen):
                key = (item.namespace, str((item.obj.get("metadata") or {}).get("name")))
                if _newer(item, latest.get(key)):
                    latest[key] = item
            elif isinstance(item, Listed):
                listed.append(item)
            else:
                self._completed(item)
        finishing: list[Finish] = []
        for key, seen in latest.items():
            self._handle(key, seen, finishing)
        if listed:
            self._vanished(listed, finishing)
        now = time.monotonic()
        for key, (due, view) in list(self._lost_due.items()):
            if due <= now:
                del self._lost_due[key]
                self._lose(key, view, finishing)
        finishing.extend(item for due, item in self._retry if due <= now)
        self._retry = [(due, item) for due, item in self._retry if due > now]
        self._pipeline.submit(finishing)
        for item in listed:
            if item.initial:
                self.initial.discard(item.namespace)
                if not self.initial:
                    self.synced.set()

    def _handle(self, key: Key, seen: Seen, finishing: list[Finish]) -> None:
        view = view_of(seen.obj, seen.namespace)
        if view is None:
            return
        if self._done.get(key) == view.uid:
            if seen.deleted:
                del self._done[key]
            return
        tracked = self._jobs.get(key)
        if tracked is not None and view.uid and tracked.uid and tracked.uid != view.uid:
            tracked = None  # another Job of the same name (the old one's run is recorded)
        if tracked is None:
            tracked = self._identify(key, view)
            if tracked is None:
                return
            self._jobs[key] = tracked
        if tracked.stage in ("finishing", "done"):
            return
        if view.terminal:
            tracked.stage = "finishing"
            finishing.append(
                Finish(namespace=key[0], name=key[1], run_id=tracked.run_id, view=view)
            )
        elif seen.deleted:
            if self._take_expected(key):
                self._forget(key, view.uid)  # runyard's cancel records the end
            else:
                self._lost_due[key] = (time.monotonic() + LOST_GRACE_SECONDS, view)
        elif view.phase == "running" and tracked.stage == "pending":
            with self._write_lock:
                self._events.started(tracked.run_id, view.start_time or self._clock())
            tracked.stage = "running"

    def _identify(self, key: Key, view: JobView) -> _Tracked | None:
        """The run of a Job seen for the first time; a scheduled Job gets its run record."""
        if (key[0], key[1], view.uid) in self._ignored:
            return None
        run = self._store.runs.by_k8s_job(*key)
        if run is None and view.run_id is None and view.scheduled and view.job_id:
            record = self._record_scheduled(key, view)
            run = record if record is not None else self._store.runs.by_k8s_job(*key)
        if (key[0], key[1], view.uid) in self._ignored:
            return None  # _record_scheduled said why
        if run is None or (view.run_id is not None and run.id != view.run_id):
            why = "it names another run" if run is not None else "runyard has no run for it"
            self._ignore(key, view, why)
            return None
        if run.is_terminal:
            self._forget(key, view.uid)
            return None
        if run.status == "pending" and view.suspended and run.created_at < self.started_at:
            # A process that stopped recorded the run but never resumed its Job: back in
            # the queue, whose dispatcher resumes it in turn (docs/queues.md#kubernetes).
            self._store.runs.requeue(run.id, self._clock())
        return _Tracked(run.id, view.uid, "running" if run.status == "running" else "pending")

    def _record_scheduled(self, key: Key, view: JobView) -> RunRecord | None:
        assert view.job_id is not None
        job = self._store.jobs.get_any(view.job_id)
        if job is None:
            self._ignore(key, view, f"its job {view.job_id} no longer exists")
            return None
        slug = self._store.orgs.slug_of(job.org_id)
        if slug is None or self._namespace_for(slug) != key[0]:
            # A label naming another org's job: only the namespace says whose Job it is.
            self._ignore(key, view, f"its job {view.job_id} belongs to another namespace")
            return None
        project = self._store.projects.get_any(job.project_id)
        if project is None:
            self._ignore(key, view, f"the project of job {view.job_id} no longer exists")
            return None
        try:
            return self._runs.start_run(
                project,
                job,
                triggered_by="scheduled",
                scheduled_for=view.scheduled_for,
                job_name=view.name,
                suspended=view.suspended,
            )
        except RunyardError as exc:
            self._ignore(key, view, f"its run could not be recorded: {exc.detail}")
            return None

    def _vanished(self, listed: list[Listed], finishing: list[Finish]) -> None:
        """Active runs whose Job is in no list: lost (unless just launched or cancelled).
        One read of the active runs for the whole batch of lists (a resync of a thousand
        namespaces is a thousand lists)."""
        by_namespace = {item.namespace: item for item in listed}
        everywhere = by_namespace.get(None)
        for run in self._store.runs.active("kubernetes"):
            key = (run.namespace or "", run.job_name or "")
            found = by_namespace.get(key[0]) or everywhere
            if (
                found is None
                or key in found.keys
                or self._may_be_launching(run.created_at, found.asked_at)
                or (key in self._jobs and self._jobs[key].stage in ("finishing", "done"))
                or key in self._lost_due
            ):
                continue
            if self._take_expected(key):
                continue
            self._jobs[key] = _Tracked(run.id, "", "finishing")
            finishing.append(Finish(namespace=key[0], name=key[1], run_id=run.id, view=None))

    def _may_be_launching(self, created_at: datetime, asked_at: datetime) -> bool:
        """Whether this process may still be creating the run's Job. A run recorded before
        this process started was launched, or never will be, by one that has stopped."""
        return created_at >= asked_at - self.launch_grace and created_at >= self.started_at

    def _lose(self, key: Key, view: JobView, finishing: list[Finish]) -> None:
        tracked = self._jobs.get(key)
        if tracked is None or tracked.stage in ("finishing", "done") or self._take_expected(key):
            return
        tracked.stage = "finishing"
        finishing.append(
            Finish(namespace=key[0], name=key[1], run_id=tracked.run_id, view=view, lost=True)
        )

    def _completed(self, batch: Completed) -> None:
        """Back from the pool: forget what was recorded; try the rest again later (the
        cluster could not be read), backing off up to 30 seconds."""
        self._pipeline.returned(batch)
        if batch.read:
            return
        retry = {id(item) for item in batch.retry}
        for item in batch.items:
            if id(item) in retry:
                item.tries += 1
                due = time.monotonic() + min(30.0, 0.5 * 2**item.tries)
                self._retry.append((due, item))
            else:
                tracked = self._jobs.get((item.namespace, item.name))
                self._forget((item.namespace, item.name), tracked.uid if tracked else "")

    # --- bookkeeping ----------------------------------------------------------------------

    def _forget(self, key: Key, uid: str) -> None:
        self._jobs.pop(key, None)
        self._done[key] = uid
        self._done.move_to_end(key)
        while len(self._done) > REMEMBER_DONE:
            self._done.popitem(last=False)

    def _ignore(self, key: Key, view: JobView, why: str) -> None:
        self._ignored[(key[0], key[1], view.uid)] = None
        while len(self._ignored) > REMEMBER_DONE:
            self._ignored.popitem(last=False)
        log.warning(
            "ignoring Kubernetes Job %s/%s: %s", key[0], key[1], why, extra={"job_id": view.job_id}
        )

    def _take_expected(self, key: Key) -> bool:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, until in self._expected.items() if until < now]:
                del self._expected[stale]
            return self._expected.pop(key, None) is not None


def _newer(candidate: Seen, current: Seen | None) -> bool:
    """Whether ``candidate`` shows a later state of the Job than ``current`` (later in the
    batch wins when resourceVersions are not comparable)."""
    if current is None:
        return True
    new, old = resource_version(candidate.obj), resource_version(current.obj)
    return new is None or old is None or new >= old
