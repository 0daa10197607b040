"""Response bodies: the domain records as users see them (no secrets, derived fields added).

Every secret map (``webhook_headers``, ``secret_environment``) reads back with its names and
each value REDACTED; ``webhook_secret`` and ``slack_webhook_url`` only as ``*_set`` flags.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.models import (
    Job,
    JobConfig,
    JobOut,
    JobVersion,
    Project,
    ProjectOut,
    Run,
    RunEnvironment,
    RunOut,
    Step,
    failed_step,
    redact_job_config,
    redacted,
)
from app.ports import SyncReport
from app.store import RunPage


def project_out(project: Project) -> ProjectOut:
    out = msgspec.convert(project, ProjectOut, from_attributes=True)
    out.secret_environment = redacted(project.secret_environment)
    return out


def job_out(job: Job) -> JobOut:
    out = msgspec.convert(job, JobOut, from_attributes=True)
    out.webhook_headers = redacted(job.webhook_headers)
    out.secret_environment = redacted(job.secret_environment)
    return out


def run_out(run: Run) -> RunOut:
    # Only the Run fields: a RunRecord also carries the org and the snapshot.
    fields = {name: getattr(run, name) for name in Run.__struct_fields__}
    return RunOut(
        **fields,
        is_terminal=run.is_terminal,
        is_success=run.is_success,
        is_failed=run.is_failed,
        failed_step=failed_step(run.steps),
    )


def run_list(page: RunPage) -> RunList:
    return RunList([run_out(r) for r in page.runs], page.total, page.next_cursor, page.total_capped)


class ProjectList(msgspec.Struct):
    projects: list[ProjectOut]
    total: int


class JobList(msgspec.Struct):
    jobs: list[JobOut]
    total: int


class VersionList(msgspec.Struct):
    versions: list[JobVersion]
    total: int


class RunList(msgspec.Struct):
    runs: list[RunOut]
    total: int  # counted up to 10,000 (app/store/runs.py TOTAL_CAP)
    next_cursor: str | None
    total_capped: bool = False  # more runs match than ``total`` says


class TriggerBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    command_override: str | None = None
    # Kubernetes: run this image instead of the project's (a pull request's build); it
    # must be under one of the project's allowed_images. Triggers only.
    image: str | None = None
    # Run once in another environment of the project, by id or by name (the job must
    # allow it: allow_environment_override). Triggers only.
    environment_id: str | None = None
    environment: str | None = None
    # Run these steps instead of the job's command or steps (docs/steps.md). Triggers only.
    steps: list[Step] | None = None


class TriggerResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    job_run_id: str
    job_name: str | None
    status: str
    message: str
    queue_position: int | None = None  # a queued run's place in its job's queue


class DeployResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What deploy or undeploy changed, in the executor's terms: ``cronjobs`` on
    Kubernetes, ``schedules`` (the embedded scheduler's) with the local executor."""

    project_id: str
    deployed: bool
    cronjobs: SyncReport | None = None
    schedules: SyncReport | None = None


def deploy_result(
    project_id: str, deployed: bool, report: SyncReport, executor_name: str
) -> DeployResult:
    if executor_name == "kubernetes":
        return DeployResult(project_id=project_id, deployed=deployed, cronjobs=report)
    return DeployResult(project_id=project_id, deployed=deployed, schedules=report)


class RunConfig(msgspec.Struct, kw_only=True):
    run_id: str
    job_version: int
    config: JobConfig
    # The project environment the run ran with (None: recorded before environments).
    environment: RunEnvironment | None = None

    def __post_init__(self) -> None:
        # A run's snapshot carries the real values (its executor needs them); whoever
        # builds this answer from it, the answer shows them REDACTED.
        self.config = redact_job_config(self.config)
        if self.environment is not None:
            self.environment = msgspec.structs.replace(
                self.environment,
                secret_environment=redacted(self.environment.secret_environment),
            )


class Health(msgspec.Struct):
    status: str


class Ready(msgspec.Struct, kw_only=True):
    status: str
    database: str
    executor: str
    schema_version: int
    checks: dict[str, Any] = msgspec.field(default_factory=dict)


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] = msgspec.field(default_factory=list)
