"""Model history: one row per node (dbt model, test, seed...; SQLMesh model or audit) a run
reported, kept with the run (rows go with it) for a job's per-model statistics and a run's
timeline.

A run's rows come from its ``run_results.json`` when runyard has it (``source='artifacts'``:
timings with start and end, rows affected, adapter response) and otherwise from what its log
said (``source='log'``: status, duration and message only). Artifact rows always win: log
rows never replace them, whichever arrives first.

The models query reads a job's window from one covering index of small values (unix
seconds, a node number, an outcome code, a duration): with a million rows it reads only the
window's entries and builds no strings but the node names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from app.ids import from_text
from app.store.db import Database, insert_sql

HistorySource = Literal["artifacts", "log"]

# outcome codes (the statistics' view of a status)
RAN, FAILED, NOT_RUN, OTHER = 0, 1, 2, 3
# dbt: error, fail (tests), runtime error (freshness), partial success (microbatch);
# SQLMesh: error (model), failed (audit).
_FAILED = frozenset({"error", "fail", "failed", "runtime error", "partial success"})
_RAN = frozenset({"success", "pass", "warn"})
_NOT_RUN = frozenset({"skipped", "no-op"})


def outcome_of(status: str) -> int:
    if status in _RAN:
        return RAN
    if status in _FAILED:
        return FAILED
    if status in _NOT_RUN:
        return NOT_RUN
    return OTHER


class NodeRow(msgspec.Struct, frozen=True, kw_only=True):
    """One node's result in one run, as stored."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    started_at: str | None = None  # RFC 3339 UTC text
    completed_at: str | None = None
    execution_time: float | None = None
    rows_affected: int | None = None
    adapter_response: str | None = None  # JSON object text
    message: str | None = None
    thread_id: str | None = None


class Window(msgspec.Struct):
    """A job's node results in a window: ``rows`` of (node number, run_at in unix seconds,
    outcome, duration or None) and the names of the node numbers."""

    rows: list[tuple[int, int, int, float | None]]
    names: dict[int, str]


_FIELDS = NodeRow.__struct_fields__
_INSERT = insert_sql(
    "node_results", ("run_id", "node_id", "job_id", "run_at", "outcome", "source", *_FIELDS)
)
_SELECT = ", ".join(_FIELDS)


class HistoryRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def _numbers(self, unique_ids: Iterable[str]) -> dict[str, int]:
        """The node numbers of these unique ids, numbering the new ones (in a write)."""
        conn = self._db.db.conn
        wanted = list(dict.fromkeys(unique_ids))
        found: dict[str, int] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            conn.executemany(
                "INSERT INTO node_names (unique_id) VALUES (?) ON CONFLICT DO NOTHING",
                [(u,) for u in part],
            )
            marks = ", ".join("?" * len(part))
            found |= dict(
                conn.execute(
                    f"SELECT unique_id, id FROM node_names WHERE unique_id IN ({marks})", part
                ).fetchall()
            )
        return found

    def record(
        self,
        run_id: str,
        job_id: str,
        run_at: datetime,
        rows: Sequence[NodeRow],
        source: HistorySource,
    ) -> bool:
        """Keep ``rows`` as the run's nodes, replacing what it had, unless they come from
        the log and the run already has rows from its artifacts. True when written."""
        base = {"run_id": run_id, "job_id": job_id, "run_at": int(run_at.timestamp())}
        # A node listed twice (a hostile or odd file) keeps its last entry.
        unique = {row.unique_id: row for row in rows}
        with self._db.write() as db:
            if source == "log":
                kept = db.conn.execute(
                    "SELECT 1 FROM node_results WHERE run_id = ? AND source = 'artifacts' LIMIT 1",
                    (run_id,),
                ).fetchone()
                if kept:
                    return False
            db.conn.execute("DELETE FROM node_results WHERE run_id = ?", (run_id,))
            numbers = self._numbers(unique)
            db.conn.executemany(
                _INSERT,
                [
                    base
                    | {
                        "node_id": numbers[row.unique_id],
                        "outcome": outcome_of(row.status),
                        "source": source,
                    }
                    | msgspec.structs.asdict(row)
                    for row in unique.values()
                ],
            )
        return True

    def for_run(self, run_id: str) -> tuple[HistorySource | None, list[NodeRow]]:
        rows = self._db.rows(
            f"SELECT source, {_SELECT} FROM node_results WHERE run_id = ?"
            " ORDER BY coalesce(started_at, '~'), rowid",
            (run_id,),
        )
        if not rows:
            return None, []
        source = rows[0]["source"]
        for row in rows:
            del row["source"]
        return source, [NodeRow(**row) for row in rows]

    def window(self, job_id: str, since: datetime, resource_types: Sequence[str]) -> Window:
        """A job's node results of these types in runs since ``since``, in no particular
        order, read from the covering index ``node_results_by_job`` alone."""
        marks = ", ".join("?" * len(resource_types))
        params: list[Any] = [job_id, *resource_types, int(since.timestamp())]
        conn = self._db.db.conn
        rows = conn.execute(
            "SELECT node_id, run_at, outcome, execution_time FROM node_results"
            f" INDEXED BY node_results_by_job WHERE job_id = ? AND resource_type IN ({marks})"
            " AND run_at >= ?",
            params,
        ).fetchall()
        ids = list({row[0] for row in rows})
        names: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            names |= dict(
                conn.execute(
                    "SELECT id, unique_id FROM node_names"
                    f" WHERE id IN ({', '.join('?' * len(part))})",
                    part,
                ).fetchall()
            )
        return Window(rows, names)

    def statuses_at(
        self, job_id: str, resource_types: Sequence[str], moments: dict[int, int]
    ) -> dict[int, str]:
        """The status text of each node (number -> its newest run_at) in that run."""
        types = ", ".join("?" * len(resource_types))
        found: dict[int, str] = {}
        by_moment: dict[int, list[int]] = {}
        for node, moment in moments.items():
            by_moment.setdefault(moment, []).append(node)
        conn = self._db.db.conn
        for moment, nodes in by_moment.items():
            for start in range(0, len(nodes), 500):
                part = nodes[start : start + 500]
                found |= dict(
                    conn.execute(
                        "SELECT node_id, status FROM node_results INDEXED BY"
                        f" node_results_by_job WHERE job_id = ? AND resource_type IN ({types})"
                        f" AND run_at = ? AND node_id IN ({', '.join('?' * len(part))})",
                        [job_id, *resource_types, moment, *part],
                    ).fetchall()
                )
        return found

    def latest_with_artifact(self, job_id: str, name: str) -> tuple[str, datetime] | None:
        """(run id, end time) of the job's newest run, whatever its status, that kept the
        artifact ``name`` (``dbt source freshness`` exits 1 when a source is stale, and
        its sources.json is what says so)."""
        row = self._db.row(
            "SELECT r.id, coalesce(r.end_time, r.created_at) AS at FROM runs r"
            " JOIN run_artifacts a ON a.run_id = r.id WHERE r.job_id = ? AND a.name = ?"
            " ORDER BY r.seq DESC LIMIT 1",
            (job_id, name),
        )
        return None if row is None else (row["id"], from_text(row["at"]))
