"""Renders runyard's CronJobs and Jobs from the YAML skeletons in ``k8s_templates/``.

Pure: no cluster, no ``kubernetes`` import. A skeleton is loaded once, deep-copied per object,
and fields are set on the copy; nothing a user typed is ever pasted into YAML text, so no
value can change the structure of a manifest. The container runs the validated argument
list directly (``command`` + ``args``), never through a shell.

The rendered dicts use the API's JSON field names and leave out what the API server would
drop (empty lists and maps, empty env values), so that a rendered object and the one the
server returns compare equal field by field (see ``k8s_sync``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from app.engines.environment import ENGINE_ENV
from app.engines.state import MANIFEST, state_args, state_files
from app.engines.targets import with_target
from app.errors import Conflict, FieldError, Invalid
from app.executors.k8s.labels import (
    JOB_ANNOTATION,
    JOB_LABEL,
    MAIN_CONTAINER,
    MANAGED_BY,
    MANAGER,
    ORG_LABEL,
    PROJECT_ANNOTATION,
    PROJECT_LABEL,
    RUN_LABEL,
    VERSION_ANNOTATION,
)
from app.ids import utcnow
from app.models import (
    NODE_RESULT_COMMANDS,
    REDACTED,
    Environment,
    Job,
    JobConfig,
    Project,
    ProjectKind,
    RunRecord,
    RunState,
    SecretKeyRef,
    StepPlan,
    step_name,
)
from app.naming import cronjob_name
from app.ports import CommandParser
from app.settings import Settings
from app.store import Store
from app.store.artifacts import UPLOAD_TOKEN_ENV
from app.types import Obj
from validators.environment import permitted

T = TypeVar("T")

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "k8s_templates"

# Where the writable emptyDir volumes of job.yaml are mounted; the engines are pointed there.
TARGET_DIR = "/runyard/target"
# A retry's or a deferring run's dbt state, downloaded there by the launcher (an emptyDir).
STATE_DIR = "/runyard/state"
# What the launcher reads to fetch it (app/executors/k8s/launcher.py).
STATE_URL_ENV = "RUNYARD_STATE_URL"
STATE_FILES_ENV = "RUNYARD_STATE_FILES"
STATE_DIR_ENV = "RUNYARD_STATE_DIR"
LOG_DIR = "/runyard/logs"
SCRATCH_DIR = "/tmp"  # noqa: S108 - an emptyDir of the pod, not the host's /tmp
DBT_ONLY_VOLUMES = frozenset({"dbt-target", "dbt-logs"})

# What the engines need (shared with the local executor), plus a writable HOME: the root
# filesystem is read-only and tools write caches to ~. Projects and jobs cannot set these
# (the API reserves them), and they are applied last.
POD_ENV = {**ENGINE_ENV, "HOME": SCRATCH_DIR}
DBT_ENV = {
    # dbt looks for profiles.yml here: the project directory, the image's working directory.
    "DBT_PROFILES_DIR": ".",
    "DBT_TARGET_PATH": TARGET_DIR,
    "DBT_LOG_PATH": LOG_DIR,
}


def clone(data: T) -> T:
    """A deep copy of JSON-like data (a manifest), several times faster than copy.deepcopy."""
    return msgspec.json.decode(msgspec.json.encode(data), type=type(data))


@dataclass(frozen=True)
class Templates:
    """The skeletons, loaded and checked once. ``launcher``: the parts a one-off dbt Job
    gains to upload its artifacts (launcher.yaml; the repository's when a templates folder
    of an older runyard has none)."""

    job: Obj
    cronjob: Obj
    launcher: Obj = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None) -> Templates:
        return _load(str(Path(directory) if directory else TEMPLATES_DIR))


@lru_cache(maxsize=4)
def _load(directory: str) -> Templates:
    loaded = []
    for name, kind in (("job.yaml", "Job"), ("cronjob.yaml", "CronJob")):
        path = Path(directory) / name
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RuntimeError(f"cannot load the Kubernetes template {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("kind") != kind:
            raise RuntimeError(f"the Kubernetes template {path} must be a {kind} object")
        loaded.append(data)
    launcher = Path(directory) / "launcher.yaml"
    if not launcher.is_file():
        launcher = TEMPLATES_DIR / "launcher.yaml"
    try:
        launcher_parts = yaml.safe_load(launcher.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuntimeError(f"cannot load the Kubernetes template {launcher}: {exc}") from exc
    if not isinstance(launcher_parts, dict) or not {"initContainer", "volume", "mount"} <= set(
        launcher_parts
    ):
        raise RuntimeError(
            f"the Kubernetes template {launcher} must have initContainer, volume and mount"
        )
    return Templates(job=loaded[0], cronjob=loaded[1], launcher=launcher_parts)


@dataclass(frozen=True)
class Launcher:
    """Artifact collection on Kubernetes (docs/artifacts.md): ``image`` is runyard's own
    (its init container copies the launcher), ``api_url`` where pods reach runyard, and
    ``credential`` mints a run's upload credential."""

    image: str
    api_url: str
    credential: Callable[[RunRecord], str]
    # A scheduled job's credential (org id, job id), for its CronJob's pods.
    job_credential: Callable[[str, str], str] | None = None


