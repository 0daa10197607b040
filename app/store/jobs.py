"""Jobs and their versions. The configuration is one JSON document (``JobConfig``).

Secret values never enter that document: it holds them REDACTED (so the SQL-rendered list,
the versions and every reader see names only), and the real ones are sealed in the
``secrets`` column (webhook headers, secret environment) and in ``webhook_secret``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from app.errors import Conflict
from app.ids import from_text, to_text
from app.models import Job, JobConfig, JobVersion, SyncState, redact_job_config, secret_changes
from app.secrets import SecretBox
from app.store.db import Database, insert_sql

_encode = msgspec.json.Encoder().encode
_config_decoder = msgspec.json.Decoder(JobConfig)
_names_decoder = msgspec.json.Decoder(list[str])

_COLUMNS = (
    "id, org_id, project_id, config, webhook_secret, version, sync_state, sync_error,"
    " created_at, updated_at, secrets"
)


def _job(row: dict[str, Any], box: SecretBox) -> Job:
    config = _config_decoder.decode(row["config"])
    sealed = box.open_json(row["secrets"])
    config.webhook_headers = sealed.get("webhook_headers", {})
    config.secret_environment = sealed.get("secret_environment", {})
    return Job(
        **msgspec.structs.asdict(config),
        id=row["id"],
        org_id=row["org_id"],
        project_id=row["project_id"],
        version=row["version"],
        webhook_secret=box.open(row["webhook_secret"]),
        webhook_secret_set=bool(row["webhook_secret"]),
        sync_state=row["sync_state"],
        sync_error=row["sync_error"],
        created_at=from_text(row["created_at"]),
        updated_at=from_text(row["updated_at"]),
    )


def config_of(job: Job) -> JobConfig:
    """The job's whole configuration, secret values included (a run's snapshot)."""
    return msgspec.convert(job, JobConfig, from_attributes=True)


def _secret_state(job: Job) -> dict[str, dict[str, str]]:
    """The job's secrets by group, to tell which a new version changed."""
    return {
        "webhook_headers": dict(job.webhook_headers),
        "secret_environment": dict(job.secret_environment),
        "webhook_secret": {"": job.webhook_secret} if job.webhook_secret else {},
    }


class _Written(msgspec.Struct):
    config: str  # the document, secrets REDACTED
    secrets: str | None
    webhook_secret: str | None


def _written(job: Job, box: SecretBox) -> _Written:
    return _Written(
        _encode(redact_job_config(job)).decode(),
        box.seal_json(
            {"webhook_headers": job.webhook_headers, "secret_environment": job.secret_environment}
        ),
        box.seal(job.webhook_secret),
    )


def _row(job: Job, written: _Written) -> dict[str, Any]:
    """The job's columns by name: an insert's named parameters (an update sets all but
    ``created_at``, which it leaves out of its statement)."""
    return {
        "id": job.id,
        "org_id": job.org_id,
        "project_id": job.project_id,
        "name": job.name,
        "config": written.config,
        "secrets": written.secrets,
        "webhook_secret": written.webhook_secret,
        "version": job.version,
        "sync_state": job.sync_state,
        "sync_error": job.sync_error,
        "created_at": to_text(job.created_at),
        "updated_at": to_text(job.updated_at),
    }


def _name_taken(job: Job) -> Conflict:
    return Conflict(
        f"A job named {job.name!r} already exists in this project; choose another name "
        "or update that job."
    )


class JobRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def get(self, org_id: str, project_id: str, job_id: str) -> Job | None:
        row = self._db.row(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND project_id = ? AND org_id = ?",
            (job_id, project_id, org_id),
        )
        return _job(row, self._db.box) if row else None

    def get_in_org(self, org_id: str, job_id: str) -> Job | None:
        row = self._db.row(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND org_id = ?", (job_id, org_id)
        )
        return _job(row, self._db.box) if row else None

    def get_any(self, job_id: str) -> Job | None:
        row = self._db.row(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(row, self._db.box) if row else None

    def for_project(self, project_id: str) -> list[Job]:
        rows = self._db.rows(
            f"SELECT {_COLUMNS} FROM jobs WHERE project_id = ? ORDER BY name", (project_id,)
        )
        return [_job(r, self._db.box) for r in rows]

    def list_json(self, project_id: str) -> tuple[int, str]:
        """(count, JSON array of the project's jobs as the API shows them). Listing is the
        hot read path: each job's document is stored rendered (``doc``, kept by triggers:
        migration 14), so no Python object is built and nothing rendered per job."""
        cursor = self._db.db.conn.execute(
            "SELECT doc FROM jobs WHERE project_id = ? ORDER BY name", (project_id,)
        )
        documents = [row[0] for row in cursor]
        return len(documents), "[" + ",".join(documents) + "]"

    def dependants(self, org_id: str, job_id: str) -> list[Job]:
        """The org's jobs whose depends_on names ``job_id`` (only those are decoded: this
        runs after every finished run)."""
        rows = self._db.rows(
            f"SELECT {_COLUMNS} FROM jobs WHERE org_id = ? AND EXISTS (SELECT 1 FROM"
            " json_each(config, '$.depends_on') d WHERE json_extract(d.value, '$.job_id') = ?)",
            (org_id, job_id),
        )
        return [_job(r, self._db.box) for r in rows]

    def for_org(self, org_id: str) -> list[Job]:
        rows = self._db.rows(f"SELECT {_COLUMNS} FROM jobs WHERE org_id = ?", (org_id,))
        return [_job(r, self._db.box) for r in rows]

    def everything(self) -> list[Job]:
        return [_job(r, self._db.box) for r in self._db.rows(f"SELECT {_COLUMNS} FROM jobs")]

    def count(self, project_id: str) -> int:
        return int(self._db.scalar("SELECT count(*) FROM jobs WHERE project_id = ?", (project_id,)))

    def insert(self, job: Job) -> None:
        written = _written(job, self._db.box)
        changed = _encode(secret_changes({}, _secret_state(job))).decode()
        try:
            with self._db.write() as db:
                row = _row(job, written)
                db.conn.execute(insert_sql("jobs", row), row)
                db.conn.execute(
                    "INSERT INTO job_versions (job_id, version, config, secrets_changed,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (job.id, job.version, written.config, changed, to_text(job.updated_at)),
                )
        except sqlite3.IntegrityError:
            raise _name_taken(job) from None

    def update(self, job: Job, expected_version: int) -> bool:
        """Write a new version of the job; False when someone else wrote first."""
        box = self._db.box
        written = _written(job, box)
        try:
            with self._db.write() as db:
                row = self._db.row(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job.id,))
                before = _secret_state(_job(row, box)) if row else {}
                changed = _encode(secret_changes(before, _secret_state(job))).decode()
                cursor = db.conn.execute(
                    "UPDATE jobs SET name = :name, config = :config, secrets = :secrets,"
                    " webhook_secret = :webhook_secret, version = :version,"
                    " sync_state = :sync_state, sync_error = :sync_error,"
                    " updated_at = :updated_at WHERE id = :id AND version = :expected_version",
                    {**_row(job, written), "expected_version": expected_version},
                )
                if cursor.rowcount != 1:
                    return False
                db.conn.execute(
                    "INSERT INTO job_versions (job_id, version, config, secrets_changed,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (job.id, job.version, written.config, changed, to_text(job.updated_at)),
                )
        except sqlite3.IntegrityError:
            raise _name_taken(job) from None
        return True

    def set_sync(self, job_id: str, state: SyncState, error: str | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET sync_state = ?, sync_error = ? WHERE id = ?", (state, error, job_id)
        )

    def versions(self, job_id: str) -> list[JobVersion]:
        rows = self._db.rows(
            "SELECT version, config, secrets_changed, created_at FROM job_versions"
            " WHERE job_id = ? ORDER BY version DESC",
            (job_id,),
        )
        return [
            JobVersion(
                version=r["version"],
                config=_config_decoder.decode(r["config"]),
                secrets_changed=_names_decoder.decode(r["secrets_changed"])
                if r["secrets_changed"]
                else [],
                created_at=from_text(r["created_at"]),
            )
            for r in rows
        ]

    def delete(self, job_id: str) -> None:
        with self._db.write() as db:
            db.conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
