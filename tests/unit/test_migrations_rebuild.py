"""Table rebuilds in migrations (app/store/migrations.py, rebuild_table): rows, indexes,
triggers, AUTOINCREMENT counters and the rows of referencing tables survive; a rebuild
that would cascade or break a foreign key is refused and rolls back. Migration 6 drops
the CHECK on notification kinds this way."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from app.store import Store
from app.store.db import Database
from app.store.migrations import CURRENT_VERSION, MIGRATIONS, Migration, RebuildError, rebuild_table

NOW = "2026-04-28T02:00:00Z"


def _v5_database(path: Path) -> None:
    """A database as runyard left it at schema version 5, with notifications: three were
    written, the newest was deleted (so the AUTOINCREMENT counter is past the last row),
    the first has two attempts."""
    conn = sqlite3.connect(path)
    for migration in MIGRATIONS[:5]:
        for statement in migration.statements:
            conn.execute(statement)  # migration 5's Python step has nothing to seal here
    conn.execute("PRAGMA user_version = 5")
    conn.execute("INSERT INTO orgs VALUES ('org_1', 'acme', ?)", (NOW,))
    conn.execute(
        "INSERT INTO runs (id, org_id, project_id, job_id, job_type, status, triggered_by,"
        " command, job_version, executor, snapshot, created_at, updated_at) VALUES"
        " ('run_1', 'org_1', 'proj_1', 'job_1', 'dbt', 'failed', 'manual', 'dbt build', 1,"
        " 'local', '{}', ?, ?)",
        (NOW, NOW),
    )
    for n, kind in ((1, "slack"), (2, "webhook"), (3, "webhook")):
        conn.execute(
            "INSERT INTO notifications (id, org_id, run_id, job_id, kind, event, target, host,"
            " payload, secret, state, due_at, created_at, updated_at)"
            " VALUES (?, 'org_1', 'run_1', 'job_1', ?, 'failure', ?, 'h:443', ?, NULL,"
            " 'pending', ?, ?, ?)",
            (f"ntf_{n}", kind, f"#c{n}", b"{}" if kind == "webhook" else None, NOW, NOW, NOW),
        )
    conn.execute("DELETE FROM notifications WHERE id = 'ntf_3'")
    for attempt in (1, 2):
        conn.execute(
            "INSERT INTO notification_attempts VALUES ('ntf_1', ?, ?, 12, 503, 'busy', 'retry')",
            (attempt, NOW),
        )
    conn.commit()
    conn.close()


def _rows(db: Database, table: str) -> list[dict[str, Any]]:
    return db.rows(f"SELECT * FROM {table} ORDER BY 1, 2")  # noqa: S608 - constant names


def _indexes(db: Database, table: str) -> list[tuple[str, str]]:
    return [
        (r["name"], r["sql"])
        for r in db.rows(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL ORDER BY name",
            (table,),
        )
    ]


def _new_kind(db: Database, notification_id: str, kind: str) -> None:
    with db.write() as w:
        w.conn.execute(
            "INSERT INTO notifications (id, org_id, run_id, job_id, kind, event, host, state,"
            " due_at, created_at, updated_at) VALUES (?, 'org_1', 'run_1', 'job_1', ?,"
            " 'failure', 'h:443', 'pending', ?, ?, ?)",
            (notification_id, kind, NOW, NOW, NOW),
        )


def test_migration_6_drops_the_kind_check_and_keeps_everything_else(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    _v5_database(path)
    before = Database(path)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        _new_kind(before, "ntf_teams", "teams")
    notifications, attempts = _rows(before, "notifications"), _rows(before, "notification_attempts")
    indexes = _indexes(before, "notifications")
    assert len(attempts) == 2 and len(indexes) == 3
    before.close()

    store = Store(path)
    assert store.migrate() == CURRENT_VERSION  # 6 and every later migration
    db = store.database
    assert _rows(db, "notifications") == notifications
    assert _rows(db, "notification_attempts") == attempts  # not emptied by a cascade
    # The rebuilds (6, 11) keep every index; 15 adds one for a job's notifications.
    added = [
        ("notifications_by_job", "CREATE INDEX notifications_by_job ON notifications (job_id, seq)")
    ]
    assert _indexes(db, "notifications") == sorted(indexes + added)
    assert db.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'notifications'") == 3
    assert db.scalar("PRAGMA foreign_keys") == 1
    assert db.rows("PRAGMA foreign_key_check") == []
    assert db.scalar("PRAGMA integrity_check") == "ok"
    assert "notifications__rebuilt" not in {
        r["name"] for r in db.rows("SELECT name FROM sqlite_master")
    }

    _new_kind(db, "ntf_teams", "teams")  # the registry decides which kinds exist now
    assert db.scalar("SELECT seq FROM notifications WHERE id = 'ntf_teams'") == 4
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"), db.write() as w:
        w.conn.execute("UPDATE notifications SET state = 'lost' WHERE id = 'ntf_1'")
    with db.write() as w:  # the run's ON DELETE CASCADE still reaches both tables
        w.conn.execute("DELETE FROM runs WHERE id = 'run_1'")
    assert db.scalar("SELECT count(*) FROM notifications") == 0
    assert db.scalar("SELECT count(*) FROM notification_attempts") == 0
    store.close()


def _parent_and_child(conn: sqlite3.Connection) -> None:
    conn.executescript(  # commits by itself
        """
        CREATE TABLE parent (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL CHECK (size < 10),
            touched INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX parent_by_size ON parent (size);
        CREATE TABLE child (
            parent_id TEXT NOT NULL REFERENCES parent(id) ON DELETE CASCADE,
            note TEXT
        );
        CREATE TABLE audit (what TEXT);
        CREATE TRIGGER parent_audit AFTER UPDATE ON parent
            BEGIN INSERT INTO audit VALUES (new.id); END;
        INSERT INTO parent (id, size) VALUES ('a', 1), ('b', 2);
        INSERT INTO child VALUES ('a', 'x'), ('b', 'y');
        """
    )


def _migration(apply: Any) -> Migration:
    return Migration(99, "test rebuild", (), apply, foreign_keys_off=True)


def _run(db: Database, migration: Migration) -> None:
    conn = db.db.conn
    with migration.foreign_keys_handled(conn), db.write() as w:
        assert migration.apply is not None
        migration.apply(w.conn, db.box)


NEW_PARENT = """(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    touched INTEGER NOT NULL DEFAULT 0
)"""


def test_rebuild_with_expressions_keeps_indexes_triggers_and_children(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db")
    _parent_and_child(db.db.conn)
    copy = {"seq": "seq", "id": "id", "size": "size * 10", "label": "'was ' || id"}
    _run(db, _migration(lambda conn, _box: rebuild_table(conn, "parent", NEW_PARENT, copy=copy)))
    assert db.rows("SELECT id, size, label FROM parent ORDER BY seq") == [
        {"id": "a", "size": 10, "label": "was a"},  # past the old CHECK: it is gone
        {"id": "b", "size": 20, "label": "was b"},
    ]
    assert db.scalar("SELECT count(*) FROM child") == 2
    assert [name for name, _ in _indexes(db, "parent")] == ["parent_by_size"]
    with db.write() as w:
        w.conn.execute("UPDATE parent SET touched = 1 WHERE id = 'b'")
    assert db.scalar("SELECT what FROM audit") == "b"  # the trigger was recreated
    assert db.scalar("PRAGMA foreign_keys") == 1
    db.close()


def test_a_rebuild_that_breaks_a_reference_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db")
    _parent_and_child(db.db.conn)
    schema = db.scalar("SELECT sql FROM sqlite_master WHERE name = 'parent'")
    copy = {"seq": "seq", "id": "id || '-renamed'", "size": "size"}
    with pytest.raises(RebuildError, match="foreign key"):
        _run(
            db, _migration(lambda conn, _box: rebuild_table(conn, "parent", NEW_PARENT, copy=copy))
        )
    assert db.scalar("SELECT sql FROM sqlite_master WHERE name = 'parent'") == schema
    assert db.scalar("SELECT group_concat(id) FROM parent") == "a,b"
    assert db.scalar("SELECT count(*) FROM child") == 2
    assert db.scalar("PRAGMA foreign_keys") == 1  # back on after the rollback too
    db.close()


def test_a_rebuild_with_foreign_keys_on_is_refused_before_it_cascades(tmp_path: Path) -> None:
    """Inside a transaction the foreign_keys pragma does nothing; dropping the old table
    would then run ON DELETE CASCADE and empty the child table. The helper refuses."""
    db = Database(tmp_path / "t.db")
    _parent_and_child(db.db.conn)
    unmarked = Migration(99, "test rebuild", (), lambda c, _b: rebuild_table(c, "parent", "(x)"))
    with pytest.raises(RebuildError, match="foreign_keys_off"):
        _run(db, unmarked)
    with pytest.raises(RebuildError, match="transaction"):
        rebuild_table(db.db.conn, "parent", "(x)")
    assert db.scalar("SELECT count(*) FROM child") == 2
    assert db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'parent__rebuilt'") == 0
    db.close()
