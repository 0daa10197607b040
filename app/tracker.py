"""Turns executor events into run state.

Executors report that a run started, wrote log output, or finished; the tracker records it.
A run leaves an active status exactly once (a conditional UPDATE), and whatever must happen
once per finished run hangs off that moment: hooks inside the same transaction (the
notification outbox) and hooks after the commit (dependent jobs, metrics).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from app.ids import utcnow
from app.models import RunRecord
from app.ports import Outcome
from app.store import Store

log = logging.getLogger("runyard.tracker")

RunHook = Callable[[RunRecord], None]
ChangeKind = Literal["status", "log"]
# Told after the commit that a run's status changed ("status", text "") or that a chunk was
# appended to its log ("log", the chunk as stored, secrets masked). Called on the thread
# that made the change: a listener must return at once (hand the news to its own loop).
RunListener = Callable[[ChangeKind, str], None]


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
        # Per-run listeners (waits and event streams), guarded by a lock held only to copy
        # or change the lists (the event loop's thread takes it to stop listening).
        self._listeners: dict[str, list[RunListener]] = {}
        self._listeners_lock = threading.Lock()
        # "Append a chunk and tell the listeners" is one step under the run's stripe, so a
        # listener registering while it reads the stored log sees each chunk exactly once:
        # in that read or as news (see listen). Striped: runs do not queue on each other.
        self._append_locks = tuple(threading.Lock() for _ in range(16))

    def started(self, run_id: str, at: datetime) -> None:
        with self._store.database.write():
            if not self._store.runs.mark_running(run_id, at, self._clock()):
                return
            record = self._store.runs.record(run_id)
            assert record is not None
            for hook in self.on_started_tx:
                hook(record)
        log.info("run started", extra={"run_id": run_id})
        self._tell(run_id, "status", "")
        self._after(self.on_started, record)

    def log(self, run_id: str, text: str) -> None:
        with self._append_lock(run_id):
            self._store.runs.append_log(run_id, text, self._cap, self._clock())
            if run_id in self._listeners:
                # The chunk as the store keeps it: the run's secret values masked.
                self._tell(run_id, "log", self._store.runs.mask_log(run_id, text))

    def _append_lock(self, run_id: str) -> threading.Lock:
        return self._append_locks[hash(run_id) % len(self._append_locks)]

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
        self._tell(run_id, "status", "")
        self._after(self.on_finished, record)
        return True

    # --- listeners ----------------------------------------------------------------------

    def listen(
        self,
        run_id: str,
        listener: RunListener,
        snapshot: Callable[[], object] | None = None,
    ) -> Callable[[], None]:
        """Tell ``listener`` about each change of ``run_id`` until the returned function is
        called (it never blocks). ``snapshot`` runs while no chunk of this run can be
        appended, so what it reads and what the listener hears afterwards neither overlap
        nor leave a gap; it blocks, so call this from a worker thread when given one."""
        if snapshot is None:  # no append lock: the event loop's thread may call this
            self._add(run_id, listener)
        else:
            with self._append_lock(run_id):
                self._add(run_id, listener)
                snapshot()

        def stop() -> None:
            with self._listeners_lock:
                found = self._listeners.get(run_id)
                if found and listener in found:
                    found.remove(listener)
                    if not found:
                        del self._listeners[run_id]

        return stop

    def _add(self, run_id: str, listener: RunListener) -> None:
        with self._listeners_lock:
            self._listeners.setdefault(run_id, []).append(listener)

    def _tell(self, run_id: str, kind: ChangeKind, text: str) -> None:
        if run_id not in self._listeners:
            return
        with self._listeners_lock:
            listeners = tuple(self._listeners.get(run_id, ()))
        for listener in listeners:
            try:
                listener(kind, text)
            except Exception:
                log.exception("a run listener failed", extra={"run_id": run_id})

    @staticmethod
    def _after(hooks: list[RunHook], record: RunRecord) -> None:
        for hook in hooks:
            try:
                hook(record)
            except Exception:
                log.exception("a hook after a run changed failed", extra={"run_id": record.id})
