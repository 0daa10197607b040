"""Versioned schema migrations, applied in order; ``PRAGMA user_version`` records the last.

Never edit a released migration: add a new one. Each runs in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
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
)

CURRENT_VERSION = MIGRATIONS[-1].version
