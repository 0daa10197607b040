"""The run queue: queued runs start, oldest first, when their place frees up.

The queue is the runs table: a run is recorded with status ``queued`` (app/store/runs.py,
``insert_exclusive``) when its job's concurrency_policy is Queue and the job has a run that
has not ended, or when its org already has ``max_concurrent_runs`` active runs (the org's
own value, else RUNYARD_LOCAL_MAX_RUNS_PER_ORG). Nothing about the queue lives in memory,
so a restart (even a kill -9) loses nothing: the dispatcher reads the table again.

The dispatcher is woken when a run ends (the tracker's after-commit hook), when a run is
queued, on start-up and every ``poll_seconds``. It walks the queued runs in seq order and
starts each whose place is free. "May this one start?" and "it is starting" are one
conditional UPDATE (``claim_queued``): two wakers, or two threads, can never start two runs
for one place. A claimed run is then launched like any other run; an executor that refuses
it for now (its own count of processes lags the database by a moment after a run ends) gets
it put back, at the same place, and the dispatcher tries again shortly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from app.errors import RateLimited
from app.ids import utcnow
from app.models import RunRecord
from app.store import Store

log = logging.getLogger("runyard.queue")

POLL_SECONDS = 5.0  # a safety net: ends and new queued runs wake the dispatcher at once
RETRY_SECONDS = 0.2  # after an executor refused a claimed run for now

LaunchFn = Callable[[RunRecord], None]
"""Hand a claimed (now pending) run to the executor; raise RateLimited to put it back."""


class RunQueue:
    def __init__(
        self,
        store: Store,
        default_cap: int | None,
        *,
        clock: Callable[[], datetime] = utcnow,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._store = store
        self._default_cap = default_cap
        self._clock = clock
        self.poll_seconds = poll_seconds
        self.launch: LaunchFn | None = None  # set by the run service
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pass = threading.Lock()  # one dispatch pass at a time in this process

    def cap_of(self, org_id: str) -> int | None:
        """How many runs of the org may be active at once; None: no cap (Kubernetes, where
        the cluster's own quotas apply, unless the org has its own max_concurrent_runs)."""
        own = self._store.orgs.max_concurrent_runs(org_id)
        return own if own is not None else self._default_cap

    def wake(self) -> None:
        self._wake.set()

    def dispatch_once(self) -> int:
        """Start every queued run whose place is free; how many started. A run refused for
        now stays queued (True is returned in ``retry_soon``)."""
        started, _ = self._dispatch()
        return started

    def _dispatch(self) -> tuple[int, bool]:
        launch = self.launch
        if launch is None:
            return 0, False
        started = 0
        retry_soon = False
        with self._pass:
            full: set[str] = set()  # orgs found at their cap in this pass
            caps: dict[str, int | None] = {}
            for run_id, org_id, policy in self._store.runs.queued():
                if org_id in full or self._stopping.is_set():
                    continue
                cap = caps.setdefault(org_id, self.cap_of(org_id))
                if not self._store.runs.claim_queued(
                    run_id, exclusive=policy != "Allow", cap=cap, now=self._clock()
                ):
                    if cap is not None and self._store.runs.org_active_count(org_id) >= cap:
                        full.add(org_id)
                    continue
                record = self._store.runs.record(run_id)
                if record is None or record.status != "pending":
                    continue  # cancelled between the claim and now
                try:
                    launch(record)
                except RateLimited:
                    self._store.runs.requeue(run_id, self._clock())
                    full.add(org_id)
                    retry_soon = True
                    continue
                except Exception:
                    # The launcher records the run as failed with the reason; the queue
                    # goes on with the next one.
                    log.exception("a queued run could not start", extra={"run_id": run_id})
                    continue
                started += 1
                log.info("queued run started", extra={"run_id": run_id, "org_id": org_id})
        return started, retry_soon

    # --- the background thread ----------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._wake.set()  # queued runs left by the previous process start now
        self._thread = threading.Thread(target=self._loop, name="runyard-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                _, retry_soon = self._dispatch()
            except Exception:
                log.exception("a queue dispatch pass failed; retrying shortly")
                retry_soon = True
            if retry_soon:
                self._stopping.wait(RETRY_SECONDS)
                self._wake.set()