def launcher_from_settings(settings: Settings, store: Store | None) -> Launcher | None:
    """The launcher when RUNYARD_LAUNCHER_IMAGE and RUNYARD_INTERNAL_URL are both set (and
    a store mints the credentials); None: pods run the command directly, keeping nothing."""
    if not (settings.launcher_image and settings.internal_url) or store is None:
        return None
    artifacts = store.artifacts

    def credential(run: RunRecord) -> str:
        timeout = run.snapshot.job.timeout_seconds
        grace = settings.artifact_upload_grace_seconds
        return artifacts.run_token(run.org_id, run.id, timeout, grace, utcnow())

    return Launcher(settings.launcher_image, settings.internal_url, credential, artifacts.job_token)


LAUNCHER_PATH = "/runyard/bin/launcher.py"
# The launcher runs in the user's image, which has Python (dbt needs it) as python3.
LAUNCHER_PYTHON = "python3"


@dataclass(frozen=True)
class Workload:
    """Everything that goes into a run's pod: a job's live configuration (for its CronJob)
    or a run's frozen snapshot (for a one-off Job)."""

    project_name: str
    kind: ProjectKind
    image: str | None
    service_account: str | None
    overrides: Mapping[str, Any]
    project_environment: Mapping[str, str]
    project_resources: Mapping[str, Any]
    config: JobConfig
    job_version: int
    argv: Sequence[str] = field(default_factory=list)
    project_secret_environment: Mapping[str, str] = field(default_factory=dict)
    # The project environment's variables (between the project's and the job's), and its
    # references to existing Secrets (docs/environments.md).
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    environment_secret_variables: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, SecretKeyRef] = field(default_factory=dict)
    secret_env_from: Sequence[str] = field(default_factory=list)

    @classmethod
    def of_job(
        cls,
        project: Project,
        job: Job,
        argv: Sequence[str],
        environment: Environment | None = None,
    ) -> Workload:
        env = environment
        return cls(
            project_name=project.name,
            kind=project.kind,
            image=(env.image if env is not None and env.image else project.image),
            service_account=project.service_account,
            overrides=project.template_overrides,
            project_environment=project.environment,
            project_resources=project.resources,
            config=job,
            job_version=job.version,
            argv=list(argv),
            project_secret_environment=project.secret_environment,
            environment_variables=env.environment if env else {},
            environment_secret_variables=env.secret_environment if env else {},
            secret_env=env.secret_env if env else {},
            secret_env_from=env.secret_env_from if env else [],
        )

    @classmethod
    def of_run(cls, run: RunRecord) -> Workload:
        snap = run.snapshot
        env = snap.environment
        return cls(
            project_name=snap.project_name,
            kind=snap.project_kind,
            # A trigger's image (checked against the project's allowed_images) wins.
            image=snap.image_override or snap.image,
            service_account=snap.service_account,
            overrides=snap.template_overrides,
            project_environment=snap.project_environment,
            project_resources=snap.project_resources,
            config=snap.job,
            job_version=snap.job_version,
            argv=list(snap.argv),
            project_secret_environment=snap.project_secret_environment,
            environment_variables=env.environment if env else {},
            environment_secret_variables=env.secret_environment if env else {},
            secret_env=env.secret_env if env else {},
            secret_env_from=env.secret_env_from if env else [],
        )


