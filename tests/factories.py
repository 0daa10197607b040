"""Run records for tests and benchmarks that need one without going through a trigger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.ids import new_id, utcnow
from app.models import JobConfig, Project, RunRecord, RunSnapshot
from app.store import Store


def snapshot(
    *,
    project_name: str = "analytics",
    kind: str = "dbt",
    path: str | None = None,
    job: JobConfig | None = None,
    argv: list[str] | None = None,
    project_environment: dict[str, str] | None = None,
    project_secret_environment: dict[str, str] | None = None,
) -> RunSnapshot:
    job = job or JobConfig(name="nightly", command="dbt build")
    return RunSnapshot(
        project_name=project_name,
        project_kind="sqlmesh" if kind == "sqlmesh" else "dbt",
        image=None,
        path=path,
        service_account=None,
        template_overrides={},
        project_environment=project_environment or {},
        project_secret_environment=project_secret_environment or {},
        project_resources={},
        job=job,
        job_version=1,
        argv=argv or job.command.split(),
    )


def run_record(
    *,
    org_id: str,
    run_id: str | None = None,
    project_id: str = "proj_test",
    job_id: str = "job_test",
    status: Any = "pending",
    executor: str = "local",
    created_at: datetime | None = None,
    snapshot_: RunSnapshot | None = None,
    **fields: Any,
) -> RunRecord:
    """A run as start_run would record it; ``fields`` override any other Run field."""
    now = created_at or utcnow()
    taken = snapshot_ or snapshot()
    values: dict[str, Any] = {
        "job_name": None,
        "cronjob_name": None,
        "namespace": None,
        "job_type": "build",
        "start_time": None,
        "end_time": None,
        "duration_seconds": None,
        "triggered_by": "manual",
        "command": taken.job.command,
        "job_version": 1,
        "updated_at": now,
    } | fields
    return RunRecord(
        id=run_id or new_id("run"),
        org_id=org_id,
        project_id=project_id,
        job_id=job_id,
        status=status,
        executor=executor,
        created_at=now,
        snapshot=taken,
        **values,
    )


def saved_project(store: Store, *, org_id: str, org_slug: str, name: str, **fields: Any) -> Project:
    """A project stored directly (benchmarks seed thousands without the API's checks)."""
    now = utcnow()
    fields.setdefault("kind", "dbt")
    project = Project(
        id=new_id("proj"),
        org_id=org_id,
        org_slug=org_slug,
        name=name,
        created_at=now,
        updated_at=now,
        **fields,
    )
    store.projects.save(project)
    return project
