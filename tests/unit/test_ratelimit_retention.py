from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.errors import RateLimited
from app.services.ratelimit import RateLimiter
from app.services.retention import RetentionWorker
from app.store import Store
from tests.unit.test_store import _record


def test_bucket_allows_budget_then_refuses_with_retry_after() -> None:
    now = [0.0]
    limiter = RateLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("tok_a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("tok_a")
    assert refused.value.headers["Retry-After"] == "20"
    limiter.take("tok_b")  # other tokens have their own budget
    now[0] = 20.0
    limiter.take("tok_a")  # refilled one request


def test_retention_prunes_old_finished_runs_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    with store.database.write() as db:
        db.conn.execute("INSERT INTO orgs VALUES ('org_a', 'acme', '2026-01-01T00:00:00Z')")
    old = datetime(2026, 1, 1, tzinfo=UTC)
    for run_id, status in (
        ("run_old_done", "success"),
        ("run_old_active", "running"),
        ("run_new_done", "failed"),
    ):
        record = _record(run_id)
        record.status = status  # type: ignore[assignment]
        record.created_at = old if "old" in run_id else old + timedelta(days=100)
        store.runs.insert(record)
        store.runs.append_log(run_id, "hello\n", 1000, old)
    worker = RetentionWorker(store, days=30, clock=lambda: old + timedelta(days=100))
    assert worker.prune_once() == 1
    assert store.runs.record("run_old_done") is None
    assert store.runs.read_log("run_old_done") == ""
    assert store.runs.record("run_old_active") is not None
    assert store.runs.record("run_new_done") is not None
