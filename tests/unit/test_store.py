"""The store: migrations from an empty and from an older database, pragmas, log capping."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from app.ids import utcnow
from app.models import RunRecord
from app.store import Store
from app.store.migrations import CURRENT_VERSION, MIGRATIONS
from tests.factories import run_record


def _record(run_id: str = "run_a", job_id: str = "job_a") -> RunRecord:
    now = utcnow()
    return run_record(
        org_id="org_a",
        run_id=run_id,
        project_id="proj_a",
        job_id=job_id,
        status="running",
        start_time=now,
        created_at=now,
    )


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    with store.database.write() as db:
        db.conn.execute("INSERT INTO orgs VALUES ('org_a', 'acme', '2026-01-01T00:00:00Z')")
    return store


def test_fresh_database_reaches_current_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "fresh.db")
    assert store.migrate() == CURRENT_VERSION
    assert store.migrate() == CURRENT_VERSION  # idempotent
    assert store.database.scalar("PRAGMA journal_mode") == "wal"
    assert store.database.scalar("PRAGMA foreign_keys") == 1
    assert store.database.scalar("PRAGMA busy_timeout") >= 5000


def test_older_database_is_migrated_keeping_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0].statements:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO orgs VALUES ('org_old', 'old', '2025-01-01T00:00:00Z')")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.migrate() == CURRENT_VERSION
    assert store.orgs.by_slug("old") is not None
    assert store.database.scalar("SELECT count(*) FROM runs") == 0


def test_log_cap_keeps_head_and_tail_with_marker(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.runs.insert(_record())
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(200):
        store.runs.append_log("run_a", f"line {i:04d} " + "x" * 90 + "\n", 4000, now)
    text = store.runs.read_log("run_a")
    assert len(text.encode()) < 4300
    assert text.startswith("line 0000")
    assert text.rstrip().endswith("line 0199 " + "x" * 90)
    assert "bytes of log were dropped here" in text


def test_log_single_huge_chunk_is_cut(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.runs.insert(_record())
    now = datetime(2026, 1, 1, tzinfo=UTC)
    store.runs.append_log("run_a", "start\n", 1000, now)
    store.runs.append_log("run_a", "y" * 5000 + "END\n", 1000, now)
    text = store.runs.read_log("run_a")
    assert text.startswith("start\n") and text.endswith("END\n")
    assert len(text.encode()) < 1200


def test_finish_is_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.runs.insert(_record())
    end = utcnow()
    assert store.runs.finish(
        "run_a", status="success", end_time=end, exit_code=0, error=None, now=end
    )
    assert not store.runs.finish(
        "run_a", status="failed", end_time=end, exit_code=1, error="late", now=end
    )
    run = store.runs.get("org_a", "run_a")
    assert run is not None and run.status == "success" and run.duration_seconds is not None


def test_pagination_newest_first(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for i in range(7):
        store.runs.insert(_record(f"run_{i}"))
    first = store.runs.page("org_a", job_id="job_a", limit=3)
    assert [r.id for r in first.runs] == ["run_6", "run_5", "run_4"]
    assert first.total == 7 and first.next_cursor
    second = store.runs.page("org_a", job_id="job_a", limit=3, cursor=int(first.next_cursor))
    assert [r.id for r in second.runs] == ["run_3", "run_2", "run_1"]
    third = store.runs.page("org_a", job_id="job_a", limit=3, cursor=int(second.next_cursor or 0))
    assert [r.id for r in third.runs] == ["run_0"] and third.next_cursor is None
