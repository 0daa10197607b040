"""The only package that speaks SQL. ``Store`` bundles the repositories over one database."""

from __future__ import annotations

from pathlib import Path

from app.store.artifacts import ArtifactRepo
from app.store.audit import AuditRepo
from app.store.db import Database
from app.store.environments import EnvironmentRepo
from app.store.history import HistoryRepo
from app.store.jobs import JobRepo
from app.store.local import LocalRepo
from app.store.orgs import OrgRepo, TokenRepo
from app.store.outbox import OutboxRepo
from app.store.projects import ProjectRepo
from app.store.runs import RunPage, RunRepo
from app.store.sessions import SessionRepo
from app.store.silence import SilenceRepo

__all__ = ["Database", "RunPage", "Store"]


class Store:
    def __init__(self, path: str | Path, secret_key: str | None = None) -> None:
        # secret_key: RUNYARD_SECRET_KEY (settings.secret_key); None: the key file beside
        # the database (app/secrets.py).
        self.database = Database(path, secret_key)
        self.orgs = OrgRepo(self.database)
        self.tokens = TokenRepo(self.database)
        self.projects = ProjectRepo(self.database)
        self.environments = EnvironmentRepo(self.database)  # project environments
        self.jobs = JobRepo(self.database)
        self.runs = RunRepo(self.database)
        self.local = LocalRepo(self.database)  # local executor and scheduler state
        self.outbox = OutboxRepo(self.database)  # notifications (app/notify)
        self.artifacts = ArtifactRepo(self.database)  # run artifacts (files + rows)
        self.history = HistoryRepo(self.database)  # model history (node results per run)
        self.audit = AuditRepo(self.database)  # who changed what (app/services/audit.py)
        self.sessions = SessionRepo(self.database)  # web UI sign-ins (app/web/sessions.py)
        self.silence = SilenceRepo(self.database)  # silence alerts (missed, overdue)

    def migrate(self) -> int:
        return self.database.migrate()

    def close(self) -> None:
        self.database.close()
