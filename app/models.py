"""The domain: projects, jobs and runs, as msgspec Structs shared by every layer.

Three views of a job (and of a project) are layered by inheritance so no field list is
written twice:

* ``JobConfig``: what a user configures; also what a run snapshots and a version keeps.
* ``JobOut``: what the API returns (config plus identity and bookkeeping, never secrets).
* ``Job``: the stored record, with the owning org and the write-only webhook secret.

A PUT body (``JobPatch``, ``ProjectPatch``) is derived from the create body by ``patch_of``:
every field optional, so a field added to the configuration is updatable with no other edit.

Secrets. ``webhook_headers`` and ``secret_environment`` hold real values in memory (the
executors and the notifier need them) and are write-only everywhere else: the store keeps
them sealed (app/secrets.py) and every document it writes in the clear (job configuration,
versions, run snapshots) has each value replaced by ``REDACTED``, as every response does.
Writing ``REDACTED`` back as a value keeps the stored one, so a client may send back what
it read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

import msgspec

from app.errors import FieldError

ProjectKind = Literal["dbt", "sqlmesh"]
ConcurrencyPolicy = Literal["Forbid", "Allow", "Replace", "Queue"]
Role = Literal["admin", "viewer"]
RunStatus = Literal[
    "queued", "pending", "running", "success", "failed", "timed_out", "cancelled", "lost"
]
TriggeredBy = Literal["manual", "scheduled", "rerun", "dependency", "retry"]
DependencyCondition = Literal["success", "failure", "any"]
WebhookEvent = Literal["started", "success", "failure", "cancelled", "missed", "overdue"]
SyncState = Literal["in_sync", "pending", "not_deployed"]
StepStatus = Literal["pending", "running", "success", "failed", "skipped", "cancelled", "timed_out"]

# The values of the types above, for checks and messages that list them.
PROJECT_KINDS: tuple[str, ...] = get_args(ProjectKind)
CONCURRENCY_POLICIES: tuple[str, ...] = get_args(ConcurrencyPolicy)
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)

TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"success", "failed", "timed_out", "cancelled", "lost"}
)
# Active: handed to an executor (a process or a pod exists or is being made).
ACTIVE_STATUSES: frozenset[str] = frozenset({"pending", "running"})
# Open: not ended. A queued run waits in the runs table for the queue dispatcher
# (app/services/queue.py); it blocks a Forbid job's next run and is cancelled by Replace
# like an active one, but no executor knows of it (docs/queues.md).
OPEN_STATUSES: frozenset[str] = ACTIVE_STATUSES | {"queued"}
# The silence alerts (app/services/silence.py): not run statuses, events of a job.
ALERT_EVENTS: frozenset[str] = frozenset({"missed", "overdue"})
# How a stored secret value reads back: names stay visible, values never.
REDACTED = "********"
# The write-only maps of a job's and of a project's configuration (see "Secrets" above).
JOB_SECRET_MAPS = ("webhook_headers", "secret_environment")
PROJECT_SECRET_MAPS = ("secret_environment",)

# Headers runyard sets itself on a webhook request (and hop-by-hop ones): a job's
# webhook_headers may not name them, nor any X-Runyard-* header.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection"}
)
RESERVED_HEADER_PREFIX = "x-runyard-"


def reserved_header(name: str) -> bool:
    """Whether a job's webhook_headers may not set this header (any case)."""
    lowered = name.lower()
    return lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIX)


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the token's org and role, and its scope (docs/tokens.md)."""

    org_id: str
    org_slug: str
    role: Role
    token_id: str
    token_name: str = ""
    # A project-scoped token sees only this project (others answer 404 like another org).
    project_id: str | None = None
    # The actions the token may take (app/services/tokens.py ACTIONS); None: all its role
    # allows.
    actions: frozenset[str] | None = None
    expires_at: datetime | None = None

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


