"""SQLite through sqlite-utils: one connection per thread, WAL, busy timeout, foreign keys.

Every call here blocks, so the web layer only reaches it from worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlite_utils

from app.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)

    # --- connections --------------------------------------------------------------------

    def _connect(self) -> sqlite_utils.Database:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no commit
        db = sqlite_utils.Database(conn, execute_plugins=False)
        with db.ensure_autocommit_on():
            conn.execute("PRAGMA journal_mode = WAL")
        with self._lock:
            self._all.append(conn)
        return db

    @property
    def db(self) -> sqlite_utils.Database:
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
        return db

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with suppress(sqlite3.ProgrammingError):  # already closed
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- statements ---------------------------------------------------------------------

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        cursor = self.db.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def row(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        cursor = self.db.conn.execute(sql, params)
        found = cursor.fetchone()
        if found is None:
            return None
        return dict(zip([d[0] for d in cursor.description], found, strict=True))

    def scalar(self, sql: str, params: Any = ()) -> Any:
        found = self.db.conn.execute(sql, params).fetchone()
        return None if found is None else found[0]

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction, taken with BEGIN IMMEDIATE so writers queue on the lock
        (busy timeout) instead of failing when a read transaction tries to upgrade."""
        db = self.db
        if db.conn.in_transaction:
            with db.atomic():
                yield db
            return
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.rollback()
            raise
        else:
            db.conn.execute("COMMIT")

    # --- schema -------------------------------------------------------------------------

    def schema_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))

    def migrate(self) -> int:
        """Bring the schema to the newest version; each step is one transaction."""
        for migration in MIGRATIONS:
            with self.write() as db:
                if int(db.conn.execute("PRAGMA user_version").fetchone()[0]) >= migration.version:
                    continue
                for statement in migration.statements:
                    db.conn.execute(statement)
                db.conn.execute(f"PRAGMA user_version = {migration.version}")
        return self.schema_version()