def labels(
    org_slug: str, project_id: str, job_id: str, run_id: str | None = None
) -> dict[str, str]:
    result = {
        MANAGED_BY: MANAGER,
        ORG_LABEL: org_slug,
        PROJECT_LABEL: project_id,
        JOB_LABEL: job_id,
    }
    if run_id:
        result[RUN_LABEL] = run_id
    return result


def render_cronjob(
    templates: Templates, work: Workload, *, name: str, namespace: str, labels: dict[str, str]
) -> Obj:
    """The CronJob of a scheduled job. Its jobTemplate carries the same labels, so the Jobs it
    creates (and their pods) are recognisable as runyard's."""
    if not work.config.schedule:
        raise ValueError("a job without a schedule has no CronJob")
    job = _job_object(templates, work, labels)
    cronjob = clone(templates.cronjob)
    cronjob["metadata"] = _metadata(cronjob, name, namespace, labels, _annotations(work))
    spec = cronjob["spec"]
    spec["schedule"] = work.config.schedule
    spec["timeZone"] = work.config.timezone
    # Kubernetes knows no Queue: a Queue job's CronJob makes a Job at every fire (Allow),
    # and runyard's queue decides when each one runs (docs/queues.md).
    policy = work.config.concurrency_policy
    spec["concurrencyPolicy"] = "Allow" if policy == "Queue" else policy
    spec["suspend"] = not work.config.enabled
    # Every scheduled Job is created suspended, whatever the policy: every org has a cap
    # (max_concurrent_runs), so runyard decides when a fire runs. The tracker records the
    # run and resumes the Job at once when there is room, else the run is queued and the
    # queue resumes it later (docs/kubernetes.md#scheduled-jobs-start-suspended).
    job_spec = {**job["spec"], "suspend": True}
    spec["jobTemplate"] = {"metadata": job["metadata"], "spec": job_spec}
    return cronjob


def render_job(
    templates: Templates, work: Workload, *, name: str, namespace: str, labels: dict[str, str]
) -> Obj:
    """A one-off Job (a manual trigger, a rerun, a dependency): ``labels`` include the run id."""
    job = _job_object(templates, work, labels)
    job["metadata"] = _metadata(job, name, namespace, labels, _annotations(work))
    return job


