"""Run records: one row per run, newest first by ``seq``; logs in chunks beside them.

A run's snapshot is stored with its secret values REDACTED; the values are sealed in the
``secrets`` column and put back when a record is read (executors and notifications need
them). Log chunks are masked on the way in: a secret value of the run never reaches the
stored log, even one cut in two by the chunk boundary.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from app.ids import from_text, to_text
from app.models import (
    ACTIVE_STATUSES,
    OPEN_STATUSES,
    NodeSummary,
    Run,
    RunRecord,
    RunSnapshot,
    RunStatus,
    RunStep,
    redact_job_config,
    redacted,
)
from app.secrets import MASK, SecretBox, mask, mask_values, split_secret
from app.store.db import Database, insert_sql

_encode = msgspec.json.Encoder().encode
_snapshot_decoder = msgspec.json.Decoder(RunSnapshot)
_results_decoder = msgspec.json.Decoder(list[NodeSummary])
_steps_decoder = msgspec.json.Decoder(list[RunStep])

# The runs table has a column of the same name for each field of RunRecord (and ``secrets``):
# the field lists are the column lists, so a new field needs its column (a migration) and
# nothing here. Reads select Run's columns (or the record's); an insert writes the record's.
# Fields computed when read, not stored: the SQL that reads each (over the row ``runs``).
_COMPUTED = {
    # A queued run's place in its job's queue (app/services/queue.py starts them in seq
    # order); the runs_by_job_status index answers it.
    "queue_position": "(CASE WHEN status = 'queued' THEN (SELECT count(*) FROM runs q"
    " WHERE q.job_id = runs.job_id AND q.status = 'queued' AND q.seq <= runs.seq) END)"
    " AS queue_position",
}
_RUN_FIELDS: tuple[str, ...] = Run.__struct_fields__
_RECORD_FIELDS: tuple[str, ...] = tuple(
    f for f in RunRecord.__struct_fields__ if f not in _COMPUTED
)
_RUN_COLUMNS = ", ".join(_COMPUTED.get(f, f) for f in _RUN_FIELDS)
# The same without node results (a list of thousands for a big dbt project): for lists that
# only need each run's status and timing (the web UI's charts).
_RUN_COLUMNS_BRIEF = ", ".join(
    "NULL AS results" if f == "results" else _COMPUTED.get(f, f) for f in _RUN_FIELDS
)
_INSERT = insert_sql("runs", (*_RECORD_FIELDS, "secrets"))
_TIMES = frozenset(  # stored as text (app.ids.to_text)
    f.name for f in msgspec.structs.fields(RunRecord) if f.type in (datetime, datetime | None)
)
_ACTIVE = tuple(sorted(ACTIVE_STATUSES))
_ACTIVE_PARAMS = {f"active_{status}": status for status in _ACTIVE}
_IN_ACTIVE = "(" + ", ".join(f":{name}" for name in _ACTIVE_PARAMS) + ")"
_OPEN = tuple(sorted(OPEN_STATUSES))
_OPEN_PARAMS = {f"open_{status}": status for status in _OPEN}
_IN_OPEN = "(" + ", ".join(f":{name}" for name in _OPEN_PARAMS) + ")"
_OPEN_MARKS = "(" + ", ".join("?" * len(_OPEN)) + ")"
# Runs of an org that hold one of its places (docs/queues.md: max_concurrent_runs).
_ORG_ACTIVE = (
    "(SELECT count(*) FROM runs o WHERE o.org_id = :org_id AND o.status IN ('pending', 'running'))"
)
# Queued runs of an org that wait for a place, not for their own job's active run.
_ORG_WAITING = (
    "(SELECT count(*) FROM runs w WHERE w.org_id = :org_id AND w.status = 'queued'"
    " AND NOT EXISTS (SELECT 1 FROM runs b WHERE b.job_id = w.job_id"
    " AND b.status IN ('pending', 'running')))"
)


def _time(value: str | None) -> datetime | None:
    return from_text(value) if value else None


def _run_fields(row: dict[str, Any]) -> dict[str, Any]:
    fields = {name: row[name] for name in _RUN_FIELDS}
    for name in _TIMES:
        fields[name] = _time(fields[name])
    fields["results"] = _results_decoder.decode(row["results"]) if row["results"] else []
    fields["steps"] = _steps_decoder.decode(row["steps"]) if row["steps"] else []
    return fields


def _columns(run: RunRecord, box: SecretBox) -> dict[str, Any]:
    """The row of a run by column name (the insert's named parameters): a column per field
    of the record, the snapshot with its secrets REDACTED and those sealed beside it."""
    values = msgspec.structs.asdict(run)
    for name in _TIMES:
        values[name] = to_text(values[name]) if values[name] else None
    values["results"] = _encode(run.results).decode() if run.results else None
    values["steps"] = _encode(run.steps).decode() if run.steps else None
    values["snapshot"], values["secrets"] = _sealed_snapshot(run.snapshot, box)
    return values


def _run(row: dict[str, Any]) -> Run:
    return Run(**_run_fields(row))


def _record(row: dict[str, Any], box: SecretBox) -> RunRecord:
    snapshot = _snapshot_decoder.decode(row["snapshot"])
    sealed = box.open_json(row["secrets"])
    snapshot.job.webhook_headers = sealed.get("webhook_headers", {})
    snapshot.job.secret_environment = sealed.get("secret_environment", {})
    snapshot.project_secret_environment = sealed.get("project_secret_environment", {})
    if snapshot.environment is not None:
        snapshot.environment.secret_environment = sealed.get("environment_secret_environment", {})
    return RunRecord(**_run_fields(row), org_id=row["org_id"], snapshot=snapshot)


def _sealed_snapshot(snapshot: RunSnapshot, box: SecretBox) -> tuple[str, str | None]:
    """(the snapshot document with secrets REDACTED, the sealed secrets)."""
    public = msgspec.structs.replace(
        snapshot,
        job=redact_job_config(snapshot.job),
        project_secret_environment=redacted(snapshot.project_secret_environment),
    )
    if snapshot.environment is not None:
        public.environment = msgspec.structs.replace(
            snapshot.environment,
            secret_environment=redacted(snapshot.environment.secret_environment),
        )
    return _encode(public).decode(), box.seal_json(_secrets_of(snapshot))


def _secrets_of(snapshot: RunSnapshot) -> dict[str, dict[str, str]]:
    return {
        "webhook_headers": snapshot.job.webhook_headers,
        "secret_environment": snapshot.job.secret_environment,
        "project_secret_environment": snapshot.project_secret_environment,
        "environment_secret_environment": (
            snapshot.environment.secret_environment if snapshot.environment else {}
        ),
    }


_MASKS_KEPT = 256  # runs whose secret values are cached for masking their log chunks


class Admission(msgspec.Struct):
    """What happened to a run offered for insertion."""

    inserted: bool
    active: list[Run]  # the job's open runs (queued, pending, running) before the insert
    replay: Run | None = None
    replay_hash: str | None = None
    queued: bool = False  # inserted with status queued (the job's queue or the org's cap)


# A list counts its matches up to this many: counting all of an org's runs (millions) would
# cost more than the page. More than this: the page says so (``total_capped``).
TOTAL_CAP = 10_000


class RunPage(msgspec.Struct):
    runs: list[Run]
    total: int  # the matches, at most TOTAL_CAP
    next_cursor: str | None
    total_capped: bool = False  # more than ``total`` match


def _where(
    org_id: str,
    project_id: str | None,
    job_id: str | None,
    status: str | None,
    since: datetime | None,
    *,
    on_age: bool,
) -> tuple[str, list[Any]]:
    """The filter of a run list with only the chosen index's columns left indexable: the
    job's (runs_by_job, runs_by_job_status), else the project's (runs_by_project), else the
    org's by status or seq, or with ``on_age`` the since window (runs_by_org_age)."""
    parts: list[tuple[str, Any, bool]] = [
        ("org_id", org_id, project_id is None and job_id is None),
        ("project_id", project_id, job_id is None and not on_age),
        ("job_id", job_id, True),
        ("status", status, not on_age),
    ]
    where: list[str] = []
    params: list[Any] = []
    for column, value, indexed in parts:
        if value is not None:
            where.append(f"{column} = ?" if indexed else f"+{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?" if on_age else "+created_at >= ?")
        params.append(to_text(since))
    return " AND ".join(where), params


class RunRepo:
    def __init__(self, database: Database) -> None:
        self._db = database
        # run id -> the strings to mask in its log (a run's secrets never change).
        self._masks: OrderedDict[str, list[str]] = OrderedDict()
        self._masks_lock = threading.Lock()

    # --- writes -------------------------------------------------------------------------

    def insert(self, run: RunRecord) -> bool:
        """Insert a new run; False if a run for the same slot or Kubernetes Job exists."""
        try:
            with self._db.write() as db:
                db.conn.execute(_INSERT, _columns(run, self._db.box))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                return False
            raise
        return True

    def insert_exclusive(
        self,
        run: RunRecord,
        *,
        forbid: bool,
        replay_since: datetime | None = None,
        queue: bool = False,
        cap: int | None = None,
    ) -> Admission:
        """Insert the run in one transaction with the checks that must not race: a run
        already started with the same idempotency key (since ``replay_since``) is returned
        instead, and with ``forbid`` an open run of the job blocks the insert.

        The run is inserted ``queued`` instead of as given when ``queue`` (the job's
        concurrency_policy Queue) and the job has an open run, or when ``cap`` is given and
        the org's active runs plus the queued runs already waiting for a place reach it:
        a new run never overtakes one that waits."""
        with self._db.write():
            if run.idempotency_key and replay_since is not None:
                row = self._db.row(
                    f"SELECT {_RUN_COLUMNS}, request_hash FROM runs WHERE job_id = ?"
                    " AND idempotency_key = ? AND created_at >= ? ORDER BY seq DESC LIMIT 1",
                    (run.job_id, run.idempotency_key, to_text(replay_since)),
                )
                if row is not None:
                    return Admission(False, [], _run(row), row["request_hash"])
            active = self.open_for_job(run.job_id)
            if forbid and active:
                return Admission(False, active)
            queued = queue and bool(active)
            if not queued and cap is not None:
                taken = self._db.scalar(
                    f"SELECT {_ORG_ACTIVE} + {_ORG_WAITING}", {"org_id": run.org_id}
                )
                queued = int(taken) >= cap
            if queued:
                run.status = "queued"
            inserted = self.insert(run)
            return Admission(inserted, active, queued=inserted and queued)

    def claim_queued(self, run_id: str, *, exclusive: bool, cap: int | None, now: datetime) -> bool:
        """Move a queued run to pending if it may start now, in one conditional UPDATE (two
        callers can never both start it, nor start two runs for one place): the org has
        fewer than ``cap`` active runs and, with ``exclusive`` (every policy but Allow), the
        job has no active run and no older queued one."""
        cursor = self._db.execute(
            "UPDATE runs SET status = 'pending', updated_at = :now"
            " WHERE id = :id AND status = 'queued'"
            " AND (:exclusive = 0 OR (NOT EXISTS (SELECT 1 FROM runs a"
            " WHERE a.job_id = runs.job_id AND a.status IN ('pending', 'running'))"
            " AND NOT EXISTS (SELECT 1 FROM runs e WHERE e.job_id = runs.job_id"
            " AND e.status = 'queued' AND e.seq < runs.seq)))"
            " AND (:cap IS NULL OR (SELECT count(*) FROM runs o WHERE o.org_id = runs.org_id"
            " AND o.status IN ('pending', 'running')) < :cap)",
            {"now": to_text(now), "id": run_id, "exclusive": int(exclusive), "cap": cap},
        )
        return cursor.rowcount == 1

    def requeue(self, run_id: str, now: datetime) -> bool:
        """Put a claimed run that the executor refused for now (its own cap) back in the
        queue, at its old place (seq is unchanged)."""
        cursor = self._db.execute(
            "UPDATE runs SET status = 'queued', updated_at = ? WHERE id = ? AND status = 'pending'"
            " AND start_time IS NULL",
            (to_text(now), run_id),
        )
        return cursor.rowcount == 1

    def queued(self, limit: int = 1000) -> list[tuple[str, str, str]]:
        """(run id, org id, the run's concurrency policy) of queued runs, oldest first."""
        rows = self._db.rows(
            "SELECT id, org_id, json_extract(snapshot, '$.job.concurrency_policy') AS policy"
            " FROM runs WHERE status = 'queued' ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [(r["id"], r["org_id"], str(r["policy"] or "Forbid")) for r in rows]

    def org_active_count(self, org_id: str) -> int:
        return int(self._db.scalar(f"SELECT {_ORG_ACTIVE}", {"org_id": org_id}))

    def set_k8s_names(self, run_id: str, job_name: str, namespace: str | None) -> None:
        self._db.execute(
            "UPDATE runs SET job_name = ?, namespace = ? WHERE id = ?",
            (job_name, namespace, run_id),
        )

    def mark_running(self, run_id: str, start_time: datetime, now: datetime) -> bool:
        cursor = self._db.execute(
            "UPDATE runs SET status = 'running', start_time = coalesce(start_time, ?),"
            " updated_at = ? WHERE id = ? AND status = 'pending'",
            (to_text(start_time), to_text(now), run_id),
        )
        return cursor.rowcount == 1

    def finish(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time: datetime,
        exit_code: int | None,
        error: str | None,
        results: Sequence[NodeSummary] = (),
        now: datetime,
    ) -> bool:
        """Move an active run to a terminal status. True only for the call that did it, so
        whatever must happen once per finished run (notifications) hangs off this."""
        cursor = self._db.execute(
            "UPDATE runs SET status = :status, end_time = :end, exit_code = :exit_code,"
            " error = :error, results = coalesce(:results, results),"
            " start_time = coalesce(start_time, :end), duration_seconds = max(0,"
            " (julianday(:end) - julianday(coalesce(start_time, :end))) * 86400.0),"
            f" updated_at = :now WHERE id = :id AND status IN {_IN_OPEN}",
            {
                "status": status,
                "end": to_text(end_time),
                "exit_code": exit_code,
                "error": error,
                "results": _encode(list(results)).decode() if results else None,
                "now": to_text(now),
                "id": run_id,
                **_OPEN_PARAMS,
            },
        )
        return cursor.rowcount == 1

    def set_steps(
        self,
        run_id: str,
        steps: Sequence[RunStep],
        now: datetime,
        results: Sequence[NodeSummary] | None = None,
    ) -> None:
        """Record the step records of a run of steps (docs/steps.md) as they stand, and
        the node results its steps reported so far (a re-attached supervisor goes on
        from them; only while the run is active: the results its end recorded are
        final). A cancelled run's steps are recorded after its end: the supervisor sees
        the step's process end after the service recorded the cancel."""
        encoded = _encode(list(results)).decode() if results else None
        self._db.execute(
            "UPDATE runs SET steps = :steps, updated_at = :now,"
            f" results = CASE WHEN status IN {_IN_ACTIVE}"
            " THEN coalesce(:results, results) ELSE results END WHERE id = :id",
            {
                "steps": _encode(list(steps)).decode(),
                "results": encoded,
                "now": to_text(now),
                "id": run_id,
                **_ACTIVE_PARAMS,
            },
        )

    def next_log_seq(self, run_id: str) -> int:
        """The number the next chunk of the run's log will get: where a step's part of the
        log starts (``RunStep.log_seq``)."""
        return int(
            self._db.scalar(
                "SELECT coalesce(max(seq), 0) + 1 FROM run_log_chunks WHERE run_id = ?",
                (run_id,),
            )
        )

    # --- reads --------------------------------------------------------------------------

    def get(self, org_id: str, run_id: str) -> Run | None:
        row = self._db.row(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ? AND org_id = ?", (run_id, org_id)
        )
        return _run(row) if row else None

    def record(self, run_id: str) -> RunRecord | None:
        row = self._db.row(
            f"SELECT {_RUN_COLUMNS}, org_id, snapshot, secrets FROM runs WHERE id = ?", (run_id,)
        )
        return _record(row, self._db.box) if row else None

    def by_k8s_job(self, namespace: str, job_name: str) -> Run | None:
        row = self._db.row(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE namespace = ? AND job_name = ?",
            (namespace, job_name),
        )
        return _run(row) if row else None

    def active(self, executor: str | None = None) -> list[RunRecord]:
        sql = f"SELECT {_RUN_COLUMNS}, org_id, snapshot, secrets FROM runs WHERE status IN (?, ?)"
        params: tuple[Any, ...] = _ACTIVE
        if executor:
            sql += " AND executor = ?"
            params += (executor,)
        return [_record(r, self._db.box) for r in self._db.rows(sql + " ORDER BY seq", params)]

    def active_for_job(self, job_id: str) -> list[Run]:
        rows = self._db.rows(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE job_id = ? AND status IN (?, ?) ORDER BY seq",
            (job_id, *_ACTIVE),
        )
        return [_run(r) for r in rows]

    def open_for_job(self, job_id: str) -> list[Run]:
        """The job's runs that have not ended: queued, pending or running, oldest first."""
        rows = self._db.rows(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE job_id = ? AND status IN {_OPEN_MARKS}"
            " ORDER BY seq",
            (job_id, *_OPEN),
        )
        return [_run(r) for r in rows]

    def running_longer_than(self, started_before: datetime) -> list[Run]:
        """Running runs started before the given time (silence alerts: overdue)."""
        rows = self._db.rows(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'running' AND start_time < ?"
            " ORDER BY seq",
            (to_text(started_before),),
        )
        return [_run(r) for r in rows]

    def for_slot(self, job_id: str, slot: datetime) -> Run | None:
        row = self._db.row(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE job_id = ? AND scheduled_for = ?",
            (job_id, to_text(slot)),
        )
        return _run(row) if row else None

    def page(
        self,
        org_id: str,
        *,
        project_id: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        cursor: int | None = None,
        limit: int = 50,
        results: bool = True,
    ) -> RunPage:
        """A page of runs, newest first, and how many match (at most TOTAL_CAP). Every
        statement reads one chosen index in a bounded range (tests/unit/test_store_plans.py):
        the planner has no statistics, so a unary ``+`` keeps it off every other index.

        A job's or a project's runs are read on that index. Org-wide, a ``since`` window of
        at most TOTAL_CAP runs (counted on runs_by_org_age) is read on that index: counted,
        then its newest seqs sorted (integers, from the index). A longer one holds the
        org's newest runs: the page walks a seq-ordered index and stops after ``limit``."""
        org_wide = project_id is None and job_id is None
        short = False
        on_age = False  # the count walks the since window (runs_by_org_age)
        if since is not None and org_wide:
            window = self._count("org_id = ? AND created_at >= ?", [org_id, to_text(since)])
            short = window <= TOTAL_CAP
            # A long window with a status: the window, unless that status is rare (then
            # its own runs are fewer to walk than the window's).
            on_age = (
                short
                or status is None
                or self._count("org_id = ? AND status = ?", [org_id, status]) > TOTAL_CAP
            )
        filters = (project_id, job_id, status, since)
        condition, params = _where(org_id, *filters, on_age=on_age)
        total = self._count(condition, params)
        if not short:
            condition, params = _where(org_id, *filters, on_age=False)
        if cursor is not None:
            condition += " AND +seq < ?" if short else " AND seq < ?"
            params.append(cursor)
        order = f"WHERE {condition} ORDER BY seq DESC LIMIT ?"
        if short:
            found = self._db.db.conn.execute(f"SELECT seq FROM runs {order}", [*params, limit + 1])
            params = [r[0] for r in found]
            order = f"WHERE seq IN ({','.join('?' * len(params))}) ORDER BY seq DESC LIMIT ?"
        columns = _RUN_COLUMNS if results else _RUN_COLUMNS_BRIEF
        rows = self._db.rows(f"SELECT seq, {columns} FROM runs {order}", [*params, limit + 1])
        next_cursor = str(rows[limit - 1]["seq"]) if len(rows) > limit else None
        return RunPage(
            [_run(r) for r in rows[:limit]],
            min(total, TOTAL_CAP),
            next_cursor,
            total_capped=total > TOTAL_CAP,
        )

    def _count(self, condition: str, params: list[Any]) -> int:
        """Runs matching, counted up to TOTAL_CAP + 1."""
        return int(
            self._db.scalar(
                f"SELECT count(*) FROM (SELECT 1 FROM runs WHERE {condition} LIMIT ?)",
                [*params, TOTAL_CAP + 1],
            )
        )

    def active_counts(self) -> list[tuple[str, str, int]]:
        """(executor, status, count) of pending and running runs."""
        rows = self._db.rows(
            "SELECT executor, status, count(*) AS n FROM runs WHERE status IN (?, ?)"
            " GROUP BY executor, status",
            _ACTIVE,
        )
        return [(r["executor"], r["status"], int(r["n"])) for r in rows]

    def counts_by_status(self, job_id: str, since: datetime | None = None) -> dict[str, int]:
        sql = "SELECT status, count(*) AS n FROM runs WHERE job_id = ?"
        params: list[Any] = [job_id]
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(to_text(since))
        return {r["status"]: r["n"] for r in self._db.rows(sql + " GROUP BY status", params)}

    def last(self, job_id: str) -> Run | None:
        row = self._db.row(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE job_id = ? ORDER BY seq DESC LIMIT 1", (job_id,)
        )
        return _run(row) if row else None

    def durations(self, job_id: str, since: datetime) -> list[float]:
        rows = self._db.rows(
            "SELECT duration_seconds FROM runs WHERE job_id = ? AND created_at >= ?"
            " AND duration_seconds IS NOT NULL AND status = 'success'",
            (job_id, to_text(since)),
        )
        return [float(r["duration_seconds"]) for r in rows]

    # --- logs ---------------------------------------------------------------------------

    def _masks_for(self, run_id: str) -> list[str]:
        with self._masks_lock:
            found = self._masks.get(run_id)
            if found is not None:
                self._masks.move_to_end(run_id)
                return found
        row = self._db.row("SELECT secrets FROM runs WHERE id = ?", (run_id,))
        if row is None:
            return []  # no such run (yet): nothing to cache
        sealed = self._db.box.open_json(row["secrets"])
        # What the run's process was given. Webhook headers never reach it, and masking
        # them would blank ordinary words ("X-Team: data") out of every line.
        values = [
            value
            for group in (
                "secret_environment",
                "project_secret_environment",
                "environment_secret_environment",
            )
            for value in sealed.get(group, {}).values()
        ]
        found = mask_values(values)
        with self._masks_lock:
            self._masks[run_id] = found
            while len(self._masks) > _MASKS_KEPT:
                self._masks.popitem(last=False)
        return found

    def mask_log(self, run_id: str, text: str) -> str:
        """``text`` with the run's secret values masked, for log text that does not come
        from the store (a Kubernetes pod's log read live)."""
        secrets = self._masks_for(run_id)
        return mask(text, secrets) if secrets else text

    @staticmethod
    def _mask_across(
        conn: sqlite3.Connection, run_id: str, seq: int, text: str, secrets: list[str]
    ) -> tuple[str, int]:
        """A secret whose start ended the previous chunk and whose rest begins ``text``:
        the previous chunk's part becomes the mask, this chunk's part goes. Returns the
        new text and how many bytes the previous chunk changed by."""
        longest = max(len(s) for s in secrets)
        row = conn.execute(
            "SELECT substr(data, -?) FROM run_log_chunks WHERE run_id = ? AND seq = ?",
            (longest - 1, run_id, seq),
        ).fetchone()
        if row is None or not row[0]:
            return text, 0
        head, rest = split_secret(row[0], text, secrets)
        if not head:
            return text, 0
        cut = row[0][-head:]
        conn.execute(
            "UPDATE run_log_chunks SET data = substr(data, 1, length(data) - ?) || ?"
            " WHERE run_id = ? AND seq = ?",
            (head, MASK, run_id, seq),
        )
        return text[rest:], len(MASK.encode()) - len(cut.encode())

    def append_log(self, run_id: str, text: str, cap_bytes: int, at: datetime) -> None:
        """Append to a run's log, keeping the first and the last half of ``cap_bytes``
        when it grows past the cap; the reader shows a marker where lines were dropped.
        The run's secret values are masked first (see _mask_across for one cut in two)."""
        if not text:
            return
        secrets = self._masks_for(run_id)
        with self._db.write() as db:
            conn = db.conn
            state = conn.execute(
                "SELECT log_bytes, log_head_seq FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if state is None:
                return
            log_bytes, head_seq = state
            next_seq = conn.execute(
                "SELECT coalesce(max(seq), 0) + 1 FROM run_log_chunks WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            if secrets:
                if next_seq > 1:
                    text, grown = self._mask_across(conn, run_id, next_seq - 1, text, secrets)
                    log_bytes += grown
                text = mask(text, secrets)
                if not text:
                    conn.execute("UPDATE runs SET log_bytes = ? WHERE id = ?", (log_bytes, run_id))
                    return
            size = len(text.encode())
            conn.execute(
                "INSERT INTO run_log_chunks (run_id, seq, at, data) VALUES (?, ?, ?, ?)",
                (run_id, next_seq, to_text(at), text),
            )
            log_bytes += size
            dropped = 0
            if log_bytes > cap_bytes:
                if head_seq is None:
                    head_seq = self._head_end(conn, run_id, cap_bytes // 2)
                # Drop the oldest chunks after the head until the log fits again; the newest
                # chunk always stays, so a single huge chunk is cut rather than dropped.
                for seq, length in conn.execute(
                    "SELECT seq, length(CAST(data AS BLOB)) FROM run_log_chunks"
                    " WHERE run_id = ? AND seq > ? AND seq < ? ORDER BY seq",
                    (run_id, head_seq, next_seq),
                ).fetchall():
                    if log_bytes <= cap_bytes:
                        break
                    conn.execute(
                        "DELETE FROM run_log_chunks WHERE run_id = ? AND seq = ?", (run_id, seq)
                    )
                    log_bytes -= length
                    dropped += length
                if log_bytes > cap_bytes:
                    keep = max(0, size - (log_bytes - cap_bytes))
                    tail = text.encode()[size - keep :].decode(errors="ignore")
                    conn.execute(
                        "UPDATE run_log_chunks SET data = ? WHERE run_id = ? AND seq = ?",
                        (tail, run_id, next_seq),
                    )
                    dropped += size - len(tail.encode())
                    log_bytes -= size - len(tail.encode())
            conn.execute(
                "UPDATE runs SET log_bytes = ?, log_head_seq = ?,"
                " log_dropped_bytes = log_dropped_bytes + ? WHERE id = ?",
                (log_bytes, head_seq, dropped, run_id),
            )

    @staticmethod
    def _head_end(conn: sqlite3.Connection, run_id: str, head_bytes: int) -> int:
        total = 0
        last = 0
        for seq, length in conn.execute(
            "SELECT seq, length(CAST(data AS BLOB)) FROM run_log_chunks WHERE run_id = ?"
            " ORDER BY seq",
            (run_id,),
        ):
            if total + length > head_bytes and last:
                break
            total += length
            last = seq
            if total >= head_bytes:
                break
        return last

    def read_log(
        self,
        run_id: str,
        since: datetime | None = None,
        chunks: tuple[int, int | None] | None = None,
    ) -> str:
        """The stored log; with ``since``, only the chunks written at or after that time;
        with ``chunks`` (first, end), only the chunks numbered from first to before end
        (None: to the last): one step's part of the log."""
        state = self._db.row(
            "SELECT log_head_seq, log_dropped_bytes FROM runs WHERE id = ?", (run_id,)
        )
        if state is None:
            return ""
        parts: list[str] = []
        sql = "SELECT seq, data FROM run_log_chunks WHERE run_id = ?"
        params: list[Any] = [run_id]
        if since is not None:
            sql += " AND at >= ?"
            params.append(to_text(since))
        if chunks is not None:
            sql += " AND seq >= ?"
            params.append(chunks[0])
            if chunks[1] is not None:
                sql += " AND seq < ?"
                params.append(chunks[1])
        for row in self._db.rows(sql + " ORDER BY seq", params):
            parts.append(row["data"])
            if state["log_dropped_bytes"] and row["seq"] == state["log_head_seq"]:
                if not row["data"].endswith("\n"):
                    parts.append("\n")
                parts.append(
                    f"[runyard: {state['log_dropped_bytes']} bytes of log were dropped here to"
                    " keep this run's log under its size limit]\n"
                )
        return "".join(parts)

    def has_log(self, run_id: str) -> bool:
        return bool(
            self._db.scalar("SELECT 1 FROM run_log_chunks WHERE run_id = ? LIMIT 1", (run_id,))
        )

    # --- retention ----------------------------------------------------------------------

    def old_runs(self, cutoff: datetime, limit: int) -> list[int]:
        """The oldest finished runs created before ``cutoff`` (their seq), at most ``limit``:
        read outside any write transaction, from the runs_by_age index alone."""
        rows = self._db.rows(
            f"SELECT seq FROM runs WHERE created_at < ? AND status NOT IN {_OPEN_MARKS}"
            " ORDER BY created_at LIMIT ?",
            (to_text(cutoff), *_OPEN, limit),
        )
        return [int(r["seq"]) for r in rows]

    def delete_runs(self, seqs: Sequence[int]) -> int:
        """Delete these runs (still finished) with their logs, in one short transaction;
        their artifacts, model-history rows and notifications go with them (ON DELETE
        CASCADE). Returns how many went."""
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        # Queued runs are open too: retention never deletes a run that may still start.
        finished = f"seq IN ({marks}) AND status NOT IN {_OPEN_MARKS}"
        params = (*seqs, *_OPEN)
        with self._db.write() as db:
            db.conn.execute(
                "DELETE FROM run_log_chunks WHERE run_id IN"
                f" (SELECT id FROM runs WHERE {finished})",
                params,
            )
            return db.conn.execute(f"DELETE FROM runs WHERE {finished}", params).rowcount

    def delete_older_than(self, cutoff: datetime, batch: int = 500) -> int:
        """Every finished run created before ``cutoff``, batch after batch (tests, tools;
        the retention worker paces its batches itself)."""
        removed = 0
        while seqs := self.old_runs(cutoff, batch):
            removed += self.delete_runs(seqs)
        return removed
