"""The audit trail: one row per change, newest first by an increasing sequence number."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec

from app.ids import from_text, new_id, to_text
from app.store.db import Database, insert_sql

_COLUMNS = (
    "id",
    "org_id",
    "at",
    "actor_token_id",
    "actor_name",
    "request_id",
    "source_address",
    "action",
    "object_type",
    "object_id",
    "object_name",
    "project_id",
    "diff",
)


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    at: datetime
    actor_token_id: str | None
    actor_name: str
    request_id: str | None
    source_address: str | None
    action: str
    object_type: str
    object_id: str
    object_name: str
    project_id: str | None
    diff: dict[str, Any] | None


class AuditPage(msgspec.Struct, frozen=True):
    events: list[AuditEvent]
    last_seq: int | None  # the position after which the next page starts; None: no more


class AuditRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def insert(
        self,
        *,
        org_id: str,
        at: datetime,
        actor_token_id: str | None,
        actor_name: str,
        request_id: str | None,
        source_address: str | None,
        action: str,
        object_type: str,
        object_id: str,
        object_name: str,
        project_id: str | None,
        diff: dict[str, Any] | None,
    ) -> str:
        event_id = new_id("aud", 12)
        row = {
            "id": event_id,
            "org_id": org_id,
            "at": to_text(at),
            "actor_token_id": actor_token_id,
            "actor_name": actor_name,
            "request_id": request_id,
            "source_address": source_address,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "object_name": object_name,
            "project_id": project_id,
            "diff": None if diff is None else json.dumps(diff, sort_keys=True),
        }
        # Joins the caller's write transaction when there is one: the change and its
        # record commit (or roll back) together.
        with self._db.write() as db:
            db.conn.execute(insert_sql("audit_events", _COLUMNS), row)
        return event_id

    def page(
        self,
        org_id: str,
        *,
        before_seq: int | None,
        limit: int,
        since: datetime | None = None,
        actor: str | None = None,
        object_ref: str | None = None,
        project_id: str | None = None,
    ) -> AuditPage:
        """Newest first. ``actor``: a token name or id; ``object_ref``: an object's id, its
        name, or its type ("job")."""
        where = ["org_id = ?"]
        params: list[Any] = [org_id]
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        if since is not None:
            where.append("at >= ?")
            params.append(to_text(since))
        if actor:
            where.append("(actor_name = ? OR actor_token_id = ?)")
            params += [actor, actor]
        if object_ref:
            where.append("(object_id = ? OR object_name = ? OR object_type = ?)")
            params += [object_ref, object_ref, object_ref]
        if project_id is not None:
            where.append("project_id = ?")
            params.append(project_id)
        rows = self._db.rows(
            "SELECT * FROM audit_events WHERE "
            + " AND ".join(where)
            + " ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        events = [_event(r) for r in rows]
        return AuditPage(events, rows[-1]["seq"] if more and rows else None)

    def delete_older_than(self, cutoff: datetime) -> int:
        with self._db.write() as db:
            cursor = db.conn.execute("DELETE FROM audit_events WHERE at < ?", (to_text(cutoff),))
            return int(cursor.rowcount)


def _event(row: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        at=from_text(row["at"]),
        actor_token_id=row["actor_token_id"],
        actor_name=row["actor_name"],
        request_id=row["request_id"],
        source_address=row["source_address"],
        action=row["action"],
        object_type=row["object_type"],
        object_id=row["object_id"],
        object_name=row["object_name"],
        project_id=row["project_id"],
        diff=None if row["diff"] is None else json.loads(row["diff"]),
    )