class Organization(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    slug: str
    created_at: datetime
    # Runs of the org running at once, beyond which runs queue (docs/queues.md); None:
    # the server's RUNYARD_LOCAL_MAX_RUNS_PER_ORG.
    max_concurrent_runs: int | None = None


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    org_slug: str
    role: Role
    name: str
    prefix: str  # the first characters of the token, to recognise it in a list
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    scope_project_id: str | None = None
    scope_project_name: str | None = None
    scope_actions: list[str] | None = None  # None: every action the role allows


# --- projects ---------------------------------------------------------------------------


class ProjectConfig(msgspec.Struct, kw_only=True):
    name: str
    kind: ProjectKind
    description: str = ""
    image: str | None = None
    path: str | None = None
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    # Write-only variables (passwords, tokens): read back as REDACTED, sealed at rest,
    # masked in run logs.
    secret_environment: dict[str, str] = msgspec.field(default_factory=dict)
    resources: dict[str, Any] = msgspec.field(default_factory=dict)
    service_account: str | None = None
    template_overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    slack_channel: str | None = None
    # Repository prefixes a trigger's ``image`` may come from (Kubernetes), e.g.
    # "ghcr.io/acme/analytics": matched on path boundaries (services/projects.py).
    allowed_images: list[str] = msgspec.field(default_factory=list)


class ProjectOut(ProjectConfig, kw_only=True):
    id: str
    deployed: bool = False
    slack_webhook_url_set: bool = False
    created_at: datetime
    updated_at: datetime


class Project(ProjectOut, kw_only=True):
    org_id: str
    org_slug: str
    slack_webhook_url: str | None = None


# --- environments -----------------------------------------------------------------------


class SecretKeyRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One key of an existing Kubernetes Secret (rendered as ``valueFrom.secretKeyRef``)."""

    secret: str
    key: str


class EnvironmentConfig(msgspec.Struct, kw_only=True):
    """Where and how a project's jobs run: dev, staging, prod (docs/environments.md).
    Every field left unset (None, empty) takes the project's value."""

    name: str
    description: str = ""
    # dbt: --target; SQLMesh: the environment argument of plan/run.
    target: str | None = None
    # SQLMesh: --gateway.
    gateway: str | None = None
    image: str | None = None
    path: str | None = None
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    # Write-only, sealed at rest, masked in run logs, like a project's.
    secret_environment: dict[str, str] = msgspec.field(default_factory=dict)
    # Kubernetes: variables from keys of existing Secrets, and whole Secrets (envFrom).
    # Only the references are stored: runyard never reads a Secret.
    secret_env: dict[str, SecretKeyRef] = msgspec.field(default_factory=dict)
    secret_env_from: list[str] = msgspec.field(default_factory=list)


class EnvironmentOut(EnvironmentConfig, kw_only=True):
    id: str
    project_id: str
    is_default: bool = False
    created_at: datetime
    updated_at: datetime


class Environment(EnvironmentOut, kw_only=True):
    org_id: str


class RunEnvironment(msgspec.Struct, kw_only=True):
    """The environment a run ran with, as its snapshot keeps it (secret values sealed)."""

    id: str
    name: str
    target: str | None = None
    gateway: str | None = None
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    secret_environment: dict[str, str] = msgspec.field(default_factory=dict)
    secret_env: dict[str, SecretKeyRef] = msgspec.field(default_factory=dict)
    secret_env_from: list[str] = msgspec.field(default_factory=list)


ENVIRONMENT_SECRET_MAPS = ("secret_environment",)


# --- jobs -------------------------------------------------------------------------------


class Dependency(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    on: DependencyCondition = "success"


class Step(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One command of a job that runs several in order (docs/steps.md). ``name`` defaults
    to the command's first words (``dbt build``); ``run_on_failure``: runs even when an
    earlier step failed (``dbt docs generate`` after a failed build)."""

    command: str
    name: str | None = None
    run_on_failure: bool = False


MAX_STEPS = 20


class JobConfig(msgspec.Struct, kw_only=True):
    name: str
    # Exactly one of ``command`` and ``steps`` (JobService._check): a job of steps has
    # command "" (its runs record a joined summary of the steps as their command).
    command: str = ""
    schedule: str | None = None
    description: str = ""
    timezone: str = "UTC"
    enabled: bool = True
    resources: dict[str, Any] = msgspec.field(default_factory=dict)
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    secret_environment: dict[str, str] = msgspec.field(default_factory=dict)
    slack_channel: str | None = None
    slack_alerts_enabled: bool = False
    slack_alert_on_success: bool = False
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = msgspec.field(default_factory=dict)
    webhook_events: list[WebhookEvent] = msgspec.field(
        default_factory=lambda: ["success", "failure"]
    )
    webhook_enabled: bool = False
    timeout_seconds: int = 1800
    retries: int = 0
    ttl_seconds_after_finished: int = 21600
    concurrency_policy: ConcurrencyPolicy = "Forbid"
    depends_on: list[Dependency] = msgspec.field(default_factory=list)
    # A dbt job of the same project whose latest successful manifest.json this job's runs
    # get as ``--defer --state <folder>`` (slim CI: ``--select state:modified+``).
    defer_to_job_id: str | None = None
    # The project environment the job runs in (target, image or path, variables,
    # credentials); None: the project's default environment (docs/environments.md).
    environment_id: str | None = None
    # Whether a trigger may run the job once in another environment of its project.
    allow_environment_override: bool = False
    # Silence alerts (docs/notifications.md), in minutes; None: off. Setting one is the
    # opt-in to its event (missed, overdue) on the job's Slack alerts and webhook.
    alert_if_not_started_within: int | None = None
    alert_if_running_longer_than: int | None = None
    # An ordered list of commands run as one run (docs/steps.md); empty: ``command``.
    steps: list[Step] = msgspec.field(default_factory=list)


class JobOut(JobConfig, kw_only=True):
    id: str
    project_id: str
    version: int
    webhook_secret_set: bool = False
    sync_state: SyncState = "not_deployed"
    sync_error: str | None = None
    created_at: datetime
    updated_at: datetime


class Job(JobOut, kw_only=True):
    org_id: str
    webhook_secret: str | None = None


class JobVersion(msgspec.Struct, kw_only=True):
    version: int
    config: JobConfig  # secret values REDACTED
    # The secrets this version set, changed or removed, by name: "webhook_secret",
    # "webhook_headers.<name>", "secret_environment.<name>" (never their values).
    secrets_changed: list[str] = msgspec.field(default_factory=list)
    created_at: datetime


# --- runs -------------------------------------------------------------------------------


class NodeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One dbt node, SQLMesh model or SQLMesh audit that ran (or was skipped), as the engine
    parsers (app/engines/results.py) read it and a run keeps it.

    dbt: ``unique_id`` is dbt's (``model.dbt_demo.broken_orders``; from text output, where
    the package is not printed, ``model.broken_orders``), ``name`` the node name,
    ``resource_type`` dbt's (model, test, seed, snapshot, unit_test, source, ...), ``status``
    dbt's (success, error, fail, warn, skipped, pass, no-op, ...).

    SQLMesh: a model is ``unique_id='"demo"."shop"."daily_orders"'`` (the fully qualified
    name SQLMesh prints), ``name='shop.daily_orders'`` (as written in the project),
    ``resource_type='model'``, ``status='error'``. An audit is
    ``unique_id='audit:assert_positive_revenue on shop.daily_revenue'``,
    ``name='shop.daily_revenue'`` (the audited model), ``resource_type='audit'``,
    ``status='failed'``; ``describe`` in app/engines/results.py names both.
    """

    unique_id: str
    name: str
    resource_type: str
    status: str
    execution_time: float | None = None
    message: str | None = None
    # The index of the step (of a job of steps) that reported the node; None otherwise.
    step: int | None = None


# The dbt commands whose runs may be retried (what dbt retry repeats, less run-operation,
# whose macro the command policy allowlists, and clone and docs generate).
RETRYABLE_DBT_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot", "compile"})
# The dbt commands whose node results a step of a run reports and whose run_results.json
# the run keeps (docs/steps.md): those that run nodes. (docs generate and compile list
# every node they compiled as a success, which would hide a build's failure.)
NODE_RESULT_COMMANDS = frozenset(
    {"build", "run", "test", "seed", "snapshot", "retry", "clone", "source freshness"}
)


class RunState(msgspec.Struct, frozen=True, kw_only=True):
    """Artifacts of earlier runs a dbt run starts with, placed by the executor in a state
    folder of the run's own and passed as ``--state <folder>``."""

    # ``dbt retry``: this run's run_results.json (and manifest.json) is what to retry.
    retry_run_id: str | None = None
    # ``--defer``: this run's manifest.json (the deferred-to job's latest success).
    defer_run_id: str | None = None
    defer_job_id: str | None = None


class StepPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A step as a run runs it: its name, validated argument list and dbt/SQLMesh
    subcommand (which steps' node results and artifacts a run keeps, docs/steps.md)."""

    name: str
    command: str
    argv: list[str]
    subcommand: str
    run_on_failure: bool = False


class RunStep(msgspec.Struct, kw_only=True):
    """What one step of a run did (``Run.steps``)."""

    index: int
    name: str
    command: str
    run_on_failure: bool = False
    status: StepStatus = "pending"
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    # Where the step's output starts in the run's stored log (a chunk number), so that
    # ``GET /api/v1/runs/{id}/logs?step=N`` reads only its part; None: not known.
    log_seq: int | None = None


class FailedStep(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    name: str
    status: StepStatus
    exit_code: int | None = None


def failed_step(steps: Collection[RunStep]) -> FailedStep | None:
    """The step that failed the run: the first one that failed, timed out or was
    cancelled (a step that ran on failure after it does not count as the cause)."""
    for step in steps:
        if step.status in ("failed", "timed_out", "cancelled"):
            return FailedStep(
                index=step.index, name=step.name, status=step.status, exit_code=step.exit_code
            )
    return None


def step_name(step: Step, argv: Collection[str] = ()) -> str:
    """A step's name: its own, else its command's program and subcommand words."""
    if step.name:
        return step.name
    words = [w for w in (list(argv) or step.command.split()) if not w.startswith("-")]
    return " ".join(words[:3] if words[1:2] in (["docs"], ["source"]) else words[:2])


def steps_summary(steps: Collection[StepPlan]) -> str:
    """The command text a run of steps records: its steps' commands, in order."""
    return "; ".join(step.command for step in steps)


class RunSnapshot(msgspec.Struct, kw_only=True):
    """Everything a run needs, frozen when the run is created; later edits never change it."""

    project_name: str
    project_kind: ProjectKind
    image: str | None
    path: str | None
    service_account: str | None
    template_overrides: dict[str, Any]
    project_environment: dict[str, str]
    project_resources: dict[str, Any]
    job: JobConfig
    job_version: int
    argv: list[str]
    project_secret_environment: dict[str, str] = msgspec.field(default_factory=dict)
    # A trigger's image (Kubernetes), checked against the project's allowed_images; None:
    # the project's image.
    image_override: str | None = None
    state: RunState | None = None
    # The project environment the run ran with (its image and path are already in
    # ``image`` and ``path``); None: a run recorded before environments existed.
    environment: RunEnvironment | None = None
    # A run of steps (docs/steps.md): what it runs, in order; ``argv`` is the first's.
    steps: list[StepPlan] = msgspec.field(default_factory=list)


class Run(msgspec.Struct, kw_only=True):
    id: str
    project_id: str
    job_id: str
    job_name: str | None
    cronjob_name: str | None
    namespace: str | None
    job_type: str
    status: RunStatus
    start_time: datetime | None
    end_time: datetime | None
    duration_seconds: float | None
    triggered_by: TriggeredBy
    command: str
    exit_code: int | None = None
    error: str | None = None
    job_version: int
    rerun_of: str | None = None
    upstream_run_id: str | None = None
    retry_of: str | None = None
    executor: str
    scheduled_for: datetime | None = None
    results: list[NodeSummary] = msgspec.field(default_factory=list)
    # A run of steps: each step's record, in order (docs/steps.md); empty otherwise.
    steps: list[RunStep] = msgspec.field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    # A queued run's place in its job's queue (1: next); None for any other status.
    # Computed when read (app/store/runs.py), never stored.
    queue_position: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_success(self) -> bool:
        return self.status == "success"

    @property
    def is_failed(self) -> bool:
        return self.is_terminal and self.status != "success"


class RunRecord(Run, kw_only=True):
    """The stored run, with the fields the API does not show directly."""

    org_id: str
    snapshot: RunSnapshot
    idempotency_key: str | None = None
    request_hash: str | None = None


class RunOut(Run, kw_only=True):
    """The API's run: the record plus the derived helper booleans."""

    is_terminal: bool
    is_success: bool
    is_failed: bool
    # A run of steps that failed: the step that failed it (``failed_step(steps)``).
    failed_step: FailedStep | None = None


# --- PUT bodies -------------------------------------------------------------------------


class Patch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of the PUT bodies made by ``patch_of``: only the supplied fields change."""

    if TYPE_CHECKING:
        # The fields are made at run time; statically a patch takes any of them by name.
        def __init__(self, **changes: Any) -> None: ...

    def changes(self) -> dict[str, Any]:
        """The supplied fields, by name."""
        return {
            name: value
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not msgspec.UNSET
        }


def patch_of(
    name: str, body: type[msgspec.Struct], write_only_maps: Collection[str] = ()
) -> type[Patch]:
    """The PUT body of a create body: each of its fields, of the same type, optional (UNSET
    when not supplied). A write-only map takes ``null`` for an entry too (it removes it; see
    ``merge_secrets``). Use it as ``X = patch_of(...)`` under ``if not TYPE_CHECKING``, with
    ``X = Patch`` for the type checker."""
    fields = [
        (
            field.name,
            (dict[str, str | None] if field.name in write_only_maps else field.type)
            | msgspec.UnsetType,
            msgspec.UNSET,
        )
        for field in msgspec.structs.fields(body)
    ]
    made = msgspec.defstruct(
        name,
        fields,
        bases=(Patch,),
        module=body.__module__,
        kw_only=True,
        forbid_unknown_fields=True,
    )
    assert issubclass(made, Patch)
    return made


# --- secrets ----------------------------------------------------------------------------


def redacted(values: Mapping[str, str]) -> dict[str, str]:
    return dict.fromkeys(values, REDACTED)


def redact_job_config(config: JobConfig) -> JobConfig:
    """The configuration as anyone may read it (type JobConfig, whatever was passed)."""
    fields = {name: getattr(config, name) for name in JobConfig.__struct_fields__}
    for name in JOB_SECRET_MAPS:
        fields[name] = redacted(fields[name])
    return JobConfig(**fields)


def merge_secrets(
    field: str, current: Mapping[str, str], patch: Mapping[str, str | None]
) -> tuple[dict[str, str], list[FieldError]]:
    """A PUT of a write-only map: a supplied value sets its entry, ``null`` removes it,
    ``REDACTED`` (what a read shows) keeps it, and entries not mentioned stay."""
    merged = dict(current)
    errors: list[FieldError] = []
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        elif value == REDACTED:
            if name not in current:
                errors.append(FieldError(f"{field}.{name[:40]}", _REDACTED_NEW))
        else:
            merged[name] = value
    return merged, errors


def check_no_redacted(field: str, values: Mapping[str, str]) -> list[FieldError]:
    """On create there is nothing to keep: REDACTED as a value is a mistake."""
    return [
        FieldError(f"{field}.{name[:40]}", _REDACTED_NEW)
        for name, value in values.items()
        if value == REDACTED
    ]


_REDACTED_NEW = (
    f"{REDACTED!r} is how runyard shows a stored secret and keeps the stored value, but "
    "there is none under this name: send the real value"
)


def secret_changes(
    old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Names ("<group>.<name>") of the secrets that differ between two states, each state
    a mapping of group (webhook_headers, secret_environment, ...) to name -> value."""
    changed: list[str] = []
    for group in sorted(set(old) | set(new)):
        before, after = old.get(group, {}), new.get(group, {})
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                changed.append(f"{group}.{name}" if name else group)
    return changed
