"""Jobs and their versions. The configuration is one JSON document (``JobConfig``)."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from app.errors import Conflict
from app.ids import from_text, to_text
from app.models import Job, JobConfig, JobVersion, SyncState
from app.store.db import Database

_encode = msgspec.json.Encoder().encode
_config_decoder = msgspec.json.Decoder(JobConfig)

_COLUMNS = (
    "id, org_id, project_id, config, webhook_secret, version, sync_state, sync_error,"
    " created_at, updated_at"
)


# One job as the API shows it (JobOut), rendered by SQLite: identity and bookkeeping
# columns spliced in front of the stored configuration document, which always holds every
# JobConfig field (msgspec writes defaults too; a migration must rewrite stored documents
# when a field is added). The webhook secret is a separate column: only its presence shows.
_JOB_JSON = (
    """'{"id":' || json_quote(id) || ',"project_id":' || json_quote(project_id)"""
    """ || ',"version":' || version"""
    """ || ',"webhook_secret_set":' || iif(webhook_secret IS NULL, 'false', 'true')"""
    """ || ',"sync_state":' || json_quote(sync_state)"""
    """ || ',"sync_error":' || json_quote(sync_error)"""
    """ || ',"created_at":' || json_quote(created_at)"""
    """ || ',"updated_at":' || json_quote(updated_at) || ',' || substr(config, 2)"""
)


def _job(row: dict[str, Any]) -> Job:
    config = _config_decoder.decode(row["config"])
    return Job(
        **msgspec.structs.asdict(config),
        id=row["id"],
        org_id=row["org_id"],
        project_id=row["project_id"],
        version=row["version"],
        webhook_secret=row["webhook_secret"],
        webhook_secret_set=bool(row["webhook_secret"]),
        sync_state=row["sync_state"],
        sync_error=row["sync_error"],
        created_at=from_text(row["created_at"]),
        updated_at=from_text(row["updated_at"]),
    )


def config_of(job: Job) -> JobConfig:
    return msgspec.convert(job, JobConfig, from_attributes=True)


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
        return _job(row) if row else None

    def get_in_org(self, org_id: str, job_id: str) -> Job | None:
        row = self._db.row(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND org_id = ?", (job_id, org_id)
        )
        return _job(row) if row else None

    def get_any(self, job_id: str) -> Job | None:
        row = self._db.row(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    def for_project(self, project_id: str) -> list[Job]:
        rows = self._db.rows(
            f"SELECT {_COLUMNS} FROM jobs WHERE project_id = ? ORDER BY name", (project_id,)
        )
        return [_job(r) for r in rows]

    def list_json(self, project_id: str) -> tuple[int, str]:
        """(count, JSON array of the project's jobs as the API shows them). Listing is the
        hot read path: SQLite renders each job, so no Python object is built per job."""
        cursor = self._db.db.conn.execute(
            f"SELECT {_JOB_JSON} FROM jobs WHERE project_id = ? ORDER BY name", (project_id,)
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
        return [_job(r) for r in rows]

    def for_org(self, org_id: str) -> list[Job]:
        rows = self._db.rows(f"SELECT {_COLUMNS} FROM jobs WHERE org_id = ?", (org_id,))
        return [_job(r) for r in rows]

    def everything(self) -> list[Job]:
        return [_job(r) for r in self._db.rows(f"SELECT {_COLUMNS} FROM jobs")]

    def count(self, project_id: str) -> int:
        return int(self._db.scalar("SELECT count(*) FROM jobs WHERE project_id = ?", (project_id,)))

    def insert(self, job: Job) -> None:
        config = _encode(config_of(job)).decode()
        try:
            with self._db.write() as db:
                db.conn.execute(
                    f"INSERT INTO jobs ({_COLUMNS}, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.org_id,
                        job.project_id,
                        config,
                        job.webhook_secret,
                        job.version,
                        job.sync_state,
                        job.sync_error,
                        to_text(job.created_at),
                        to_text(job.updated_at),
                        job.name,
                    ),
                )
                db.conn.execute(
                    "INSERT INTO job_versions (job_id, version, config, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (job.id, job.version, config, to_text(job.updated_at)),
                )
        except sqlite3.IntegrityError:
            raise _name_taken(job) from None

    def update(self, job: Job, expected_version: int) -> bool:
        """Write a new version of the job; False when someone else wrote first."""
        config = _encode(config_of(job)).decode()
        try:
            with self._db.write() as db:
                cursor = db.conn.execute(
                    "UPDATE jobs SET name = ?, config = ?, webhook_secret = ?, version = ?,"
                    " sync_state = ?, sync_error = ?, updated_at = ? WHERE id = ? AND version = ?",
                    (
                        job.name,
                        config,
                        job.webhook_secret,
                        job.version,
                        job.sync_state,
                        job.sync_error,
                        to_text(job.updated_at),
                        job.id,
                        expected_version,
                    ),
                )
                if cursor.rowcount != 1:
                    return False
                db.conn.execute(
                    "INSERT INTO job_versions (job_id, version, config, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (job.id, job.version, config, to_text(job.updated_at)),
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
            "SELECT version, config, created_at FROM job_versions WHERE job_id = ?"
            " ORDER BY version DESC",
            (job_id,),
        )
        return [
            JobVersion(
                version=r["version"],
                config=_config_decoder.decode(r["config"]),
                created_at=from_text(r["created_at"]),
            )
            for r in rows
        ]

    def delete(self, job_id: str) -> None:
        with self._db.write() as db:
            db.conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