class Manifests:
    """The objects runyard applies; also what the manifest endpoint shows (no cluster needed)."""

    def __init__(
        self,
        templates: Templates,
        commands: CommandParser,
        namespace_for: Callable[[str], str],
        shape_overrides: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
        launcher: Launcher | None = None,
        environment_of: Callable[[Project, Job], Environment | None] | None = None,
    ) -> None:
        self._templates = templates
        self._launcher = launcher
        # The environment a job runs in (the store's; None without one: the project's).
        self._environment_of = environment_of

        def argv(
            kind: str, text: str, target: str | None, gateway: str | None, name: str
        ) -> tuple[str, ...]:
            parsed = commands.parse(kind, text)
            return tuple(with_target(commands, kind, parsed, target, gateway, name).argv)

        # Validating a command costs ~0.4 ms; a deploy or a reconcile renders every job
        # again, and the policy is fixed for the life of the process.
        self._argv = lru_cache(maxsize=8192)(argv)
        self._parsed = lru_cache(maxsize=8192)(
            lambda kind, text: commands.parse(kind, text).subcommand
        )
        self._namespace_for = namespace_for
        # kubernetes.shape_overrides: a project's free-form volumes and tolerations as the
        # API would store them, so the rendered object equals the stored one.
        self._shape = shape_overrides

    def cronjob(self, project: Project, job: Job) -> Obj | None:
        """The job's CronJob, or None when the job has no schedule (it only runs on demand)."""
        if not job.schedule:
            return None
        environment = self.environment_of(project, job)
        target = environment.target if environment else None
        gateway = environment.gateway if environment else None
        name = environment.name if environment else ""
        plans = [
            StepPlan(
                name=step_name(step, argv),
                command=step.command,
                argv=list(argv),
                subcommand=self._parsed(project.kind, step.command),
                run_on_failure=step.run_on_failure,
            )
            for step in job.steps
            for argv in (self._argv(project.kind, step.command, target, gateway, name),)
        ]
        argv = (
            plans[0].argv if plans else self._argv(project.kind, job.command, target, gateway, name)
        )
        work = Workload.of_job(project, job, argv, environment)
        namespace = self._namespace_for(project.org_slug)
        cronjob = render_cronjob(
            self._templates,
            dataclasses.replace(work, overrides=self._shape(work.overrides)),
            name=cronjob_name(project.name, job.name),
            namespace=namespace,
            labels=labels(project.org_slug, project.id, job.id),
        )
        launcher = self._launcher
        if plans and (launcher is None or launcher.job_credential is None):
            raise _steps_need_launcher()  # all steps run in one pod, through the launcher
        # dbt runs upload their artifacts through the launcher; a run of steps (dbt or
        # SQLMesh) runs its steps through it.
        wrapped = work.kind == "dbt" or bool(plans)
        if launcher is not None and launcher.job_credential is not None and wrapped:
            # The run is not known when the CronJob is written: its pods name their
            # Kubernetes Job (downward API) and carry the job's credential.
            job_name = {
                "name": "RUNYARD_K8S_JOB_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": JOB_NAME_FIELD}},
            }
            _with_launcher(
                cronjob["spec"]["jobTemplate"],
                self._templates,
                launcher,
                url=f"{launcher.api_url}/api/v1/runs/{namespace}~{{job}}/artifacts",
                token=launcher.job_credential(project.org_id, job.id),
                extra_env=[job_name],
            )
            if job.defer_to_job_id and work.kind == "dbt":
                # Its runs fetch the deferred-to job's manifest as runyard recorded it for
                # the run (the newest success when runyard saw the Job).
                _with_state(
                    cronjob["spec"]["jobTemplate"],
                    url=f"{launcher.api_url}/api/v1/runs/{namespace}~{{job}}/state",
                    files=[MANIFEST],
                    args=state_args(RunState(defer_job_id=job.defer_to_job_id), STATE_DIR),
                )
            if plans:
                _with_steps(cronjob["spec"]["jobTemplate"], plans)
        return cronjob

    def environment_of(self, project: Project, job: Job) -> Environment | None:
        return self._environment_of(project, job) if self._environment_of else None

    def job(self, run: RunRecord, org_slug: str) -> Obj:
        assert run.job_name and run.namespace, "a Kubernetes run has its Job name and namespace"
        work = Workload.of_run(run)
        job = render_job(
            self._templates,
            dataclasses.replace(work, overrides=self._shape(work.overrides)),
            name=run.job_name,
            namespace=run.namespace,
            labels=labels(org_slug, run.project_id, run.job_id, run.id),
        )
        plans = run.snapshot.steps
        if plans and self._launcher is None:
            raise _steps_need_launcher()
        if self._launcher is not None and (work.kind == "dbt" or plans):
            add_launcher(job, self._templates, self._launcher, run)
        if plans:
            _with_steps(job, plans)
        state = run.snapshot.state
        if state is not None and work.kind == "dbt":
            if self._launcher is None:
                raise Conflict(
                    "Retry and deferral on Kubernetes need runyard's launcher, which downloads "
                    "the run's dbt state into its pod: set RUNYARD_LAUNCHER_IMAGE and "
                    "RUNYARD_INTERNAL_URL (docs/artifacts.md), or rerun the run instead."
                )
            _with_state(
                job,
                url=f"{self._launcher.api_url}/api/v1/runs/{run.id}/state",
                files=list(state_files(state)),
                args=state_args(state, STATE_DIR),
            )
        return job


