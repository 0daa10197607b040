"""Retention: finished runs, their logs and artifacts older than the configured age are
pruned in the background. Active runs are never touched, whatever their age. Audit events
have their own age (``audit_days``).

Deleting is paced so writers never wait long: each batch is its own short transaction
(sized to take about ``batch_seconds``, cascades included), and between batches the worker
pauses at least as long as the batch took, and longer than SQLite's busy handler sleeps
between a waiting writer's tries (25 ms by then), so the writer gets the lock in the pause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from app.services.silence import MAX_THRESHOLD_MINUTES
from app.store import Store

log = logging.getLogger("runyard.retention")


class RetentionWorker:
    def __init__(
        self,
        store: Store,
        days: int,
        clock: Callable[[], datetime],
        interval_seconds: float = 3600.0,
        audit_days: int = 0,
        *,
        batch_seconds: float = 0.02,
        pause_seconds: float = 0.03,
        max_batch: int = 2000,
        first_batch: int = 10,
    ) -> None:
        self._store = store
        self._days = days
        self._audit_days = audit_days  # 0 keeps audit events forever
        self._clock = clock
        self._interval = interval_seconds
        self._batch_seconds = batch_seconds
        self._pause = pause_seconds
        self._max_batch = max_batch
        # Runs per transaction, adapting to their cost; small at first: on a database larger
        # than memory the first batches read their pages from disk.
        self._batch = min(first_batch, max_batch)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prune_once(self) -> int:
        if self._audit_days > 0:
            audit_cutoff = self._clock() - timedelta(days=self._audit_days)
            pruned = self._store.audit.delete_older_than(audit_cutoff)
            if pruned:
                log.info("pruned old audit events", extra={"removed": pruned})
        if self._days <= 0:
            return 0
        cutoff = self._clock() - timedelta(days=self._days)
        removed = self._prune_runs(cutoff)
        if removed:
            log.info("pruned old runs", extra={"removed": removed, "days": self._days})
        alerts = self._prune_runless_alerts(cutoff)
        if alerts:
            log.info("pruned old run-less alerts", extra={"removed": alerts, "days": self._days})
        # The runs' artifact rows went with them (ON DELETE CASCADE); their files are
        # shared by content, so only the ones no run references any more are deleted.
        swept = self._store.artifacts.sweep()
        if swept:
            log.info("deleted unreferenced artifact files", extra={"removed": swept})
        return removed

    def _prune_runs(self, cutoff: datetime) -> int:
        runs = self._store.runs
        removed = 0
        while seqs := runs.old_runs(cutoff, self._batch):
            started = time.monotonic()
            removed += runs.delete_runs(seqs)
            took = time.monotonic() - started
            # Too slow (pages read from disk inside the transaction, many model-history
            # rows): straight down to the size that fits batch_seconds; fast: halfway up.
            fitting = len(seqs) * self._batch_seconds / max(took, 1e-4)
            grown = fitting if took > self._batch_seconds else (self._batch + fitting) / 2
            self._batch = max(1, min(self._max_batch, int(grown)))
            if self._stop.wait(max(self._pause, took)):
                break  # stopping: the rest goes next time
        return removed

    def _prune_runless_alerts(self, cutoff: datetime) -> int:
        """Silence alerts about a slot without a run have no run row to cascade from: their
        notifications older than the runs' cutoff go here, in batches like the runs'. Their
        once-per-slot records go only when the checker can never look at that slot (or
        run) again (app/store/outbox.py ``prune_alert_records`` says when): a record
        deleted earlier would let the same slot be alerted twice."""
        outbox = self._store.outbox
        batch = min(self._max_batch, 200)  # rows with a payload each: a short transaction
        removed = 0
        while seqs := outbox.old_runless(cutoff, batch):
            started = time.monotonic()
            deleted = outbox.delete_runless(seqs)
            removed += deleted
            if not deleted or self._stop.wait(max(self._pause, time.monotonic() - started)):
                return removed
        never_checked = self._clock() - timedelta(minutes=MAX_THRESHOLD_MINUTES)
        while outbox.prune_alert_records(cutoff, never_checked, batch):
            if self._stop.wait(self._pause):
                break
        return removed

    def start(self) -> None:
        if (self._days <= 0 and self._audit_days <= 0) or self._thread is not None:
            return  # 0 keeps runs (and audit events) forever
        self._thread = threading.Thread(target=self._loop, name="runyard-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.prune_once()
            except Exception:
                log.exception("pruning old runs failed; will try again")
            if self._stop.wait(self._interval):
                return
