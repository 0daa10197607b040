"""What every executor offers the services, and what it reports back.

An executor turns a run record into something running (a local process, a Kubernetes Job)
and keeps schedules in place (the embedded scheduler, CronJobs). It reports progress to a
``RunEvents`` sink (the tracker), which owns the run's state in the database.

What starts runs on its own (the embedded scheduler, the Kubernetes tracker recording the
runs of CronJobs) does so through a ``RunStarter``: the run service, built after the executor,
so none of them imports the services or the container.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from app.models import Job, NodeSummary, Project, RunRecord, RunStatus, TriggeredBy
from validators.result import ParsedCommand


class Launched(msgspec.Struct, frozen=True):
    """Where a run went: the Kubernetes Job (or local process) name and its namespace."""

    job_name: str
    namespace: str | None = None


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    status: RunStatus
    end_time: datetime
    exit_code: int | None = None
    error: str | None = None
    results: Sequence[NodeSummary] = ()


class SyncReport(msgspec.Struct, kw_only=True):
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[str] = msgspec.field(default_factory=list)


class RunEvents(Protocol):
    """The tracker's side: executors call these as runs progress."""

    def started(self, run_id: str, at: datetime) -> None: ...

    def log(self, run_id: str, text: str) -> None: ...

    def finished(self, run_id: str, outcome: Outcome) -> bool:
        """True when this call moved the run to its terminal status."""
        ...


class Executor(Protocol):
    name: str

    def admit(self, org_id: str) -> None:
        """Raise a RunyardError (409, 429) when a run of ``org_id`` may not start now, so a
        refused trigger records nothing; ``launch`` checks again."""
        ...

    def launch(self, run: RunRecord) -> Launched:
        """Start the run; raises ClusterUnavailable/ClusterError when it cannot."""
        ...

    def cancel(self, run: RunRecord) -> None:
        """Stop the run and whatever it started (pods, process group)."""
        ...

    def live_logs(self, run: RunRecord) -> str | None:
        """The logs of an active run read from where it runs; None when not available."""
        ...

    def apply_job(self, project: Project, job: Job) -> None:
        """Bring the job's schedule in line with its configuration (project deployed)."""
        ...

    def remove_job(self, project: Project, job: Job) -> None: ...

    def deploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport: ...

    def undeploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport: ...

    def start(self) -> None:
        """Start background work (watches, schedulers); called once at app start-up."""
        ...

    def stop(self) -> None: ...


class RunStarter(Protocol):
    """Records and launches a run (``RunService.start_run``); None when a scheduled run is
    skipped (concurrency_policy Forbid with a run active, or the slot already has its run).
    ``job_name``: a Job the cluster created itself (a CronJob's), recorded, not launched;
    ``suspended``: that Job waits for runyard, which queues the run or resumes the Job."""

    def start_run(
        self,
        project: Project,
        job: Job | None,
        *,
        triggered_by: TriggeredBy,
        scheduled_for: datetime | None = None,
        job_name: str | None = None,
        suspended: bool = False,
    ) -> RunRecord | None: ...


class Schedules(Protocol):
    """The embedded scheduler as the local executor sees it: told when schedules change."""

    def refresh_job(self, job_id: str) -> None: ...

    def refresh_project(self, project_id: str) -> None: ...

    def forget_job(self, job_id: str) -> None: ...

    def preview(self, jobs: Sequence[Job], *, deployed: bool) -> SyncReport:
        """What (un)deploying these jobs changes among the active schedules."""
        ...


class CommandParser(Protocol):
    """The command policy (``services.commands.CommandChecker``): a job's command text to
    the argument list to run, or a 422."""

    def parse(self, kind: str, text: str, field: str = "command") -> ParsedCommand: ...
