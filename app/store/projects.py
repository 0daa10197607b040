"""Projects: identity columns plus the user's configuration as one JSON document."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from app.errors import Conflict
from app.ids import from_text, to_text
from app.models import Project, ProjectConfig, redacted
from app.secrets import SecretBox
from app.store.db import Database, insert_sql

_encode = msgspec.json.Encoder().encode
_config_decoder = msgspec.json.Decoder(ProjectConfig)

_SELECT = (
    "SELECT p.id, p.org_id, o.slug AS org_slug, p.config, p.secrets, p.slack_webhook_url,"
    " p.deployed, p.created_at, p.updated_at FROM projects p JOIN orgs o ON o.id = p.org_id"
)


def _project(row: dict[str, Any], box: SecretBox) -> Project:
    # The document has the secret values REDACTED; the real ones are sealed beside it.
    config = _config_decoder.decode(row["config"])
    config.secret_environment = box.open_json(row["secrets"]).get("secret_environment", {})
    return Project(
        **msgspec.structs.asdict(config),
        id=row["id"],
        org_id=row["org_id"],
        org_slug=row["org_slug"],
        deployed=bool(row["deployed"]),
        slack_webhook_url=box.open(row["slack_webhook_url"]),
        slack_webhook_url_set=bool(row["slack_webhook_url"]),
        created_at=from_text(row["created_at"]),
        updated_at=from_text(row["updated_at"]),
    )


def config_of(project: Project) -> ProjectConfig:
    return msgspec.convert(project, ProjectConfig, from_attributes=True)


class ProjectRepo:
    def __init__(self, database: Database) -> None:
        self._db = database

    def get(self, org_id: str, project_id: str) -> Project | None:
        row = self._db.row(_SELECT + " WHERE p.id = ? AND p.org_id = ?", (project_id, org_id))
        return _project(row, self._db.box) if row else None

    def get_any(self, project_id: str) -> Project | None:
        """Outside a request (workers, executors): no org filter."""
        row = self._db.row(_SELECT + " WHERE p.id = ?", (project_id,))
        return _project(row, self._db.box) if row else None

    def for_org(self, org_id: str) -> list[Project]:
        return [
            _project(r, self._db.box)
            for r in self._db.rows(_SELECT + " WHERE p.org_id = ? ORDER BY p.name", (org_id,))
        ]

    def list_deployed(self) -> list[Project]:
        rows = self._db.rows(_SELECT + " WHERE p.deployed = 1")
        return [_project(r, self._db.box) for r in rows]

    def save(self, project: Project) -> None:
        """Insert or update; a name taken by another project of the org is a 409."""
        config = config_of(project)
        box = self._db.box
        sealed = box.seal_json({"secret_environment": config.secret_environment})
        config.secret_environment = redacted(config.secret_environment)
        row = {
            "id": project.id,
            "org_id": project.org_id,
            "name": project.name,
            "kind": project.kind,
            "config": _encode(config).decode(),
            "secrets": sealed,
            "slack_webhook_url": box.seal(project.slack_webhook_url),
            "deployed": int(project.deployed),
            "created_at": to_text(project.created_at),
            "updated_at": to_text(project.updated_at),
        }
        try:
            with self._db.write() as db:
                db.conn.execute(
                    insert_sql("projects", row) + " ON CONFLICT (id) DO UPDATE SET"
                    " name = excluded.name, kind = excluded.kind, config = excluded.config,"
                    " secrets = excluded.secrets, slack_webhook_url = excluded.slack_webhook_url,"
                    " deployed = excluded.deployed, updated_at = excluded.updated_at",
                    row,
                )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"A project named {project.name!r} already exists in this organization; "
                "choose another name or update that project."
            ) from None

    def set_deployed(self, project_id: str, deployed: bool) -> None:
        self._db.execute(
            "UPDATE projects SET deployed = ? WHERE id = ?", (int(deployed), project_id)
        )

    def delete(self, project_id: str) -> None:
        with self._db.write() as db:
            db.conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))
