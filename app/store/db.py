"""SQLite through sqlite-utils: one connection per thread, WAL, busy timeout, foreign keys.

Every call here blocks. Writes (which may wait for the write lock) run on worker threads;
a short indexed read under WAL never waits for a writer, so the web layer may serve one from
the event loop's thread, whose connection is read-only (``serve_reads_on_this_thread``).

The database holds sealed secrets and everything else an org owns, so its file is created
0600 in a folder runyard creates 0700, whatever the umask; SQLite gives its -wal and -shm
files the database file's mode. ``secure_delete`` zeroes what a write replaces, so a value
sealed by a migration leaves no plaintext behind in free pages.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlite_utils

from app.secrets import SecretBox, box_for
from app.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000
# The event loop's read connection: WAL readers only wait in rare cases (a checkpoint
# restarting the log, recovery); a read there must not stall every request for 10 s.
LOOP_BUSY_TIMEOUT_MS = 1_000
# The event loop's read connection serves every hot read: a page cache of 64 MB (instead of
# SQLite's 2 MB) keeps the pages of 100,000 jobs' lookups in memory rather than re-read.
LOOP_CACHE_KIB = 65_536
log = logging.getLogger("runyard.store")


def insert_sql(table: str, columns: Iterable[str]) -> str:
    """``INSERT INTO table (a, b) VALUES (:a, :b)``: the values come as a mapping by column
    name, so a long row is never a list to keep in step with its columns."""
    names = tuple(columns)
    return (
        f"INSERT INTO {table} ({', '.join(names)})"
        f" VALUES ({', '.join(':' + name for name in names)})"
    )


def _private_file(path: Path) -> None:
    """Create ``path`` 0600 if missing; make it 0600 if it is more open (an older runyard
    created it with the umask's mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise OSError(f"cannot open the database {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:
            try:
                os.fchmod(fd, 0o600)
            except OSError:
                log.warning(
                    "the database file is readable by other users and runyard cannot "
                    "change that; make it 0600",
                    extra={"path": str(path)},
                )
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with suppress(OSError):
            if side.stat().st_mode & 0o077:
                side.chmod(0o600)


def _private_folder(folder: Path) -> None:
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with suppress(OSError):
            folder.chmod(0o700)  # mkdir's mode goes through the umask
        return
    mode = folder.stat().st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        log.warning(
            "the database's folder is writable by every user: anyone could replace the "
            "database or its key file; use a folder only runyard's user can write",
            extra={"path": str(folder)},
        )


class Database:
    def __init__(self, path: str | Path, secret_key: str | None = None) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path != ":memory:":
            file = Path(self.path).expanduser()
            _private_folder(file.parent)
            _private_file(file)
        # Seals and opens the secrets kept in this database (see app/secrets.py).
        self.box: SecretBox = box_for(self.path, secret_key)

    # --- connections --------------------------------------------------------------------

    def _connect(self) -> sqlite_utils.Database:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self.reads_only_here():
            conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA cache_size = -{LOOP_CACHE_KIB}")
            conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no commit
        conn.execute("PRAGMA secure_delete = ON")
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

    def serve_reads_on_this_thread(self) -> None:
        """Make this thread's connection read-only: the event loop's thread calls this at
        start-up, after which a write from it (which could wait on the lock and stall every
        request) fails at once instead of happening."""
        self._local.read_only = True
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is not None:
            db.conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_TIMEOUT_MS}")
            db.conn.execute(f"PRAGMA cache_size = -{LOOP_CACHE_KIB}")
            db.conn.execute("PRAGMA query_only = ON")

    def version(self) -> int:
        """Changes whenever another connection commits (``PRAGMA data_version``): on the
        read-only connection, which commits nothing, any write anywhere changes it, so a
        result computed at one version is still true while the version stays."""
        return int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])

    def reads_only_here(self) -> bool:
        return bool(getattr(self._local, "read_only", False))

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with suppress(sqlite3.ProgrammingError):  # already closed
                    conn.close()
            self._all.clear()
        read_only = self.reads_only_here()
        self._local = threading.local()
        if read_only:  # closing from the loop's thread (tests) keeps it read-only
            self._local.read_only = True

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
        if self.reads_only_here():
            raise RuntimeError("a write on the event loop's thread: run it in a worker thread")
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
        """Bring the schema to the newest version; each step is one transaction. The secret
        key is checked first: a wrong key stops here, before anything is written."""
        self._check_key()
        sealed = False
        for migration in MIGRATIONS:
            with migration.foreign_keys_handled(self.db.conn), self.write() as db:
                if int(db.conn.execute("PRAGMA user_version").fetchone()[0]) >= migration.version:
                    continue
                for statement in migration.statements:
                    db.conn.execute(statement)
                if migration.apply is not None:
                    migration.apply(db.conn, self.box)
                    sealed = True
                db.conn.execute(f"PRAGMA user_version = {migration.version}")
        self._check_key()
        if sealed and self.path != ":memory:":
            # The WAL still holds the pages as they were before secrets were sealed.
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return self.schema_version()

    def _check_key(self) -> None:
        """Compare the key with the canary sealed when the database first had one."""
        has_table = self.scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'secret_key_check'"
        )
        if not has_table:
            return
        canary = self.scalar("SELECT canary FROM secret_key_check WHERE id = 1")
        if canary is None:
            with self.write() as db:
                db.conn.execute(
                    "INSERT OR IGNORE INTO secret_key_check (id, canary) VALUES (1, ?)",
                    (self.box.canary(),),
                )
            # Read back: another process may have sealed its canary first, with its key.
            canary = self.scalar("SELECT canary FROM secret_key_check WHERE id = 1")
        self.box.check(canary)
