"""State of the local executor and of the embedded scheduler (tables of migration 3).

``local_processes`` holds one row per active local run: its process, the attempt it is on
and how much of its output is already stored, so a restarted runyard can find it again.
``scheduler_state`` holds the last cron slot considered per job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.ids import from_text, to_text
from app.store.db import Database, insert_sql


class LocalProcess(msgspec.Struct, kw_only=True):
    run_id: str
    pid: int
    identity: str
    attempt: int
    first_started_at: datetime
    spool: str
    log_offset: int


def _process(row: dict[str, Any]) -> LocalProcess:
    return LocalProcess(
        run_id=row["run_id"],
        pid=row["pid"],
        identity=row["identity"],
        attempt=row["attempt"],
        first_started_at=from_text(row["first_started_at"]),
        spool=row["spool"],
        log_offset=row["log_offset"],
    )


class LocalRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    # --- processes ----------------------------------------------------------------------

    def save_process(self, process: LocalProcess, now: datetime) -> None:
        """Record (or replace, on a new attempt) the process of a run."""
        row = {
            **msgspec.structs.asdict(process),
            "first_started_at": to_text(process.first_started_at),
            "updated_at": to_text(now),
        }
        self._db.execute(
            insert_sql("local_processes", row) + " ON CONFLICT (run_id) DO UPDATE SET"
            " pid = excluded.pid, identity = excluded.identity, attempt = excluded.attempt,"
            " log_offset = excluded.log_offset, updated_at = excluded.updated_at",
            row,
        )

    def process(self, run_id: str) -> LocalProcess | None:
        row = self._db.row("SELECT * FROM local_processes WHERE run_id = ?", (run_id,))
        return _process(row) if row else None

    def processes(self) -> list[LocalProcess]:
        return [_process(r) for r in self._db.rows("SELECT * FROM local_processes")]

    def set_log_offset(self, run_id: str, offset: int) -> None:
        self._db.execute(
            "UPDATE local_processes SET log_offset = ? WHERE run_id = ?", (offset, run_id)
        )

    def forget_process(self, run_id: str) -> None:
        self._db.execute("DELETE FROM local_processes WHERE run_id = ?", (run_id,))

    def first_project_org(self) -> str | None:
        """The org that created the first project still stored: the one org the local
        executor serves when Landlock is missing and the sandbox is not turned off."""
        value = self._db.scalar("SELECT org_id FROM projects ORDER BY created_at, id LIMIT 1")
        return None if value is None else str(value)

    # --- scheduler ----------------------------------------------------------------------

    def slots(self) -> dict[str, datetime]:
        """The last slot considered, per job."""
        return {
            r["job_id"]: from_text(r["last_slot"])
            for r in self._db.rows("SELECT job_id, last_slot FROM scheduler_state")
        }

    def set_slot(self, job_id: str, slot: datetime, now: datetime) -> None:
        """Record ``slot`` as considered. A job deleted meanwhile has nothing to record."""
        self._db.execute(
            "INSERT INTO scheduler_state (job_id, last_slot, updated_at)"
            " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)"
            " ON CONFLICT (job_id) DO UPDATE SET last_slot = excluded.last_slot,"
            " updated_at = excluded.updated_at",
            (job_id, to_text(slot), to_text(now), job_id),
        )

    def forget_slot(self, job_id: str) -> None:
        self._db.execute("DELETE FROM scheduler_state WHERE job_id = ?", (job_id,))
