"""Retention deletes in small batches, each its own short transaction, and finds the runs
to delete outside any transaction: a writer waiting for the lock gets it between two
batches instead of waiting for the whole prune. Checked by structure (a writer on another
thread commits between batches; the retention connection holds no transaction while it
looks up or pauses), not by timing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.ids import utcnow
from app.services.retention import RetentionWorker
from app.store import Store
from tests.factories import run_record

OLD = datetime(2026, 1, 1, tzinfo=UTC)


def _seeded(tmp_path: Path) -> Store:
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    with store.database.write() as db:
        db.conn.execute("INSERT INTO orgs VALUES ('org_a', 'acme', '2026-01-01T00:00:00Z')")
    for i in range(120):
        run_id = f"run_old_{i:03d}"
        store.runs.insert(
            run_record(
                org_id="org_a",
                run_id=run_id,
                status="running" if i == 7 else "success",
                created_at=OLD + timedelta(minutes=i),
            )
        )
        store.runs.append_log(run_id, f"line of {run_id}\n", 10_000, OLD)
        with store.database.write() as db:
            db.conn.execute(
                "INSERT INTO run_artifacts VALUES (?, 'run_results.json', ?, 10, ?)",
                (run_id, "ab" * 32, "2026-01-01T00:00:00Z"),
            )
    return store


def test_retention_batches_interleave_with_a_writer(tmp_path: Path) -> None:
    store = _seeded(tmp_path)
    runs = store.runs
    conn = store.database.db.conn  # the retention thread's connection (this thread)
    original_old, original_delete = runs.old_runs, runs.delete_runs
    batches: list[int] = []
    events: list[str] = []

    def old_runs(cutoff: datetime, limit: int) -> list[int]:
        assert not conn.in_transaction, "old runs are looked up outside a transaction"
        return original_old(cutoff, limit)

    def write_from_another_thread() -> None:
        done = threading.Event()

        def write() -> None:
            store.runs.insert(run_record(org_id="org_a", status="pending", created_at=utcnow()))
            events.append("write")
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        # The lock is free between batches: the writer commits without waiting for the
        # prune (were a transaction still open here, it would wait out the busy timeout).
        assert done.wait(5), "a writer could not commit between two retention batches"
        writer.join()

    def delete_runs(seqs: Sequence[int]) -> int:
        removed = original_delete(seqs)
        assert not conn.in_transaction, "each batch commits before the next"
        batches.append(len(seqs))
        events.append("batch")
        write_from_another_thread()
        return removed

    runs.old_runs = old_runs  # type: ignore[method-assign]
    runs.delete_runs = delete_runs  # type: ignore[method-assign]
    worker = RetentionWorker(
        store, days=30, clock=lambda: OLD + timedelta(days=100), pause_seconds=0, max_batch=16
    )
    assert worker.prune_once() == 119
    assert len(batches) >= 119 // 16 and max(batches) <= 16
    assert events[:4] == ["batch", "write", "batch", "write"]
    # The active run stays; the others went with their logs and artifact rows.
    left = store.database.rows("SELECT id, status FROM runs WHERE created_at < '2026-02-01'")
    assert left == [{"id": "run_old_007", "status": "running"}]
    assert store.database.scalar("SELECT count(*) FROM run_log_chunks") == 1
    assert store.database.scalar("SELECT count(*) FROM run_artifacts") == 1
    store.close()


def test_batches_grow_towards_the_time_budget_and_stay_capped(tmp_path: Path) -> None:
    store = _seeded(tmp_path)
    seen: list[int] = []
    original = store.runs.delete_runs

    def delete_runs(seqs: Sequence[int]) -> int:
        seen.append(len(seqs))
        return original(seqs)

    store.runs.delete_runs = delete_runs  # type: ignore[method-assign]
    # A generous budget per batch: cheap batches grow, up to the cap.
    worker = RetentionWorker(
        store,
        days=30,
        clock=lambda: OLD + timedelta(days=100),
        batch_seconds=10.0,
        pause_seconds=0,
        max_batch=50,
        first_batch=5,
    )
    assert worker.prune_once() == 119
    assert seen[0] == 5 and seen[1] > 5 and max(seen) == 50
    store.close()
