"""Versioned schema migrations, applied in order; ``PRAGMA user_version`` records the last.

Never edit a released migration: add a new one. Each runs in one transaction. A change
ALTER TABLE cannot make (dropping a constraint, changing a column's type) rebuilds the
table with ``rebuild_table`` in a migration marked ``foreign_keys_off``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from app.models import REDACTED, JobConfig, ProjectConfig, redacted, secret_changes

if TYPE_CHECKING:
    from app.secrets import SecretBox


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    # A step that needs Python (sealing values needs the key), after the statements, in the
    # same transaction.
    apply: Callable[[sqlite3.Connection, SecretBox], None] | None = None
    # Rebuilds tables (rebuild_table): foreign keys must be off for its whole transaction.
    foreign_keys_off: bool = False

    @contextmanager
    def foreign_keys_handled(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Wraps the migration's transaction (``with m.foreign_keys_handled(conn),
        database.write():``). For a migration that rebuilds tables, foreign keys go off
        before the transaction begins (the pragma does nothing inside one) and back on after
        it ends, committed or not: steps 1 and 12 of SQLite's procedure. With them on,
        dropping the old table would run the ON DELETE CASCADE actions of the tables that
        reference it and empty them. rebuild_table checks the keys before the commit."""
        if not self.foreign_keys_off or conn.in_transaction:
            yield  # inside a caller's transaction rebuild_table refuses to run
            return
        was_on = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
        conn.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            if was_on:
                conn.execute("PRAGMA foreign_keys = ON")


