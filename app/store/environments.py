"""Project environments: identity columns plus the configuration as one JSON document.

As for projects, secret values never enter the document (it holds them REDACTED); the real
ones are sealed in the ``secrets`` column.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from app.errors import Conflict
from app.ids import from_text, new_id, to_text
from app.models import Environment, EnvironmentConfig, redacted
from app.secrets import SecretBox
from app.store.db import Database, insert_sql

_encode = msgspec.json.Encoder().encode
_config_decoder = msgspec.json.Decoder(EnvironmentConfig)

_SELECT = (
    "SELECT id, org_id, project_id, is_default, config, secrets, created_at, updated_at"
    " FROM environments"
)
DEFAULT_NAME = "default"


def _environment(row: dict[str, Any], box: SecretBox) -> Environment:
    config = _config_decoder.decode(row["config"])
    config.secret_environment = box.open_json(row["secrets"]).get("secret_environment", {})
    return Environment(
        **msgspec.structs.asdict(config),
        id=row["id"],
        org_id=row["org_id"],
        project_id=row["project_id"],
        is_default=bool(row["is_default"]),
        created_at=from_text(row["created_at"]),
        updated_at=from_text(row["updated_at"]),
    )


def config_of(environment: Environment) -> EnvironmentConfig:
    return msgspec.convert(environment, EnvironmentConfig, from_attributes=True)


class EnvironmentRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def get(self, org_id: str, project_id: str, environment_id: str) -> Environment | None:
        row = self._db.row(
            _SELECT + " WHERE id = ? AND project_id = ? AND org_id = ?",
            (environment_id, project_id, org_id),
        )
        return _environment(row, self._db.box) if row else None

    def by_name(self, org_id: str, project_id: str, name: str) -> Environment | None:
        row = self._db.row(
            _SELECT + " WHERE name = ? AND project_id = ? AND org_id = ?",
            (name, project_id, org_id),
        )
        return _environment(row, self._db.box) if row else None

    def for_project(self, project_id: str) -> list[Environment]:
        rows = self._db.rows(
            _SELECT + " WHERE project_id = ? ORDER BY is_default DESC, name", (project_id,)
        )
        return [_environment(r, self._db.box) for r in rows]

    def default(self, project_id: str) -> Environment | None:
        row = self._db.row(_SELECT + " WHERE project_id = ? AND is_default = 1", (project_id,))
        return _environment(row, self._db.box) if row else None

    def of_job(self, project_id: str, environment_id: str | None) -> Environment | None:
        """The environment a job runs in: its own, else the project's default. None: the
        project has none (a job's environment is checked when it is saved, and an
        environment a job uses cannot be deleted)."""
        if environment_id is None:
            return self.default(project_id)
        row = self._db.row(
            _SELECT + " WHERE id = ? AND project_id = ?", (environment_id, project_id)
        )
        return _environment(row, self._db.box) if row else None

    def create_default(self, org_id: str, project_id: str, at: Any) -> Environment:
        """The project's default environment: empty, so every field is the project's."""
        environment = Environment(
            name=DEFAULT_NAME,
            id=new_id("env"),
            org_id=org_id,
            project_id=project_id,
            is_default=True,
            created_at=at,
            updated_at=at,
        )
        self.save(environment)
        return environment

    def save(self, environment: Environment) -> None:
        """Insert or update; a name taken by another environment of the project is a 409."""
        config = config_of(environment)
        box = self._db.box
        sealed = box.seal_json({"secret_environment": config.secret_environment})
        config.secret_environment = redacted(config.secret_environment)
        row = {
            "id": environment.id,
            "org_id": environment.org_id,
            "project_id": environment.project_id,
            "name": environment.name,
            "is_default": int(environment.is_default),
            "config": _encode(config).decode(),
            "secrets": sealed,
            "created_at": to_text(environment.created_at),
            "updated_at": to_text(environment.updated_at),
        }
        try:
            with self._db.write() as db:
                db.conn.execute(
                    insert_sql("environments", row) + " ON CONFLICT (id) DO UPDATE SET"
                    " name = excluded.name, config = excluded.config,"
                    " secrets = excluded.secrets, updated_at = excluded.updated_at",
                    row,
                )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"An environment named {environment.name!r} already exists in this project; "
                "choose another name or update that environment."
            ) from None

    def delete(self, environment_id: str) -> None:
        with self._db.write() as db:
            db.conn.execute(
                "DELETE FROM environments WHERE id = ? AND is_default = 0", (environment_id,)
            )
