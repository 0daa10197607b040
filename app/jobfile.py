"""The jobs-as-code file (``runyard.yaml``) that ``runyard apply`` reads: the projects and jobs
of one organization, as they should be.

Defined once here, as msgspec Structs, for the CLI (which decodes the file) and the API (which
serves the file's JSON Schema at ``/api/v1/schemas/runyard.yaml`` for editors). Nothing here
imports the web framework.

Secrets never live in the file: each secret value is a reference to an environment variable of
the machine running ``runyard apply`` (``{from_env: WAREHOUSE_PASSWORD}``); a literal secret is
refused. A field left out takes the server's default, so the file describes the whole job.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

import msgspec
import yaml

from app.models import ConcurrencyPolicy, DependencyCondition, ProjectKind, Step, WebhookEvent

SCHEMA_PATH = "/api/v1/schemas/runyard.yaml"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# The fields that hold secrets: maps whose values are secrets, and single secret values.
PROJECT_SECRET_MAPS = ("secret_environment",)
PROJECT_SECRET_VALUES = ("slack_webhook_url",)
JOB_SECRET_MAPS = ("secret_environment", "webhook_headers")
JOB_SECRET_VALUES = ("webhook_secret",)
ENVIRONMENT_SECRET_MAPS = ("secret_environment",)


class FromEnv(msgspec.Struct, forbid_unknown_fields=True):
    """A secret read from an environment variable when ``runyard apply`` runs."""

    from_env: Annotated[
        str,
        msgspec.Meta(pattern=ENV_NAME, description="the environment variable holding the value"),
    ]


class DependsOn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    job: Annotated[str, msgspec.Meta(description="a job of the same project, by name")]
    on: DependencyCondition = "success"


class JobSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    command: Annotated[
        str, msgspec.Meta(description="a dbt or SQLMesh command; leave out when giving steps")
    ] = ""
    steps: Annotated[
        list[Step],
        msgspec.Meta(
            description="commands run in order as one run, instead of command: each "
            "{command, name, run_on_failure} (docs/steps.md)"
        ),
    ] = msgspec.field(default_factory=list)
    schedule: Annotated[
        str | None, msgspec.Meta(description="cron expression; null: trigger-only")
    ] = None
    description: str = ""
    timezone: str = "UTC"
    enabled: bool = True
    resources: dict[str, Any] = msgspec.field(default_factory=dict)
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    secret_environment: dict[str, FromEnv] = msgspec.field(default_factory=dict)
    slack_channel: str | None = None
    slack_alerts_enabled: bool = False
    slack_alert_on_success: bool = False
    webhook_url: str | None = None
    webhook_headers: dict[str, FromEnv] = msgspec.field(default_factory=dict)
    webhook_events: list[WebhookEvent] = msgspec.field(
        default_factory=lambda: ["success", "failure"]
    )
    webhook_enabled: bool = False
    webhook_secret: FromEnv | None = None
    timeout_seconds: int = 1800
    retries: int = 0
    ttl_seconds_after_finished: int = 21600
    concurrency_policy: ConcurrencyPolicy = "Forbid"
    depends_on: list[DependsOn] = msgspec.field(default_factory=list)
    defer_to: Annotated[
        str | None,
        msgspec.Meta(
            description="a dbt job of the same project, by name: runs defer to its latest "
            "successful manifest (--defer --state), for slim CI with state:modified+"
        ),
    ] = None
    environment_name: Annotated[
        str | None,
        msgspec.Meta(
            description="the project environment the job runs in, by name (docs/"
            "environments.md); null: the project's default environment"
        ),
    ] = None
    allow_environment_override: Annotated[
        bool, msgspec.Meta(description="whether a trigger may run it once in another")
    ] = False


class SecretRefSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A key of an existing Kubernetes Secret."""

    secret: str
    key: str


class EnvironmentSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A project environment (docs/environments.md); fields left out are the project's."""

    name: str
    description: str = ""
    target: Annotated[
        str | None, msgspec.Meta(description="dbt --target / SQLMesh environment")
    ] = None
    gateway: Annotated[str | None, msgspec.Meta(description="SQLMesh --gateway")] = None
    image: Annotated[str | None, msgspec.Meta(description="container image (Kubernetes)")] = None
    path: Annotated[
        str | None, msgspec.Meta(description="the project's directory (local executor)")
    ] = None
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    secret_environment: dict[str, FromEnv] = msgspec.field(default_factory=dict)
    secret_env: Annotated[
        dict[str, SecretRefSpec],
        msgspec.Meta(description="Kubernetes: variables from keys of existing Secrets"),
    ] = msgspec.field(default_factory=dict)
    secret_env_from: Annotated[
        list[str], msgspec.Meta(description="Kubernetes: existing Secrets, every key a variable")
    ] = msgspec.field(default_factory=list)


class ProjectSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    kind: ProjectKind
    description: str = ""
    image: Annotated[str | None, msgspec.Meta(description="container image (Kubernetes)")] = None
    path: Annotated[
        str | None, msgspec.Meta(description="the project's directory (local executor)")
    ] = None
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    secret_environment: dict[str, FromEnv] = msgspec.field(default_factory=dict)
    resources: dict[str, Any] = msgspec.field(default_factory=dict)
    service_account: str | None = None
    template_overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    allowed_images: Annotated[
        list[str],
        msgspec.Meta(description="repository prefixes a trigger's image may come from"),
    ] = msgspec.field(default_factory=list)
    slack_channel: str | None = None
    slack_webhook_url: FromEnv | None = None
    deployed: Annotated[
        bool | None,
        msgspec.Meta(description="deploy (true) or undeploy (false); leave out to keep as is"),
    ] = None
    environments: list[EnvironmentSpec] = msgspec.field(default_factory=list)
    jobs: list[JobSpec] = msgspec.field(default_factory=list)


class JobFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A runyard.yaml: projects and their jobs, created or updated by ``runyard apply``."""

    version: Literal[1] = 1
    projects: list[ProjectSpec] = msgspec.field(default_factory=list)


class JobFileError(Exception):
    """What is wrong with a file, one message per problem, each naming where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def schema() -> dict[str, Any]:
    """The file's JSON Schema, for editors (yaml-language-server) and the API."""
    document: dict[str, Any] = msgspec.json.schema(JobFile)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "runyard.yaml"
    return document