# --- the pieces ------------------------------------------------------------------------------


def _steps_need_launcher() -> Conflict:
    return Conflict(
        "A job of steps runs all its steps in one pod through runyard's launcher: set "
        "RUNYARD_LAUNCHER_IMAGE and RUNYARD_INTERNAL_URL (docs/artifacts.md, docs/steps.md), "
        "or give the job one command."
    )


# What the launcher reads for a run of steps (app/executors/k8s/launcher.py --steps).
STEPS_ENV = "RUNYARD_STEPS"


def _with_steps(job: Obj, plans: Sequence[StepPlan]) -> None:
    """The main container runs the launcher with ``--steps``: the steps' argument lists go
    in as JSON in an environment variable (data, never a shell line), with whether each
    runs on failure and keeps node results (docs/steps.md)."""
    pod = job["spec"]["template"]["spec"]
    main = next(c for c in pod["containers"] if c["name"] == MAIN_CONTAINER)
    main["command"] = [LAUNCHER_PYTHON, LAUNCHER_PATH, "--steps"]
    main.pop("args", None)
    steps = [
        {
            "name": plan.name,
            "argv": list(plan.argv),
            "run_on_failure": plan.run_on_failure,
            "results": plan.subcommand in NODE_RESULT_COMMANDS,
        }
        for plan in plans
    ]
    env = {e["name"]: e for e in main.get("env") or []}
    env[STEPS_ENV] = {"name": STEPS_ENV, "value": msgspec.json.encode(steps).decode()}
    main["env"] = [env[name] for name in sorted(env)]


def _annotations(work: Workload) -> dict[str, str]:
    return {
        PROJECT_ANNOTATION: work.project_name,
        JOB_ANNOTATION: work.config.name,
        VERSION_ANNOTATION: str(work.job_version),
    }


def _metadata(
    skeleton: Obj, name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str]
) -> Obj:
    meta = clone(skeleton.get("metadata") or {})
    meta["name"] = name
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return meta


def _job_object(templates: Templates, work: Workload, labels: dict[str, str]) -> Obj:
    """A Job's metadata (labels, annotations only) and spec, from job.yaml."""
    if not work.image:
        raise Invalid(
            f"Project {work.project_name!r} has no image: set 'image' to the container image "
            "that holds the project to run it on Kubernetes.",
            [FieldError("image", "required to run on Kubernetes")],
        )
    if not work.argv:
        raise ValueError("a run needs a validated command")
    config = work.config
    job = clone(templates.job)
    spec = job["spec"]
    spec["activeDeadlineSeconds"] = config.timeout_seconds
    spec["backoffLimit"] = config.retries
    spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished
    template = spec["template"]
    template["metadata"] = {"labels": {**template["metadata"]["labels"], **labels}}
    pod_annotations = dict(work.overrides.get("annotations") or {})
    if pod_annotations:
        template["metadata"]["annotations"] = pod_annotations
    _pod_spec(template["spec"], work)
    job_meta = {
        "labels": {**job["metadata"]["labels"], **labels},
        "annotations": _annotations(work),
    }
    return {
        "apiVersion": job["apiVersion"],
        "kind": job["kind"],
        "metadata": job_meta,
        "spec": spec,
    }


