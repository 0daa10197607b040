"""Retention: finished runs, their logs and artifacts older than the configured age are
pruned in the background. Active runs are never touched, whatever their age. Audit events
have their own age (``audit_days``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

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
    ) -> None:
        self._store = store
        self._days = days
        self._audit_days = audit_days  # 0 keeps audit events forever
        self._clock = clock
        self._interval = interval_seconds
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
        removed = self._store.runs.delete_older_than(cutoff)
        if removed:
            log.info("pruned old runs", extra={"removed": removed, "days": self._days})
        # The runs' artifact rows went with them (ON DELETE CASCADE); their files are
        # shared by content, so only the ones no run references any more are deleted.
        swept = self._store.artifacts.sweep()
        if swept:
            log.info("deleted unreferenced artifact files", extra={"removed": swept})
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
