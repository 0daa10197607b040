"""What each page shows, built from the services the API uses (no SQL here).

Every read goes through a service with the session's principal, so another organization's
job or run is the services' NotFound: a 404 page, as in the API. So is, to a project-scoped
token's session, another project's (the services check runs; ``find_job`` checks jobs).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec

from app.engines.results import FAILED_STATUSES
from app.errors import NotFound
from app.ids import utcnow
from app.models import (
    ACTIVE_STATUSES,
    OPEN_STATUSES,
    FailedStep,
    Job,
    JobVersion,
    Principal,
    Project,
    Run,
    RunEnvironment,
    RunStep,
    failed_step,
    redact_job_config,
    step_name,
)
from app.notify.outbox import NotificationOutbox
from app.services.environments import EnvironmentService
from app.services.history import ModelStats, Timeline, TimelineNode
from app.services.jobs import JobService
from app.services.projects import ProjectService
from app.services.runs import JobStatus, RunService
from app.services.tokens import sees_project
from app.store.jobs import config_of
from app.store.outbox import Attempt, Notification
from app.web.charts import FAILING, Chart, Gantt, Spark, gantt, run_history, sparkline
from app.web.format import run_status

WEEK = timedelta(days=7)
HISTORY_RUNS = 50
SPARK_RUNS = 40  # the overview's sparkline: the last 7 days' runs, at most this many
JOBS_PER_PAGE = 100  # the overview's jobs table (what is failing lists every job)
NODES_PER_PAGE = 200
# The page shows the end of a long log; the whole of it is one link away (log.txt).
LOG_PAGE_CHARS = 200_000


def find_job(principal: Principal, job_id: str, jobs: JobService) -> Job:
    """A job by its id alone (the UI's job addresses name no project). A job of a project
    the session's token is not scoped to is a 404, word for word another org's job."""
    job = jobs.find(principal, job_id)
    if not sees_project(principal, job.project_id):
        raise NotFound(f"No job with id {job_id!r} in your organization.")
    return job


def _sorted_json(value: Any) -> str:
    """A configuration as indented JSON with sorted keys (what the diff compares)."""
    return json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=True, ensure_ascii=False)


# --- overview -----------------------------------------------------------------------------


@dataclass
class JobRow:
    project: Project
    job: Job
    status: JobStatus
    spark: Spark


@dataclass
class FailingJob:
    project: Project
    job: Job
    run: Run  # the last run that ended, which failed
    running: bool  # a run has started since
    queued: bool = False  # a run waits in the job's queue (docs/queues.md)


@dataclass
class Overview:
    projects: list[Project]
    failing: list[FailingJob]
    rows: list[JobRow]  # this page's jobs
    total: int
    page: int
    pages: int

    @property
    def queued(self) -> int:
        """Runs waiting in the queues of this page's jobs."""
        return sum(row.status.queued_runs for row in self.rows)


def _last_ended(
    principal: Principal, project: Project, job: Job, runs: RunService
) -> FailingJob | None:
    """The job if the last run of it that ended failed (a run under way since has not fixed
    anything yet)."""
    recent = runs.list_runs(
        principal, project_id=project.id, job_id=job.id, limit=10, results=False
    ).runs
    ended = next((r for r in recent if r.is_terminal), None)
    if ended is None or ended.status not in FAILING:
        return None
    since = recent[: recent.index(ended)]
    running = any(r.status in ACTIVE_STATUSES for r in since)
    queued = any(r.status == "queued" for r in since)
    return FailingJob(project=project, job=job, run=ended, running=running, queued=queued)


def overview(
    principal: Principal,
    projects: ProjectService,
    jobs: JobService,
    runs: RunService,
    page: int = 1,
) -> Overview:
    """What is failing (every job), then a page of jobs with their statistics."""
    found = projects.list_projects(principal)
    every = [(p, j) for p in found for j in jobs.list_jobs(principal, p.id)]
    failing = [f for p, j in every if (f := _last_ended(principal, p, j, runs)) is not None]
    pages = max(1, -(-len(every) // JOBS_PER_PAGE))
    page = min(max(1, page), pages)
    since = utcnow() - WEEK
    rows = []
    for project, job in every[(page - 1) * JOBS_PER_PAGE : page * JOBS_PER_PAGE]:
        week = runs.list_runs(
            principal,
            project_id=project.id,
            job_id=job.id,
            since=since,
            limit=SPARK_RUNS,
            results=False,
        ).runs
        rows.append(
            JobRow(
                project=project,
                job=job,
                status=runs.status(principal, project.id, job.id, WEEK, "7d"),
                spark=sparkline(week),
            )
        )
    return Overview(
        projects=found, failing=failing, rows=rows, total=len(every), page=page, pages=pages
    )


# --- job ------------------------------------------------------------------------------


@dataclass
class JobPage:
    project: Project
    job: Job
    config: str
    status: JobStatus
    runs: list[Run]
    history: Chart
    versions: list[JobVersion]
    slowest: list[ModelStats] = field(default_factory=list)
    most_failing: list[ModelStats] = field(default_factory=list)
    deployable: bool = False
    environment: EnvironmentFacts | None = None
    # A job of steps: (name, command, run_on_failure) of each, in order.
    steps: list[StepFacts] = field(default_factory=list)


@dataclass(frozen=True)
class EnvironmentFacts:
    """What a page shows of an environment: never its variables or secrets."""

    name: str
    target: str | None
    gateway: str | None


@dataclass(frozen=True)
class StepFacts:
    name: str
    command: str
    run_on_failure: bool


def _environment_facts(env: RunEnvironment | None) -> EnvironmentFacts | None:
    return None if env is None else EnvironmentFacts(env.name, env.target, env.gateway)


def _job_environment(
    principal: Principal, job: Job, environments: EnvironmentService
) -> EnvironmentFacts | None:
    """The job's environment (None in the job: the project's default one)."""
    for env in environments.list_environments(principal, job.project_id):
        if env.id == job.environment_id or (job.environment_id is None and env.is_default):
            return EnvironmentFacts(env.name, env.target, env.gateway)
    return None  # removed behind runyard's back: its runs are refused (docs/environments.md)


def job_page(
    principal: Principal,
    job_id: str,
    jobs: JobService,
    runs: RunService,
    environments: EnvironmentService,
) -> JobPage:
    job = find_job(principal, job_id, jobs)
    project = jobs.project(principal, job.project_id)
    status = runs.status(principal, project.id, job.id, WEEK, "7d")
    recent = runs.list_runs(
        principal, project_id=project.id, job_id=job.id, limit=HISTORY_RUNS, results=False
    ).runs
    report = runs.models(principal, project.id, job.id, timedelta(days=30), "30d", ["model"])
    slowest = report.models[:10]
    failing = sorted(
        (m for m in report.models if m.failures), key=lambda m: (-m.failures, m.unique_id)
    )[:10]
    # Deploying writes the project's schedules (CronJobs on Kubernetes): it applies to a
    # scheduled job whose project is not deployed, or whose schedule is not in sync yet.
    deployable = bool(job.schedule) and (not project.deployed or job.sync_state == "pending")
    return JobPage(
        project=project,
        job=job,
        config=_sorted_json(redact_job_config(config_of(job))),
        status=status,
        runs=recent,
        history=run_history(recent),
        versions=jobs.versions(principal, project.id, job.id),
        slowest=slowest,
        most_failing=failing,
        deployable=deployable,
        environment=_job_environment(principal, job, environments),
        steps=[StepFacts(step_name(s), s.command, s.run_on_failure) for s in job.steps],
    )


@dataclass
class DiffLine:
    kind: str  # add, del, hunk or same
    text: str


@dataclass
class DiffPage:
    job: Job
    project: Project
    versions: list[JobVersion]
    old: JobVersion
    new: JobVersion
    lines: list[DiffLine]


def diff_page(principal: Principal, job_id: str, old: int, new: int, jobs: JobService) -> DiffPage:
    job = find_job(principal, job_id, jobs)
    project = jobs.project(principal, job.project_id)
    versions = jobs.versions(principal, project.id, job.id)
    by_number = {v.version: v for v in versions}
    missing = [n for n in (old, new) if n not in by_number]
    if missing:
        raise NotFound(
            f"Job {job.name!r} has no version {missing[0]}; its versions are "
            + ", ".join(str(v.version) for v in sorted(versions, key=lambda v: v.version))
            + "."
        )
    before = _sorted_json(by_number[old].config).splitlines()
    after = _sorted_json(by_number[new].config).splitlines()
    lines = []
    for line in difflib.unified_diff(
        before, after, f"version {old}", f"version {new}", lineterm=""
    ):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        lines.append(DiffLine(kind=kind, text=line))
    return DiffPage(
        job=job,
        project=project,
        versions=versions,
        old=by_number[old],
        new=by_number[new],
        lines=lines,
    )


# --- run ------------------------------------------------------------------------------


@dataclass
class NotificationRow:
    notification: Notification
    history: list[Attempt]


@dataclass
class RunPage:
    run: Run
    job: Job | None
    project: Project | None
    config: str
    timeline: Timeline
    failed: list[TimelineNode]
    nodes: list[TimelineNode]
    node_page: int
    node_pages: int
    gantt: Gantt | None
    notifications: list[NotificationRow]
    log: str
    log_length: int
    log_clipped: bool
    log_search: str
    # Why retry from failure does not apply (None: it does); asked only of failed runs.
    retry_refusal: str | None
    environment: EnvironmentFacts | None = None
    # A run of steps (docs/steps.md): the step that failed it, and the step each failed
    # node came from, by unique id.
    failed_step: FailedStep | None = None
    node_steps: dict[str, int] = field(default_factory=dict)
    # The step whose part of the log is shown (None: the whole log).
    log_step: RunStep | None = None

    @property
    def active(self) -> bool:
        """Not ended (queued, pending or running): it may be cancelled and the page
        follows it."""
        return self.run.status in OPEN_STATUSES

    def step_label(self, index: int) -> str:
        """``step 2 of 3 (dbt build)`` for a step's index."""
        steps = self.run.steps
        name = f" ({steps[index].name})" if 0 <= index < len(steps) else ""
        return f"step {index + 1} of {len(steps)}{name}"


def _node_order(node: TimelineNode) -> tuple[int, float, str]:
    failed = 0 if node.status in FAILED_STATUSES else 1
    return (failed, -(node.duration_seconds or 0.0), node.unique_id)


def run_page(
    principal: Principal,
    run_id: str,
    runs: RunService,
    jobs: JobService,
    notifications: NotificationOutbox,
    node_page: int,
    search: str,
    step: int | None = None,
) -> RunPage:
    # One read of the run and its snapshot: a 2,000-node run's results take milliseconds to
    # decode, so the page does not ask for them again and again.
    record = runs.record_of(principal, run_id)
    # The page gets the run without its snapshot (which holds secret values).
    run = Run(**{name: getattr(record, name) for name in Run.__struct_fields__})
    try:
        job: Job | None = find_job(principal, run.job_id, jobs)
    except NotFound:
        job = None  # deleted since; the run and its snapshot remain
    try:
        project: Project | None = jobs.project(principal, run.project_id)
    except NotFound:
        project = None
    timeline = runs.history.timeline(record)
    failed_ids = set(timeline.failed)
    failed = [n for n in timeline.nodes if n.unique_id in failed_ids]
    node_steps: dict[str, int] = {}
    if run.steps:
        # The first failed result of each failed node names its step (a node a later
        # step ran again keeps the step that failed it).
        for result in record.results:
            failed_here = result.status in FAILED_STATUSES and result.unique_id in failed_ids
            if failed_here and result.step is not None:
                node_steps.setdefault(result.unique_id, result.step)
    ordered = sorted(timeline.nodes, key=_node_order)
    pages = max(1, -(-len(ordered) // NODES_PER_PAGE))
    node_page = min(max(1, node_page), pages)
    start = (node_page - 1) * NODES_PER_PAGE
    found, history = notifications.for_run(run.id)
    # One step's part of the log (the service refuses a step the run does not have).
    text = runs.logs(principal, run_id, search=search or None, step=step)
    refusal = None
    # A run of steps is retried from the step that failed it, whatever its artifacts say
    # (docs/steps.md); the service's refusal reasons are dbt retry's, which it does not use.
    if run.is_terminal and run.status != "success" and not record.snapshot.steps:
        refusal = runs.retry_refusal(principal, run_id)
    clipped = len(text) > LOG_PAGE_CHARS
    return RunPage(
        run=run,
        job=job,
        project=project,
        config=_sorted_json(redact_job_config(record.snapshot.job)),
        timeline=timeline,
        failed=failed,
        nodes=ordered[start : start + NODES_PER_PAGE],
        node_page=node_page,
        node_pages=pages,
        gantt=gantt(timeline.nodes),
        notifications=[NotificationRow(n, history.get(n.id, [])) for n in found],
        log=text[-LOG_PAGE_CHARS:] if clipped else text,
        log_length=len(text),
        log_clipped=clipped,
        log_search=search,
        retry_refusal=refusal,
        environment=_environment_facts(record.snapshot.environment),
        failed_step=failed_step(run.steps),
        node_steps=node_steps,
        log_step=run.steps[step] if step is not None else None,
    )


@dataclass
class LogTail:
    text: str
    next: int
    reset: bool
    active: bool
    status: str
    label: str  # the status as the page writes it ("queued, 2nd in line")


def log_tail(principal: Principal, run_id: str, after: int, runs: RunService) -> LogTail:
    """The log from character ``after`` on, for a page following a live run. A log that
    shrank (the middle of a capped log is dropped) starts again from its end."""
    run = runs.get(principal, run_id)
    text = runs.logs(principal, run_id)
    reset = after > len(text)
    chunk = text[-LOG_PAGE_CHARS:] if reset else text[after:]
    return LogTail(
        text=chunk,
        next=len(text),
        reset=reset,
        # A queued run's page follows it too: it starts by itself (docs/queues.md).
        active=run.status in OPEN_STATUSES,
        status=run.status,
        label=run_status(run.status, run.queue_position),
    )