def _pod_spec(pod: Obj, work: Workload) -> None:
    overrides = work.overrides
    main = next(c for c in pod["containers"] if c["name"] == MAIN_CONTAINER)
    main["image"] = work.image
    main["command"] = [work.argv[0]]
    if len(work.argv) > 1:
        main["args"] = list(work.argv[1:])
    main["env"] = _env(work)
    if work.secret_env_from:
        # Whole Secrets: runyard names them and never reads them. Variables in ``env``
        # (runyard's own included) win over the same names from a Secret.
        main["envFrom"] = [{"secretRef": {"name": name}} for name in work.secret_env_from]
    main["resources"] = _resources(work.project_resources, work.config.resources)
    if work.kind == "sqlmesh":
        # SQLMesh writes logs/ and .cache/ inside the project directory and has no setting
        # for the log directory: it needs a writable filesystem, and no dbt volumes.
        main["securityContext"]["readOnlyRootFilesystem"] = False
        main["volumeMounts"] = [
            m for m in main["volumeMounts"] if m["name"] not in DBT_ONLY_VOLUMES
        ]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in DBT_ONLY_VOLUMES]
    main["volumeMounts"] += [dict(m) for m in overrides.get("volume_mounts") or []]
    pod["volumes"] += [clone(v) for v in overrides.get("volumes") or []]
    if work.service_account:
        pod["serviceAccountName"] = work.service_account
    if overrides.get("node_selector"):
        pod["nodeSelector"] = dict(overrides["node_selector"])
    if overrides.get("tolerations"):
        pod["tolerations"] = [dict(t) for t in overrides["tolerations"]]
    if overrides.get("image_pull_secrets"):
        pod["imagePullSecrets"] = [{"name": s} for s in overrides["image_pull_secrets"]]


def add_launcher(job: Obj, templates: Templates, launcher: Launcher, run: RunRecord) -> None:
    """Run the main container's command through runyard's launcher, which uploads the
    artifacts when it ends: an init container copies the launcher into a shared emptyDir,
    and the command becomes ``python3 /runyard/bin/launcher.py -- <argv>``. The upload
    credential is the run's own (it can upload to this run only, until shortly after the
    run has ended) and goes in as an environment variable, like the job's secrets."""
    _with_launcher(
        job,
        templates,
        launcher,
        url=f"{launcher.api_url}/api/v1/runs/{run.id}/artifacts",
        token=launcher.credential(run),
    )


# Kubernetes labels every pod of a Job with the Job's name.
JOB_NAME_FIELD = "metadata.labels['batch.kubernetes.io/job-name']"


def _with_launcher(
    job: Obj,
    templates: Templates,
    launcher: Launcher,
    *,
    url: str,
    token: str,
    extra_env: Sequence[Obj] = (),
) -> None:
    parts = templates.launcher
    pod = job["spec"]["template"]["spec"]
    main = next(c for c in pod["containers"] if c["name"] == MAIN_CONTAINER)
    init = clone(parts["initContainer"])
    init["image"] = launcher.image
    pod["initContainers"] = [init, *(pod.get("initContainers") or [])]
    pod["volumes"] = [*pod["volumes"], clone(parts["volume"])]
    main["volumeMounts"] = [*main["volumeMounts"], clone(parts["mount"])]
    main["args"] = [*main["command"], *(main.get("args") or [])]
    main["command"] = [LAUNCHER_PYTHON, LAUNCHER_PATH, "--"]
    env = {e["name"]: e for e in main.get("env") or []}
    for name, value in (
        ("RUNYARD_ARTIFACT_URL", url),
        (UPLOAD_TOKEN_ENV, token),
        ("RUNYARD_ARTIFACT_DIR", TARGET_DIR),
    ):
        env[name] = {"name": name, "value": value}
    for entry in extra_env:
        env[entry["name"]] = dict(entry)
    main["env"] = [env[name] for name in sorted(env)]


# The launcher downloads a run's dbt state here before it starts dbt (an emptyDir: the root
# filesystem is read-only). A 5,000-model manifest is some 50-100 MB.
STATE_VOLUME = "runyard-state"
STATE_VOLUME_LIMIT = "1Gi"


