"""Turns executor events into run state.

Executors report that a run started, wrote log output, or finished; the tracker records it.
A run leaves an active status exactly once (a conditional UPDATE), and whatever must happen
once per finished run hangs off that moment: hooks inside the same transaction (the
notification outbox) and hooks after the commit (dependent jobs, metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from app.ids import utcnow
from app.models import RunRecord
from app.ports import Outcome
from app.store import Store

log = logging.getLogger("runyard.tracker")

RunHook = Callable[[RunRecord], None]


class RunTracker:
    def __init__(
        self, store: Store, log_cap_bytes: int, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._cap = log_cap_bytes
        self._clock = clock
        # Called inside the transaction that changes the status: their writes commit with it.
        self.on_started_tx: list[RunHook] = []
        self.on_finished_tx: list[RunHook] = []
        self.on_started: list[RunHook] = []
        # Called after the commit; failures are logged, never undo the status change.
        self.on_finished: list[RunHook] = []

    def started(self, run_id: str, at: datetime) -> None:
        with self._store.database.write():
            if not self._store.runs.mark_running(run_id, at, self._clock()):
                return
            record = self._store.runs.record(run_id)
            assert record is not None
            for hook in self.on_started_tx:
                hook(record)
        log.info("run started", extra={"run_id": run_id})
        self._after(self.on_started, record)

    def log(self, run_id: str, text: str) -> None:
        self._store.runs.append_log(run_id, text, self._cap, self._clock())

    def finished(self, run_id: str, outcome: Outcome) -> bool:
        """Record the end of a run; True when this call moved it to its terminal status."""
        with self._store.database.write():
            changed = self._store.runs.finish(
                run_id,
                status=outcome.status,
                end_time=outcome.end_time,
                exit_code=outcome.exit_code,
                error=outcome.error,
                results=outcome.results,
                now=self._clock(),
            )
            if not changed:
                return False
            record = self._store.runs.record(run_id)
            assert record is not None
            for hook in self.on_finished_tx:
                hook(record)
        log.info(
            "run finished",
            extra={"run_id": run_id, "status": outcome.status, "exit_code": outcome.exit_code},
        )
        self._after(self.on_finished, record)
        return True

    @staticmethod
    def _after(hooks: list[RunHook], record: RunRecord) -> None:
        for hook in hooks:
            try:
                hook(record)
            except Exception:
                log.exception("a hook after a run changed failed", extra={"run_id": record.id})
