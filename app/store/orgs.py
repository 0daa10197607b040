"""Organizations and API tokens (stored only as SHA-256 hashes)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from app.ids import from_text, new_id, to_text, utcnow
from app.models import Organization, Principal, Role, TokenInfo
from app.store.db import Database

_COLUMNS = (
    "o.id, o.slug, o.created_at, l.max_concurrent_runs"
    " FROM orgs o LEFT JOIN org_limits l ON l.org_id = o.id"
)


def _org(row: dict[str, Any]) -> Organization:
    return Organization(
        id=row["id"],
        slug=row["slug"],
        created_at=from_text(row["created_at"]),
        max_concurrent_runs=row["max_concurrent_runs"],
    )


# What ``principal_of_row`` reads, from ``tokens t JOIN orgs o ON o.id = t.org_id``.
PRINCIPAL_COLUMNS = (
    "t.id AS token_id, t.role, t.name, t.expires_at, t.scope_project_id, t.scope_actions,"
    " o.id AS org_id, o.slug"
)


def principal_of_row(row: dict[str, Any]) -> Principal:
    """A token's principal from a row selecting ``PRINCIPAL_COLUMNS``. Shared by the API's
    token lookup and the UI's sessions (app/store/sessions.py), so a session carries exactly
    the scope and expiry its token has on the API."""
    actions = row["scope_actions"]
    role: Role = "admin" if row["role"] == "admin" else "viewer"
    return Principal(
        org_id=row["org_id"],
        org_slug=row["slug"],
        role=role,
        token_id=row["token_id"],
        token_name=row["name"],
        project_id=row["scope_project_id"],
        actions=None if actions is None else frozenset(json.loads(actions)),
        expires_at=from_text(row["expires_at"]) if row["expires_at"] else None,
    )


class OrgRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def get_or_create(self, slug: str) -> Organization:
        found = self.by_slug(slug)
        if found:
            return found
        now = utcnow()
        org_id = new_id("org")
        with self._db.write() as db:
            db.conn.execute(
                "INSERT OR IGNORE INTO orgs (id, slug, created_at) VALUES (?, ?, ?)",
                (org_id, slug, to_text(now)),
            )
        created = self.by_slug(slug)
        assert created is not None
        return created

    def by_slug(self, slug: str) -> Organization | None:
        row = self._db.row(f"SELECT {_COLUMNS} WHERE o.slug = ?", (slug,))
        return None if row is None else _org(row)

    def slug_of(self, org_id: str) -> str | None:
        value = self._db.scalar("SELECT slug FROM orgs WHERE id = ?", (org_id,))
        return None if value is None else str(value)

    def all(self) -> list[Organization]:
        return [_org(r) for r in self._db.rows(f"SELECT {_COLUMNS} ORDER BY o.slug")]

    def max_concurrent_runs(self, org_id: str) -> int | None:
        """The org's own cap on active runs; None: the server's default applies."""
        value = self._db.scalar(
            "SELECT max_concurrent_runs FROM org_limits WHERE org_id = ?", (org_id,)
        )
        return None if value is None else int(value)

    def set_max_concurrent_runs(self, slug: str, value: int | None) -> bool:
        """Set (or with None clear) the org's cap; False when there is no such org."""
        with self._db.write() as db:
            found = db.conn.execute("SELECT id FROM orgs WHERE slug = ?", (slug,)).fetchone()
            if found is None:
                return False
            if value is None:
                db.conn.execute("DELETE FROM org_limits WHERE org_id = ?", (found[0],))
            else:
                db.conn.execute(
                    "INSERT INTO org_limits (org_id, max_concurrent_runs) VALUES (?, ?)"
                    " ON CONFLICT (org_id) DO UPDATE"
                    " SET max_concurrent_runs = excluded.max_concurrent_runs",
                    (found[0], value),
                )
            return True


class TokenRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def insert(
        self,
        *,
        org_id: str,
        role: Role,
        name: str,
        prefix: str,
        token_hash: str,
        expires_at: datetime | None = None,
        scope_project_id: str | None = None,
        scope_actions: list[str] | None = None,
    ) -> str:
        token_id = new_id("tok", 12)
        with self._db.write() as db:
            db.conn.execute(
                "INSERT INTO tokens (id, org_id, role, name, prefix, token_hash, created_at,"
                " expires_at, scope_project_id, scope_actions)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token_id,
                    org_id,
                    role,
                    name,
                    prefix,
                    token_hash,
                    to_text(utcnow()),
                    to_text(expires_at) if expires_at else None,
                    scope_project_id,
                    None if scope_actions is None else json.dumps(scope_actions),
                ),
            )
        return token_id

    def principal_for_hash(self, token_hash: str) -> Principal | None:
        """The token's principal, expired or not (the caller tells an expired one apart)."""
        row = self._db.row(
            f"SELECT {PRINCIPAL_COLUMNS} FROM tokens t JOIN orgs o ON o.id = t.org_id"
            " WHERE t.token_hash = ? AND t.revoked_at IS NULL",
            (token_hash,),
        )
        return None if row is None else principal_of_row(row)

    def touch(self, token_id: str, when: datetime) -> None:
        with self._db.write() as db:
            db.conn.execute(
                "UPDATE tokens SET last_used_at = ? WHERE id = ?", (to_text(when), token_id)
            )

    def listing(self, org_slug: str | None = None) -> list[TokenInfo]:
        sql = (
            "SELECT t.*, o.slug, p.name AS project_name FROM tokens t"
            " JOIN orgs o ON o.id = t.org_id"
            " LEFT JOIN projects p ON p.id = t.scope_project_id"
            + (" WHERE o.slug = ?" if org_slug else "")
            + " ORDER BY o.slug, t.created_at"
        )
        rows = self._db.rows(sql, (org_slug,) if org_slug else ())
        return [
            TokenInfo(
                id=r["id"],
                org_slug=r["slug"],
                role=r["role"],
                name=r["name"],
                prefix=r["prefix"],
                created_at=from_text(r["created_at"]),
                last_used_at=from_text(r["last_used_at"]) if r["last_used_at"] else None,
                revoked_at=from_text(r["revoked_at"]) if r["revoked_at"] else None,
                expires_at=from_text(r["expires_at"]) if r["expires_at"] else None,
                scope_project_id=r["scope_project_id"],
                scope_project_name=r["project_name"],
                scope_actions=None
                if r["scope_actions"] is None
                else json.loads(r["scope_actions"]),
            )
            for r in rows
        ]

    def active(self, token_id_or_prefix: str) -> list[TokenInfo]:
        """The unrevoked tokens with this id or prefix (what ``revoke`` would revoke)."""
        return [
            t
            for t in self.listing()
            if t.revoked_at is None and token_id_or_prefix in (t.id, t.prefix)
        ]

    def revoke(self, token_id_or_prefix: str) -> int:
        with self._db.write() as db:
            cursor = db.conn.execute(
                "UPDATE tokens SET revoked_at = ?"
                " WHERE revoked_at IS NULL AND (id = ? OR prefix = ?)",
                (to_text(utcnow()), token_id_or_prefix, token_id_or_prefix),
            )
            return int(cursor.rowcount)