def load(text: str) -> JobFile:
    """Decode a runyard.yaml; literal secrets, duplicate names and type errors are refused."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JobFileError([f"not valid YAML: {exc}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise JobFileError(["the file must be a mapping with a 'projects' list"])
    literal = _literal_secrets(raw)
    if literal:
        raise JobFileError(literal)
    try:
        found = msgspec.convert(raw, JobFile)
    except msgspec.ValidationError as exc:
        raise JobFileError([_with_choices(str(exc))]) from None
    problems = _duplicates(found)
    if problems:
        raise JobFileError(problems)
    return found


# msgspec names a bad enum value and where it is, not what is allowed: add that.
_CHOICES: dict[str, tuple[Any, ...]] = {
    "kind": get_args(ProjectKind),
    "concurrency_policy": get_args(ConcurrencyPolicy),
    "webhook_events": get_args(WebhookEvent),
    "on": get_args(DependencyCondition),
    "version": (1,),
}
_ENUM_AT = re.compile(r"^Invalid enum value .* - at `\$(?:\.\w+|\[\d+\])*\.(\w+)(?:\[\d+\])?`$")


def _with_choices(message: str) -> str:
    found = _ENUM_AT.match(message)
    if found and found.group(1) in _CHOICES:
        allowed = ", ".join(str(c) for c in _CHOICES[found.group(1)])
        return f"{message}; use one of: {allowed}"
    return message


def resolve(ref: FromEnv, where: str, environ: dict[str, str]) -> str:
    """The value of a reference, or a JobFileError naming the unset variable."""
    if ref.from_env not in environ:
        raise JobFileError(
            [f"{where}: the environment variable {ref.from_env} is not set (the file "
             "refers to it with from_env); set it before running runyard apply"]
        )  # fmt: skip
    return environ[ref.from_env]


def environment_where(project: str, name: str) -> str:
    """How an environment is named in messages and plans (a job is ``project/job``)."""
    return f"{project}/environments/{name}"


def references(spec: ProjectSpec) -> list[tuple[str, FromEnv]]:
    """Every secret reference of a project and its jobs, with where it is."""
    found: list[tuple[str, FromEnv]] = []

    def collect(prefix: str, item: Any, maps: tuple[str, ...], values: tuple[str, ...]) -> None:
        for field in maps:
            for key, ref in getattr(item, field).items():
                found.append((f"{prefix}.{field}.{key}", ref))
        for field in values:
            ref = getattr(item, field)
            if ref is not None:
                found.append((f"{prefix}.{field}", ref))

    collect(spec.name, spec, PROJECT_SECRET_MAPS, PROJECT_SECRET_VALUES)
    for environment in spec.environments:
        collect(environment_where(spec.name, environment.name), environment,
                ENVIRONMENT_SECRET_MAPS, ())  # fmt: skip
    for job in spec.jobs:
        collect(f"{spec.name}/{job.name}", job, JOB_SECRET_MAPS, JOB_SECRET_VALUES)
    return found


_LITERAL = (
    "a literal secret in the file is refused: write {{from_env: VARIABLE}} and set VARIABLE "
    "in the environment of runyard apply"
)


def _literal_secrets(raw: dict[str, Any]) -> list[str]:
    problems: list[str] = []

    def check(where: str, item: Any, maps: tuple[str, ...], values: tuple[str, ...]) -> None:
        if not isinstance(item, dict):
            return
        for field in maps:
            entries = item.get(field)
            if isinstance(entries, dict):
                for key, value in entries.items():
                    if not isinstance(value, dict):
                        problems.append(f"{where}.{field}.{key}: {_LITERAL.format()}")
        for field in values:
            value = item.get(field)
            if value is not None and not isinstance(value, dict):
                problems.append(f"{where}.{field}: {_LITERAL.format()}")

    projects = raw.get("projects")
    for i, project in enumerate(projects if isinstance(projects, list) else []):
        check(f"projects[{i}]", project, PROJECT_SECRET_MAPS, PROJECT_SECRET_VALUES)
        environments = project.get("environments") if isinstance(project, dict) else None
        for e, environment in enumerate(environments if isinstance(environments, list) else []):
            check(f"projects[{i}].environments[{e}]", environment, ENVIRONMENT_SECRET_MAPS, ())
        jobs = project.get("jobs") if isinstance(project, dict) else None
        for j, job in enumerate(jobs if isinstance(jobs, list) else []):
            check(f"projects[{i}].jobs[{j}]", job, JOB_SECRET_MAPS, JOB_SECRET_VALUES)
    return problems


def _duplicates(found: JobFile) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for project in found.projects:
        if project.name in seen:
            problems.append(f"project {project.name!r} is listed twice")
        seen.add(project.name)
        envs = [environment.name for environment in project.environments]
        for name in sorted({n for n in envs if envs.count(n) > 1}):
            problems.append(f"environment {project.name}/{name} is listed twice")
        names = [job.name for job in project.jobs]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"job {project.name}/{name} is listed twice")
        for job in project.jobs:
            for dep in job.depends_on:
                if dep.job not in names and not dep.job.startswith("job_"):
                    problems.append(
                        f"job {project.name}/{job.name}: depends_on names {dep.job!r}, which "
                        "is not a job of this project in the file"
                    )
    return problems