class RebuildError(RuntimeError):
    """A table rebuild could not be made safely; the migration's transaction rolls back."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rebuild_table(
    conn: sqlite3.Connection,
    table: str,
    definition: str,
    *,
    copy: Mapping[str, str] | None = None,
) -> None:
    """Give ``table`` a new definition, keeping its rows, indexes, triggers and the rows of
    the tables that reference it, as https://www.sqlite.org/lang_altertable.html ("Making
    Other Kinds Of Table Schema Changes") describes: create the new table under another
    name, copy the rows, drop the old table, rename the new one, recreate the indexes and
    triggers, check the foreign keys.

    ``definition`` is what follows the table name in CREATE TABLE: ``(columns and
    constraints)`` and any table options (``WITHOUT ROWID``). ``copy`` maps each new column
    to an SQL expression over the old row; by default the columns both tables have are
    copied as they are. Indexes and triggers are recreated from their old SQL. An
    AUTOINCREMENT counter carries over, so no id is handed out twice.

    Runs in the caller's transaction, which must have foreign keys off: a migration marked
    ``foreign_keys_off``.
    """
    if not conn.in_transaction:
        raise RebuildError("rebuild_table runs inside the migration's transaction")
    if conn.execute("PRAGMA foreign_keys").fetchone()[0]:
        raise RebuildError(
            f"rebuilding {table} with foreign keys on would empty the tables that reference "
            "it: mark the migration foreign_keys_off"
        )
    old_columns = [row[1] for row in conn.execute(f"PRAGMA table_info({_quote(table)})")]
    if not old_columns:
        raise RebuildError(f"no table {table}")
    views = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'view' AND sql LIKE ?", (f"%{table}%",)
    ).fetchall()
    if views:  # the rename below would fail on them, or leave them reading the old shape
        names = ", ".join(v[0] for v in views)
        raise RebuildError(f"drop the views over {table} ({names}) first, recreate them after")
    # Step 3: the schema objects that go with the old table, to recreate on the new one.
    attached = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger')"
            " AND sql IS NOT NULL ORDER BY type, name",
            (table,),
        )
    ]
    has_sequence = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone()
    counter = (
        conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        if has_sequence
        else None
    )
    # Steps 4 to 7: new table, copy, drop the old, rename the new.
    temporary = f"{table}__rebuilt"
    conn.execute(f"CREATE TABLE {_quote(temporary)} {definition}")
    new_columns = [row[1] for row in conn.execute(f"PRAGMA table_info({_quote(temporary)})")]
    if copy is None:
        copy = {name: _quote(name) for name in new_columns if name in old_columns}
    unknown = set(copy) - set(new_columns)
    if unknown:
        raise RebuildError(f"copy names columns {sorted(unknown)} the new {table} lacks")
    targets = ", ".join(_quote(name) for name in copy)
    conn.execute(
        f"INSERT INTO {_quote(temporary)} ({targets})"
        f" SELECT {', '.join(copy.values())} FROM {_quote(table)}"
    )
    conn.execute(f"DROP TABLE {_quote(table)}")
    conn.execute(f"ALTER TABLE {_quote(temporary)} RENAME TO {_quote(table)}")
    if counter is not None and re.search(r"\bAUTOINCREMENT\b", definition, re.IGNORECASE):
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, counter[0]))
    # Step 8: indexes and triggers.
    for sql in attached:
        conn.execute(sql)
    # Step 10: the new table's references, and those of the tables that reference it.
    children = [
        name
        for (name,) in conn.execute(
            "SELECT DISTINCT m.name FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS f"
            " WHERE m.type = 'table' AND lower(f.\"table\") = lower(?)",
            (table,),
        )
    ]
    for name in dict.fromkeys([table, *children]):
        broken = conn.execute(f"PRAGMA foreign_key_check({_quote(name)})").fetchall()
        if broken:
            raise RebuildError(
                f"rebuilding {table} broke {len(broken)} foreign key(s) of {name}, e.g. "
                f"rowid {broken[0][1]} referencing {broken[0][2]}"
            )


def _seal_secrets(conn: sqlite3.Connection, box: SecretBox) -> None:
    """Seal every secret stored in the clear so far, and take header values out of the
    documents readers see (job configuration, versions, run snapshots)."""
    job_doc = msgspec.json.Decoder(JobConfig)
    project_doc = msgspec.json.Decoder(ProjectConfig)
    encode = msgspec.json.encode
    for pid, config, url in conn.execute(
        "SELECT id, config, slack_webhook_url FROM projects"
    ).fetchall():
        # Re-encoded so the document holds the new field (secret_environment).
        conn.execute(
            "UPDATE projects SET config = ?, slack_webhook_url = ? WHERE id = ?",
            (encode(project_doc.decode(config)).decode(), box.seal(url), pid),
        )
    for jid, config, secret in conn.execute(
        "SELECT id, config, webhook_secret FROM jobs"
    ).fetchall():
        job = job_doc.decode(config)
        sealed = box.seal_json({"webhook_headers": job.webhook_headers})
        job.webhook_headers = redacted(job.webhook_headers)
        conn.execute(
            "UPDATE jobs SET config = ?, secrets = ?, webhook_secret = ? WHERE id = ?",
            (encode(job).decode(), sealed, box.seal(secret), jid),
        )
    previous: dict[str, Any] = {}
    for jid, version, config in conn.execute(
        "SELECT job_id, version, config FROM job_versions ORDER BY job_id, version"
    ).fetchall():
        job = job_doc.decode(config)
        headers = {"webhook_headers": job.webhook_headers}
        before = previous.get(jid, {})
        previous[jid] = headers
        job.webhook_headers = redacted(job.webhook_headers)
        conn.execute(
            "UPDATE job_versions SET config = ?, secrets_changed = ? WHERE job_id = ?"
            " AND version = ?",
            (encode(job).decode(), encode(secret_changes(before, headers)).decode(), jid, version),
        )
    for rid, snapshot in conn.execute(
        "SELECT id, snapshot FROM runs WHERE json_extract(snapshot, '$.job.webhook_headers')"
        " != '{}'"
    ).fetchall():
        document = msgspec.json.decode(snapshot)
        headers = document["job"]["webhook_headers"]
        document["job"]["webhook_headers"] = dict.fromkeys(headers, REDACTED)
        conn.execute(
            "UPDATE runs SET snapshot = ?, secrets = ? WHERE id = ?",
            (encode(document).decode(), box.seal_json({"webhook_headers": headers}), rid),
        )
    for nid, secret in conn.execute(
        "SELECT id, secret FROM notifications WHERE secret IS NOT NULL"
    ).fetchall():
        conn.execute("UPDATE notifications SET secret = ? WHERE id = ?", (box.seal(secret), nid))


# Migration 6: as in migration 4 without the CHECK on kind (the channel registry decides).
_NOTIFICATIONS_6 = """(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event TEXT NOT NULL,
    target TEXT,
    host TEXT NOT NULL,
    payload BLOB,
    secret TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0,
    budget_start INTEGER NOT NULL DEFAULT 0,
    due_at TEXT NOT NULL,
    lease_owner TEXT,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    delivered_at TEXT
)"""


def _notification_kind_unchecked(conn: sqlite3.Connection, _box: SecretBox) -> None:
    rebuild_table(conn, "notifications", _NOTIFICATIONS_6)


def _notification_run_optional(conn: sqlite3.Connection, _box: SecretBox) -> None:
    """Migration 11: a silence alert (``missed``) may be about a slot that has no run."""
    rebuild_table(
        conn,
        "notifications",
        _NOTIFICATIONS_6.replace(
            "run_id TEXT NOT NULL REFERENCES runs(id)", "run_id TEXT REFERENCES runs(id)"
        ),
    )


# A job as the API shows it (JobOut), rendered by SQLite from its row: identity and
# bookkeeping columns spliced in front of the stored configuration document, which always
# holds every JobConfig field. Only whether a webhook secret is set shows.
_JOB_DOC = (
    """'{"id":' || json_quote(id) || ',"project_id":' || json_quote(project_id)"""
    """ || ',"version":' || version"""
    """ || ',"webhook_secret_set":' || iif(webhook_secret IS NULL, 'false', 'true')"""
    """ || ',"sync_state":' || json_quote(sync_state)"""
    """ || ',"sync_error":' || json_quote(sync_error)"""
    """ || ',"created_at":' || json_quote(created_at)"""
    """ || ',"updated_at":' || json_quote(updated_at) || ',' || substr(config, 2)"""
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "organizations, tokens, projects, jobs and job versions",
        (
            """CREATE TABLE orgs (
                id TEXT PRIMARY KEY,
                slug TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE tokens (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
                role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
                name TEXT NOT NULL DEFAULT '',
                prefix TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL,
                last_used_at TEXT,
                revoked_at TEXT
            )""",
            """CREATE TABLE projects (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('dbt', 'sqlmesh')),
                config TEXT NOT NULL,
                slack_webhook_url TEXT,
                deployed INTEGER NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                UNIQUE (org_id, name)
            )""",
            """CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
                project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                config TEXT NOT NULL,
                webhook_secret TEXT,
                version INTEGER NOT NULL DEFAULT 1,
                sync_state TEXT NOT NULL DEFAULT 'not_deployed',
                sync_error TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                UNIQUE (project_id, name)
            )""",
            "CREATE INDEX jobs_by_org ON jobs (org_id)",
            """CREATE TABLE job_versions (
                job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                version INTEGER NOT NULL,
                config TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (job_id, version)
            )""",
        ),
    ),
    Migration(
        2,
        "runs and their logs",
        (
            # seq orders runs (newest first) and serves as the pagination cursor.
            """CREATE TABLE runs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
                project_id TEXT NOT NULL,
                job_id TEXT NOT NULL,
                job_name TEXT,
                cronjob_name TEXT,
                namespace TEXT,
                job_type TEXT NOT NULL,
                status TEXT NOT NULL,
                start_time TEXT,
                end_time TEXT,
                duration_seconds REAL,
                triggered_by TEXT NOT NULL,
                command TEXT NOT NULL,
                exit_code INTEGER,
                error TEXT,
                job_version INTEGER NOT NULL,
                rerun_of TEXT,
                upstream_run_id TEXT,
                executor TEXT NOT NULL,
                scheduled_for TEXT,
                results TEXT,
                snapshot TEXT NOT NULL,
                log_bytes INTEGER NOT NULL DEFAULT 0,
                log_head_seq INTEGER,
                log_dropped_bytes INTEGER NOT NULL DEFAULT 0,
                idempotency_key TEXT,
                request_hash TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX runs_by_job ON runs (job_id, seq DESC)",
            "CREATE INDEX runs_by_job_status ON runs (job_id, status, seq DESC)",
            "CREATE INDEX runs_by_org ON runs (org_id, seq DESC)",
            "CREATE INDEX runs_active ON runs (status) WHERE status IN ('pending', 'running')",
            # One run per scheduled slot and per Kubernetes Job, however often events repeat.
            """CREATE UNIQUE INDEX runs_one_per_slot ON runs (job_id, scheduled_for)
               WHERE scheduled_for IS NOT NULL""",
            """CREATE INDEX runs_by_idempotency_key ON runs (job_id, idempotency_key)
               WHERE idempotency_key IS NOT NULL""",
            """CREATE UNIQUE INDEX runs_one_per_k8s_job ON runs (namespace, job_name)
               WHERE namespace IS NOT NULL AND job_name IS NOT NULL""",
            """CREATE TABLE run_log_chunks (
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "local executor processes and embedded scheduler state",
        (
            # One row per active local run: enough to find its process again after a restart.
            # ``identity`` (boot id and process start time) tells a live process from another
            # that later received the same pid.
            """CREATE TABLE local_processes (
                run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
                pid INTEGER NOT NULL,
                identity TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                first_started_at TEXT NOT NULL,
                spool TEXT NOT NULL,
                log_offset INTEGER NOT NULL DEFAULT 0,
                updated_at TEXT NOT NULL
            )""",
            # The last cron slot the scheduler considered per job (fired, skipped or missed),
            # so a restart knows which slots it missed and never fires one twice.
            """CREATE TABLE scheduler_state (
                job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
                last_slot TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "notification outbox and delivery attempts",
        (
            # Written in the transaction that changes a run's status (app/notify/outbox.py).
            # ``id`` is the delivery id receivers see. ``due_at`` is when a pending row may be
            # claimed, or when the lease of a delivering row ends; ``payload`` is the webhook
            # body, encoded once; ``secret`` the job's webhook secret, cleared once delivered.
            """CREATE TABLE notifications (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                org_id TEXT NOT NULL,
                run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                job_id TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('slack', 'webhook')),
                event TEXT NOT NULL,
                target TEXT,
                host TEXT NOT NULL,
                payload BLOB,
                secret TEXT,
                state TEXT NOT NULL
                    CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                throttled INTEGER NOT NULL DEFAULT 0,
                budget_start INTEGER NOT NULL DEFAULT 0,
                due_at TEXT NOT NULL,
                lease_owner TEXT,
                last_status_code INTEGER,
                last_error TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                delivered_at TEXT
            )""",
            "CREATE INDEX notifications_by_run ON notifications (run_id, seq)",
            """CREATE INDEX notifications_due ON notifications (due_at)
               WHERE state IN ('pending', 'delivering')""",
            """CREATE INDEX notifications_due_by_host ON notifications (host, due_at)
               WHERE state IN ('pending', 'delivering')""",
            """CREATE TABLE notification_attempts (
                notification_id TEXT NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
                attempt INTEGER NOT NULL,
                started_at TEXT NOT NULL,
                duration_ms INTEGER NOT NULL,
                status_code INTEGER,
                error TEXT,
                outcome TEXT NOT NULL,
                PRIMARY KEY (notification_id, attempt)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        5,
        "secrets sealed at rest: webhook headers, secret environment, webhook secrets, "
        "Slack incoming webhook URLs",
        (
            # Sealed JSON ({"webhook_headers": ..., "secret_environment": ...}); NULL: none.
            "ALTER TABLE projects ADD COLUMN secrets TEXT",
            "ALTER TABLE jobs ADD COLUMN secrets TEXT",
            "ALTER TABLE runs ADD COLUMN secrets TEXT",
            # JSON list of the secret names a version changed (never values).
            "ALTER TABLE job_versions ADD COLUMN secrets_changed TEXT",
            # A value sealed with the key, to refuse a start with another key.
            """CREATE TABLE secret_key_check (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                canary TEXT NOT NULL
            )""",
        ),
        _seal_secrets,
    ),
    Migration(
        6,
        "notification kinds checked by the channel registry, not by a CHECK constraint",
        (),
        _notification_kind_unchecked,
        foreign_keys_off=True,
    ),
    Migration(
        7,
        "run artifacts: metadata of the compressed, content-addressed files",
        (
            # size and sha256 are of the uncompressed content; the file is
            # <database>.artifacts/<sha256[:2]>/<sha256>.gz, shared by equal contents.
            """CREATE TABLE run_artifacts (
                run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                size INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (run_id, name)
            ) WITHOUT ROWID""",
            "CREATE INDEX run_artifacts_by_sha ON run_artifacts (sha256)",
        ),
    ),
    Migration(
        8,
        "model history (node results per run), retries linked to their run, deferral and "
        "allowed images in stored configurations",
        (
            "ALTER TABLE runs ADD COLUMN retry_of TEXT",
            # Node names (unique ids), numbered: the history's index holds the number.
            """CREATE TABLE node_names (
                id INTEGER PRIMARY KEY,
                unique_id TEXT NOT NULL UNIQUE
            )""",
            # One row per dbt node (or SQLMesh model/audit) a run reported: from its
            # run_results.json when stored (source 'artifacts'), else from its log ('log').
            # run_at (unix seconds) is the run's start: the clock of a job's window;
            # outcome: 0 ran fine, 1 failed, 2 did not run (skipped, no-op), 3 anything else.
            """CREATE TABLE node_results (
                run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                node_id INTEGER NOT NULL REFERENCES node_names(id),
                job_id TEXT NOT NULL,
                run_at INTEGER NOT NULL,
                outcome INTEGER NOT NULL,
                unique_id TEXT NOT NULL,
                name TEXT NOT NULL,
                resource_type TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at TEXT,
                completed_at TEXT,
                execution_time REAL,
                rows_affected INTEGER,
                adapter_response TEXT,
                message TEXT,
                thread_id TEXT,
                source TEXT NOT NULL,
                UNIQUE (run_id, node_id)
            )""",
            # Covers the models query: a job's nodes of some types in a time window, with
            # everything its statistics read, in small values, without touching the table.
            """CREATE INDEX node_results_by_job ON node_results
               (job_id, resource_type, run_at, node_id, outcome, execution_time)""",
            # The list endpoint renders stored job documents in SQL: they hold every field.
            "UPDATE jobs SET config = json_set(config, '$.defer_to_job_id', NULL)"
            " WHERE json_type(config, '$.defer_to_job_id') IS NULL",
            "UPDATE job_versions SET config = json_set(config, '$.defer_to_job_id', NULL)"
            " WHERE json_type(config, '$.defer_to_job_id') IS NULL",
            "UPDATE projects SET config = json_set(config, '$.allowed_images', json('[]'))"
            " WHERE json_type(config, '$.allowed_images') IS NULL",
        ),
    ),
    Migration(
        9,
        "web UI sessions",
        (
            # A signed-in browser (app/web/sessions.py). The cookie holds a random id; only
            # its SHA-256 is stored, so a copy of the database opens no session. Each page
            # reads the row joined with its token: a revoked token ends its sessions at once.
            """CREATE TABLE ui_sessions (
                id_hash TEXT PRIMARY KEY,
                token_id TEXT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
                org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
                role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
                csrf_secret TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                ended_at TEXT
            )""",
            "CREATE INDEX ui_sessions_by_token ON ui_sessions (token_id)",
            "CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at)",
        ),
    ),
    Migration(
        10,
        "steps: a job's ordered commands, each run's step records",
        (
            # JSON list of the run's step records (app.models.RunStep), NULL for a run of
            # one command; written by the executors as the steps progress.
            "ALTER TABLE runs ADD COLUMN steps TEXT",
            # The list endpoint renders stored job documents in SQL: they hold every field.
            "UPDATE jobs SET config = json_set(config, '$.steps', json('[]'))"
            " WHERE json_type(config, '$.steps') IS NULL",
            "UPDATE job_versions SET config = json_set(config, '$.steps', json('[]'))"
            " WHERE json_type(config, '$.steps') IS NULL",
        ),
    ),
    Migration(
        11,
        "queued runs, per-org cap on running runs, silence alerts (missed, overdue)",
        (
            # An org's own cap on active runs; no row: the server's
            # RUNYARD_LOCAL_MAX_RUNS_PER_ORG (docs/queues.md). A table of its own, so the
            # orgs table keeps its columns.
            """CREATE TABLE org_limits (
                org_id TEXT PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
                max_concurrent_runs INTEGER NOT NULL CHECK (max_concurrent_runs >= 1)
            )""",
            # The queue is the runs table: queued runs in seq order (app/services/queue.py).
            "CREATE INDEX runs_queued ON runs (org_id, seq) WHERE status = 'queued'",
            # One row per alert sent: (job, missed, slot) or (job, overdue, run id), so each
            # is sent once, also across restarts (app/services/silence.py).
            """CREATE TABLE silence_alerts (
                job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                event TEXT NOT NULL,
                key TEXT NOT NULL,
                run_id TEXT,
                reason TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (job_id, event, key)
            ) WITHOUT ROWID""",
            # Per job: the slots up to checked_until have been checked for missed starts.
            # Slots after it (runyard was down) are computed from the schedule on start-up.
            """CREATE TABLE silence_state (
                job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
                checked_until TEXT NOT NULL
            )""",
            # The list endpoint renders stored job documents in SQL: they hold every field.
            *(
                f"UPDATE {table} SET config = json_set(config, '$.{field}', NULL)"
                f" WHERE json_type(config, '$.{field}') IS NULL"
                for table in ("jobs", "job_versions")
                for field in ("alert_if_not_started_within", "alert_if_running_longer_than")
            ),
        ),
        _notification_run_optional,
        foreign_keys_off=True,
    ),
    Migration(
        12,
        "project environments (target, image or path, variables, credentials), a default "
        "one per project, and the job's environment in stored configurations",
        (
            # config: the EnvironmentConfig document, secret values REDACTED; secrets: the
            # sealed {"secret_environment": ...}. is_default: the one a job without an
            # environment_id runs in (one per project).
            """CREATE TABLE environments (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
                project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                is_default INTEGER NOT NULL DEFAULT 0,
                config TEXT NOT NULL,
                secrets TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                UNIQUE (project_id, name)
            )""",
            """CREATE UNIQUE INDEX environments_one_default ON environments (project_id)
               WHERE is_default = 1""",
            # Every existing project gets an empty default environment: each of its fields
            # falls back to the project's, so the project's jobs run exactly as before.
            """INSERT INTO environments
                (id, org_id, project_id, name, is_default, config, created_at, updated_at)
               SELECT 'env_' || lower(hex(randomblob(8))), org_id, id, 'default', 1,
                 '{"name":"default","description":"","target":null,"gateway":null,'
                 || '"image":null,"path":null,"environment":{},"secret_environment":{},'
                 || '"secret_env":{},"secret_env_from":[]}',
                 created_at, created_at
               FROM projects""",
            "UPDATE jobs SET config = json_set(config, '$.environment_id', NULL,"
            " '$.allow_environment_override', json('false'))"
            " WHERE json_type(config, '$.environment_id') IS NULL",
            "UPDATE job_versions SET config = json_set(config, '$.environment_id', NULL,"
            " '$.allow_environment_override', json('false'))"
            " WHERE json_type(config, '$.environment_id') IS NULL",
        ),
    ),
    Migration(
        13,
        "scoped, expiring tokens and the audit trail",
        (
            # NULL: no expiry / every project of the org / every action the role allows.
            "ALTER TABLE tokens ADD COLUMN expires_at TEXT",
            "ALTER TABLE tokens ADD COLUMN scope_project_id TEXT"
            " REFERENCES projects(id) ON DELETE CASCADE",
            "ALTER TABLE tokens ADD COLUMN scope_actions TEXT",  # a JSON list of actions
            # Who changed what: kept after the token, project or job is gone (no foreign
            # keys but the org's), pruned by age (RUNYARD_AUDIT_RETENTION_DAYS).
            """CREATE TABLE audit_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
                at TEXT NOT NULL,
                actor_token_id TEXT,
                actor_name TEXT NOT NULL,
                request_id TEXT,
                source_address TEXT,
                action TEXT NOT NULL,
                object_type TEXT NOT NULL,
                object_id TEXT NOT NULL,
                object_name TEXT NOT NULL DEFAULT '',
                project_id TEXT,
                diff TEXT
            )""",
            "CREATE INDEX audit_by_org ON audit_events (org_id, seq DESC)",
            "CREATE INDEX audit_by_age ON audit_events (at)",
        ),
    ),
    Migration(
        14,
        "run indexes that answer run lists, their counts and job status from the index alone "
        "(ten million runs), and retention's walk by age",
        (
            # Each list index orders by seq under its equality columns and carries the columns
            # the other filters test, so a filtered page or count never reads a run's row
            # (several KB: snapshot and results) just to reject it.
            "DROP INDEX IF EXISTS runs_by_job",
            "CREATE INDEX runs_by_job ON runs (job_id, seq DESC, org_id, project_id, created_at)",
            "DROP INDEX IF EXISTS runs_by_job_status",
            # Also the status window: counts and successful durations since a time.
            """CREATE INDEX runs_by_job_status ON runs
               (job_id, status, seq DESC, created_at, duration_seconds, org_id, project_id)""",
            "DROP INDEX IF EXISTS runs_by_org",
            "CREATE INDEX runs_by_org ON runs (org_id, seq DESC, status, created_at, project_id)",
            # A capped count stops at its cap, or at the end of the range it scans: these
            # keep that range to the matches when a filter is selective (a rare status, a
            # recent ``since``, one project of a big org).
            """CREATE INDEX runs_by_org_status ON runs
               (org_id, status, seq DESC, created_at, project_id)""",
            "CREATE INDEX runs_by_org_age ON runs (org_id, created_at, status, project_id)",
            """CREATE INDEX runs_by_project ON runs
               (project_id, seq DESC, status, created_at, org_id)""",
            # Retention finds the oldest finished runs without scanning the table.
            "CREATE INDEX runs_by_age ON runs (created_at, status)",
            # Each job's document as the API shows it, kept by triggers on every write (a
            # migration's json_set on config included): listing a project's jobs reads 50
            # stored strings instead of rendering 50 (app/store/jobs.py list_json). A later
            # migration that changes the document drops and recreates these triggers.
            "ALTER TABLE jobs ADD COLUMN doc TEXT",
            f"UPDATE jobs SET doc = {_JOB_DOC}",
            f"""CREATE TRIGGER jobs_doc_on_insert AFTER INSERT ON jobs BEGIN
                UPDATE jobs SET doc = {_JOB_DOC} WHERE rowid = NEW.rowid; END""",
            f"""CREATE TRIGGER jobs_doc_on_update AFTER UPDATE OF id, project_id, version,
                webhook_secret, sync_state, sync_error, created_at, updated_at, config ON jobs
                BEGIN UPDATE jobs SET doc = {_JOB_DOC} WHERE rowid = NEW.rowid; END""",
        ),
    ),
    Migration(
        15,
        "an index for a job's notifications",
        (
            # GET …/jobs/{job_id}/notifications, newest first (app/store/outbox.py).
            # Retention's walk of run-less alerts needs none: notifications_by_run holds
            # them (run_id NULL) in seq order.
            "CREATE INDEX notifications_by_job ON notifications (job_id, seq)",
        ),
    ),
)

CURRENT_VERSION = MIGRATIONS[-1].version
