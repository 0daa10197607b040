"""Web UI sessions (app/web/sessions.py): rows keyed by the SHA-256 of a random session id."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.ids import from_text, to_text
from app.models import Principal
from app.store.db import Database
from app.store.orgs import PRINCIPAL_COLUMNS, principal_of_row


class SessionRow(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    csrf_secret: str
    created_at: datetime
    expires_at: datetime


class SessionRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def insert(
        self,
        *,
        id_hash: str,
        principal: Principal,
        csrf_secret: str,
        created_at: datetime,
        expires_at: datetime,
    ) -> None:
        with self._db.write() as db:
            db.conn.execute(
                "INSERT INTO ui_sessions (id_hash, token_id, org_id, role, csrf_secret,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    id_hash,
                    principal.token_id,
                    principal.org_id,
                    principal.role,
                    csrf_secret,
                    to_text(created_at),
                    to_text(expires_at),
                ),
            )

    def active(self, id_hash: str, now: datetime) -> SessionRow | None:
        """The session if it has not ended or expired, and its token is neither revoked nor
        expired. The token's role, org, name, scope and expiry are read now, not remembered
        from sign-in: the session acts exactly as its token would on the API."""
        row = self._db.row(
            f"SELECT {PRINCIPAL_COLUMNS}, s.csrf_secret, s.created_at AS session_created,"
            " s.expires_at AS session_expires"
            " FROM ui_sessions s JOIN tokens t ON t.id = s.token_id"
            " JOIN orgs o ON o.id = t.org_id"
            " WHERE s.id_hash = ? AND s.ended_at IS NULL AND s.expires_at > ?"
            " AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)",
            (id_hash, to_text(now), to_text(now)),
        )
        if row is None:
            return None
        return SessionRow(
            principal=principal_of_row(row),
            csrf_secret=row["csrf_secret"],
            created_at=from_text(row["session_created"]),
            expires_at=from_text(row["session_expires"]),
        )

    def token_expired_at(self, id_hash: str, now: datetime) -> datetime | None:
        """When the token of this (not ended) session expired, if it has: why ``active``
        found nothing, for the sign-in page to say."""
        value = self._db.scalar(
            "SELECT t.expires_at FROM ui_sessions s JOIN tokens t ON t.id = s.token_id"
            " WHERE s.id_hash = ? AND s.ended_at IS NULL AND t.revoked_at IS NULL"
            " AND t.expires_at IS NOT NULL AND t.expires_at <= ?",
            (id_hash, to_text(now)),
        )
        return None if value is None else from_text(str(value))

    def end(self, id_hash: str, now: datetime) -> bool:
        with self._db.write() as db:
            cursor = db.conn.execute(
                "UPDATE ui_sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL",
                (to_text(now), id_hash),
            )
            return bool(cursor.rowcount)

    def delete_stale(self, cutoff: datetime) -> int:
        """Forget sessions that expired or ended before ``cutoff``."""
        with self._db.write() as db:
            cursor = db.conn.execute(
                "DELETE FROM ui_sessions WHERE expires_at < ? OR ended_at < ?",
                (to_text(cutoff), to_text(cutoff)),
            )
            return int(cursor.rowcount)