def _with_state(job: Obj, *, url: str, files: Sequence[str], args: Sequence[str]) -> None:
    """A run that starts with dbt state (a retry, a deferring job): its launcher downloads
    ``files`` from ``url`` (with the run's credential) into STATE_DIR before it starts dbt,
    and dbt is given ``args`` (``--state``, and ``--defer`` for a deferral)."""
    pod = job["spec"]["template"]["spec"]
    main = next(c for c in pod["containers"] if c["name"] == MAIN_CONTAINER)
    pod["volumes"] = [
        *pod["volumes"],
        {"name": STATE_VOLUME, "emptyDir": {"sizeLimit": STATE_VOLUME_LIMIT}},
    ]
    main["volumeMounts"] = [*main["volumeMounts"], {"name": STATE_VOLUME, "mountPath": STATE_DIR}]
    main["args"] = [*(main.get("args") or []), *args]
    env = {e["name"]: e for e in main.get("env") or []}
    for name, value in (
        (STATE_URL_ENV, url),
        (STATE_FILES_ENV, ",".join(files)),
        (STATE_DIR_ENV, STATE_DIR),
    ):
        env[name] = {"name": name, "value": value}
    main["env"] = [env[name] for name in sorted(env)]


def _env(work: Workload) -> list[Obj]:
    """Project variables, the job's (which win), then runyard's (which nobody overrides),
    sorted by name so the list is stable. An empty value is sent without ``value``: the
    API server drops empty strings, and the rendered object must equal the stored one.
    Secret variables are rendered as values too (runyard reads no Kubernetes Secret):
    whoever may read the org's CronJobs and Jobs in the cluster reads them; runyard's own
    API shows them redacted (see redact_env)."""
    # permitted(): a record saved before an environment rule existed keeps no refused name.
    values: dict[str, str] = {
        **permitted(work.project_environment),
        **permitted(work.project_secret_environment),
        **permitted(work.environment_variables),
        **permitted(work.environment_secret_variables),
        **permitted(work.config.environment),
        **permitted(work.config.secret_environment),
    }
    # A key of an existing Secret, by reference (valueFrom.secretKeyRef): the credential
    # never passes through runyard. It wins over a plain variable of the same name.
    refs = {
        name: ref
        for name, ref in work.secret_env.items()
        if permitted({name: ""}) and name not in POD_ENV and name not in DBT_ENV
    }
    for name in refs:
        values.pop(name, None)
    values.update(POD_ENV)
    if work.kind == "dbt":
        values.update(DBT_ENV)
    entries: dict[str, Obj] = {
        k: ({"name": k, "value": v} if v else {"name": k}) for k, v in values.items()
    }
    for name, ref in refs.items():
        entries[name] = {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}},
        }
    return [entries[name] for name in sorted(entries)]


def _resources(project: Mapping[str, Any], job: Mapping[str, Any]) -> Obj:
    """``requests`` and ``limits``, resource by resource: the job's amount wins over the
    project's. Amounts are strings, as the API returns quantities."""
    merged: Obj = {}
    for section in ("requests", "limits"):
        amounts = {**(project.get(section) or {}), **(job.get(section) or {})}
        if amounts:
            merged[section] = {name: str(amount) for name, amount in sorted(amounts.items())}
    return merged


def redact_env(manifest: Obj, names: Iterable[str]) -> Obj:
    """The manifest with the values of the variables ``names`` replaced by REDACTED in
    every container (for answers to the API; what is applied keeps the values)."""
    hidden = set(names)
    if not hidden:
        return manifest
    redacted = clone(manifest)
    stack: list[Any] = [redacted]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, list):
                    for entry in value:
                        if (
                            isinstance(entry, dict)
                            and entry.get("name") in hidden
                            and "value" in entry
                        ):
                            entry["value"] = REDACTED
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return redacted
