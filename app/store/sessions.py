"""Web UI sessions (app/web/sessions.py): rows keyed by the SHA-256 of a random session id."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.ids import from_text, to_text
from app.models import Principal, Role
from app.store.db import Database


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
        """The session if it has not ended or expired and its token is not revoked. The
        token's role and org are read now, not remembered from sign-in."""
        row = self._db.row(
            "SELECT s.token_id, s.csrf_secret, s.created_at, s.expires_at, t.role,"
            " o.id AS org_id, o.slug"
            " FROM ui_sessions s JOIN tokens t ON t.id = s.token_id"
            " JOIN orgs o ON o.id = t.org_id"
            " WHERE s.id_hash = ? AND s.ended_at IS NULL AND s.expires_at > ?"
            " AND t.revoked_at IS NULL",
            (id_hash, to_text(now)),
        )
        if row is None:
            return None
        role: Role = "admin" if row["role"] == "admin" else "viewer"
        return SessionRow(
            principal=Principal(
                org_id=row["org_id"], org_slug=row["slug"], role=role, token_id=row["token_id"]
            ),
            csrf_secret=row["csrf_secret"],
            created_at=from_text(row["created_at"]),
            expires_at=from_text(row["expires_at"]),
        )

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
