"""Silence alerts' state (app/services/silence.py): how far each job's slots were checked,
and one row per alert sent, so each alert is sent once, also across restarts."""

from __future__ import annotations

from datetime import datetime

from app.ids import from_text, to_text
from app.store.db import Database


class SilenceRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def checked_until(self) -> dict[str, datetime]:
        """Per job: its slots up to this time have been checked for missed starts."""
        return {
            r["job_id"]: from_text(r["checked_until"])
            for r in self._db.rows("SELECT job_id, checked_until FROM silence_state")
        }

    def set_checked(self, job_id: str, until: datetime) -> None:
        with self._db.write() as db:
            db.conn.execute(
                "INSERT INTO silence_state (job_id, checked_until) VALUES (?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET checked_until = excluded.checked_until",
                (job_id, to_text(until)),
            )

    def forget(self, job_ids: list[str]) -> None:
        """Jobs no longer watched: re-enabling one later counts no old slot as missed."""
        if not job_ids:
            return
        marks = ",".join("?" * len(job_ids))
        with self._db.write() as db:
            db.conn.execute(f"DELETE FROM silence_state WHERE job_id IN ({marks})", job_ids)

    def claim(
        self,
        *,
        job_id: str,
        event: str,
        key: str,
        run_id: str | None,
        reason: str,
        now: datetime,
    ) -> bool:
        """Record that this alert is sent; False when it already was. Call it inside the
        transaction that writes the alert's notifications."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO silence_alerts (job_id, event, key, run_id, reason, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, event, key, run_id, reason, to_text(now)),
        )
        return cursor.rowcount == 1

    def sent(self, job_id: str) -> list[tuple[str, str, str]]:
        """(event, key, reason) of the alerts sent for a job, oldest first."""
        rows = self._db.rows(
            "SELECT event, key, reason FROM silence_alerts WHERE job_id = ? ORDER BY created_at",
            (job_id,),
        )
        return [(r["event"], r["key"], r["reason"]) for r in rows]
