"""Jobs: validated configuration, versions on every change, schedules kept in step."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from app.engines.targets import with_target
from app.errors import (
    ClusterError,
    ClusterUnavailable,
    Conflict,
    FieldError,
    Invalid,
    NotFound,
    invalid,
)
from app.ids import new_id, utcnow
from app.models import (
    CONCURRENCY_POLICIES,
    JOB_SECRET_MAPS,
    WEBHOOK_EVENTS,
    Dependency,
    Job,
    JobConfig,
    JobVersion,
    Patch,
    Principal,
    Project,
    check_no_redacted,
    merge_secrets,
    patch_of,
    reserved_header,
)
from app.notify.outbound import OutboundPolicy
from app.ports import Executor
from app.services import audit
from app.services.checks import (
    HEADER_NAME_RE,
    MAX_DESCRIPTION_LENGTH,
    check_channel,
    check_environment,
    check_name,
    check_range,
    check_resources,
    check_schedule,
    check_text,
    check_timezone,
    shown,
)
from app.services.commands import CommandChecker
from app.services.projects import require_writer
from app.services.silence import check_silence_alerts
from app.services.steps import plan_steps
from app.services.tokens import require_project, sees_project
from app.store import Store

log = logging.getLogger("runyard.jobs")


class JobCreate(JobConfig, kw_only=True, forbid_unknown_fields=True):
    webhook_secret: str | None = None


# A PUT body: JobCreate's fields, each optional. Write-only maps: a supplied value sets its
# entry, null removes it, "********" (what reads show) keeps it; entries not mentioned stay
# (see app.models.merge_secrets).
if TYPE_CHECKING:
    JobPatch = Patch
else:
    JobPatch = patch_of("JobPatch", JobCreate, JOB_SECRET_MAPS)


class JobService:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        commands: CommandChecker,
        outbound: OutboundPolicy,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._executor = executor
        self._commands = commands
        self._outbound = outbound
        self._clock = clock

    # --- reads --------------------------------------------------------------------------

    def project(self, principal: Principal, project_id: str) -> Project:
        require_project(principal, project_id)
        project = self._store.projects.get(principal.org_id, project_id)
        if project is None:
            raise NotFound(f"No project with id {project_id!r} in your organization.")
        return project

    def get(self, principal: Principal, project_id: str, job_id: str) -> Job:
        job = self._store.jobs.get(principal.org_id, project_id, job_id)
        if job is None:
            raise NotFound(f"No job with id {job_id!r} in project {project_id!r}.")
        return job

    def find(self, principal: Principal, job_id: str) -> Job:
        """A job of the caller's organization by its id alone (the web UI's job URLs)."""
        job = self._store.jobs.get_in_org(principal.org_id, job_id)
        if job is None or not sees_project(principal, job.project_id):
            raise NotFound(f"No job with id {job_id!r} in your organization.")
        return job

    def list_jobs(self, principal: Principal, project_id: str) -> list[Job]:
        self.project(principal, project_id)
        return self._store.jobs.for_project(project_id)

    def list_jobs_json(self, principal: Principal, project_id: str) -> bytes:
        """The list body ``{"jobs": [...], "total": n}`` rendered by the store: the same
        document as encoding ``list_jobs``, several times cheaper to produce."""
        self.project(principal, project_id)
        total, jobs = self._store.jobs.list_json(project_id)
        return f'{{"jobs":{jobs},"total":{total}}}'.encode()

    def versions(self, principal: Principal, project_id: str, job_id: str) -> list[JobVersion]:
        self.get(principal, project_id, job_id)
        return self._store.jobs.versions(job_id)

    def dependencies(self, principal: Principal, project_id: str, job_id: str) -> Dependencies:
        job = self.get(principal, project_id, job_id)
        org_jobs = self._store.jobs.for_org(principal.org_id)
        # A project-scoped token sees no job of another project, here either.
        return dependencies_of(job, [j for j in org_jobs if sees_project(principal, j.project_id)])

    # --- writes -------------------------------------------------------------------------

    def set_enabled(
        self, principal: Principal, project_id: str, job_ids: list[str], enabled: bool
    ) -> BatchResult:
        """Enable or disable many jobs of a project; all ids are checked before any change."""
        require_writer(principal)
        self.project(principal, project_id)
        if not job_ids or len(job_ids) > 1000:
            raise invalid("job_ids", "give between 1 and 1,000 job ids")
        known = {j.id: j for j in self._store.jobs.for_project(project_id)}
        unknown = sorted({i for i in job_ids if i not in known})
        if unknown:
            raise invalid("job_ids", "not jobs of this project: " + ", ".join(unknown))
        changed, unchanged = [], []
        for job_id in dict.fromkeys(job_ids):
            if known[job_id].enabled == enabled:
                unchanged.append(job_id)
                continue
            self.update(principal, project_id, job_id, JobPatch(enabled=enabled))
            changed.append(job_id)
        return BatchResult(changed=changed, unchanged=unchanged)

    def create(self, principal: Principal, project_id: str, body: JobCreate) -> Job:
        require_writer(principal)
        project = self.project(principal, project_id)
        now = self._clock()
        fields = msgspec.structs.asdict(body)
        secret = fields.pop("webhook_secret")
        job = Job(
            **fields,
            id=new_id("job"),
            org_id=principal.org_id,
            project_id=project.id,
            version=1,
            webhook_secret=secret or None,
            webhook_secret_set=bool(secret),
            sync_state="pending" if project.deployed else "not_deployed",
            created_at=now,
            updated_at=now,
        )
        secret_errors = check_no_redacted("webhook_headers", job.webhook_headers)
        secret_errors += check_no_redacted("secret_environment", job.secret_environment)
        secret_errors += self._scope_errors(principal, job, [])
        self._validate(project, job, secret_errors)
        with self._store.database.write():
            self._store.jobs.insert(job)
            self._audit(job, "job.create", None, job)
        return self._apply(project, job)

    def _audit(self, job: Job, action: str, before: Job | None, after: Job | None) -> None:
        audit.record(
            self._store,
            org_id=job.org_id,
            action=action,
            object_type="job",
            object_id=job.id,
            object_name=job.name,
            diff=audit.field_diff(
                before, after, ignore=("webhook_secret_set", "sync_error", "project_id")
            ),
            project_id=job.project_id,
            clock=self._clock,
        )

    def update(self, principal: Principal, project_id: str, job_id: str, patch: JobPatch) -> Job:
        require_writer(principal)
        project = self.project(principal, project_id)
        current = self.get(principal, project_id, job_id)
        changes = patch.changes()
        # Switching between one command and steps: the one given replaces the other.
        if changes.get("steps") and "command" not in changes:
            changes["command"] = ""
        elif changes.get("command") and "steps" not in changes:
            changes["steps"] = []
        if "webhook_secret" in changes:
            changes["webhook_secret"] = changes["webhook_secret"] or None
        secret_errors = []
        for field in JOB_SECRET_MAPS:
            if field in changes:
                changes[field], errors = merge_secrets(
                    field, getattr(current, field), changes[field]
                )
                secret_errors += errors
        try:
            updated = msgspec.structs.replace(current, **changes)
        except TypeError as exc:  # pragma: no cover - msgspec already typed the body
            raise Invalid(str(exc)) from None
        if updated == current and not secret_errors:
            return current  # nothing changed: no new version, no cluster write
        updated.version = current.version + 1
        updated.updated_at = self._clock()
        updated.webhook_secret_set = bool(updated.webhook_secret)
        updated.sync_state = "pending" if project.deployed else "not_deployed"
        updated.sync_error = None
        secret_errors += self._scope_errors(principal, updated, current.depends_on)
        self._validate(project, updated, secret_errors)
        with self._store.database.write():
            if not self._store.jobs.update(updated, expected_version=current.version):
                raise Conflict(
                    "The job was changed by another request at the same time; read it "
                    "again and repeat your change."
                )
            self._audit(updated, "job.update", current, updated)
        if current.name != updated.name and project.deployed:
            # The CronJob's name follows the job's; the old one goes (or reconcile removes
            # it once the cluster answers).
            self._quietly(lambda: self._executor.remove_job(project, current), "remove", job_id)
        return self._apply(project, updated)

    def delete(self, principal: Principal, project_id: str, job_id: str) -> None:
        require_writer(principal)
        project = self.project(principal, project_id)
        job = self.get(principal, project_id, job_id)
        dependants = [j.name for j in self._store.jobs.dependants(principal.org_id, job_id)]
        if dependants:
            raise Conflict(
                f"Job {job.name!r} is an upstream of {', '.join(sorted(dependants))}; "
                "remove it from their depends_on first."
            )
        deferring = [
            j.name for j in self._store.jobs.for_project(project_id) if j.defer_to_job_id == job_id
        ]
        if deferring:
            raise Conflict(
                f"Job {job.name!r} is what {', '.join(sorted(deferring))} defer to "
                "(defer_to_job_id); point them at another job or clear it first."
            )
        with self._store.database.write():
            self._store.jobs.delete(job_id)
            self._audit(job, "job.delete", job, None)
        if project.deployed:
            # The job is gone from the database, the source of truth; if the cluster cannot
            # be reached now, reconcile deletes the CronJob runyard no longer knows.
            self._quietly(lambda: self._executor.remove_job(project, job), "remove", job_id)

    @staticmethod
    def _quietly(action: Callable[[], None], what: str, job_id: str) -> None:
        try:
            action()
        except (ClusterError, ClusterUnavailable) as exc:
            log.warning(
                "could not %s the CronJob now; reconcile will",
                what,
                extra={"job_id": job_id, "error": exc.detail},
            )

    def _apply(self, project: Project, job: Job) -> Job:
        """Push the job to its schedule backend. A failure keeps the saved job, marked
        out of sync; the reconcile loop applies it when the backend answers again."""
        if not project.deployed:
            return job
        try:
            self._executor.apply_job(project, job)
        except (ClusterError, ClusterUnavailable) as exc:
            self._store.jobs.set_sync(job.id, "pending", exc.detail)
            job.sync_state, job.sync_error = "pending", exc.detail
            return job
        self._store.jobs.set_sync(job.id, "in_sync")
        job.sync_state, job.sync_error = "in_sync", None
        return job

    # --- checks -------------------------------------------------------------------------

    def _scope_errors(
        self, principal: Principal, job: Job, kept: Collection[Dependency]
    ) -> list[FieldError]:
        """A project-scoped token may not make a job depend on another project's job: to
        it, those do not exist (worded as the org-wide check words a missing one). Links
        already there (made by an org-wide token) may stay."""
        if principal.project_id is None:
            return []
        had = {d.job_id for d in kept}
        in_scope = {j.id for j in self._store.jobs.for_project(principal.project_id)}
        return [
            FieldError(
                f"depends_on[{i}].job_id", f"no other job {shown(d.job_id)} in your organization"
            )
            for i, d in enumerate(job.depends_on)
            if d.job_id not in had and d.job_id not in in_scope
        ]

    def _validate(self, project: Project, job: Job, errors: list[FieldError]) -> None:
        """_check's findings and the secret fields', reported together."""
        errors = [*errors, *self._check_secrets(project, job)]
        try:
            self._check(project, job)
        except Invalid as exc:
            errors = [*exc.errors, *errors]
        if errors:
            raise Invalid(
                "The job has invalid fields: "
                + "; ".join(f"{e.field}: {e.message}" for e in errors),
                errors,
            )

    @staticmethod
    def _check_secrets(project: Project, job: Job) -> list[FieldError]:
        """Secret variables follow the rules of plain ones; a name lives in one map only,
        so which value a run gets is never a question."""
        errors = check_environment("secret_environment", job.secret_environment)
        for name in sorted(set(job.secret_environment) & set(job.environment)):
            errors.append(
                FieldError(
                    f"secret_environment.{name[:40]}",
                    "also set in environment: keep a variable in one of the two "
                    "(remove it from environment with a PUT that leaves it out)",
                )
            )
        return errors

    def _check(self, project: Project, job: Job) -> None:
        errors = check_name("name", job.name, "Job")
        errors += self._check_command(project, job)
        errors += check_schedule("schedule", job.schedule)
        errors += check_timezone("timezone", job.timezone)
        errors += check_environment("environment", job.environment)
        errors += check_resources("resources", job.resources)
        errors += check_channel("slack_channel", job.slack_channel)
        errors += check_range("timeout_seconds", job.timeout_seconds, 1, 7 * 86400)
        errors += check_range("retries", job.retries, 0, 10)
        errors += check_range(
            "ttl_seconds_after_finished", job.ttl_seconds_after_finished, 300, 30 * 86400
        )
        if job.concurrency_policy not in CONCURRENCY_POLICIES:
            errors.append(FieldError("concurrency_policy", "use Forbid, Allow, Replace or Queue"))
        errors += check_silence_alerts(job)
        errors += check_text(
            "description", job.description, MAX_DESCRIPTION_LENGTH, "a description"
        )
        errors += self._check_webhook(job)
        errors += self._check_dependencies(job)
        errors += self._check_defer(project, job)
        errors += self._check_environment(project, job)
        if errors:
            raise Invalid(
                "The job has invalid fields: "
                + "; ".join(f"{e.field}: {e.message}" for e in errors),
                errors,
            )

    def _check_command(self, project: Project, job: Job) -> list[FieldError]:
        """Exactly one of command and steps, each step checked like a command."""
        if job.steps and job.command:
            return [
                FieldError(
                    "steps",
                    "give either command or steps, not both: a job of steps runs its steps "
                    'in order (set command to "" or leave it out)',
                )
            ]
        if job.steps:
            try:
                plan_steps(self._commands, project.kind, job.steps)
            except Invalid as exc:
                return list(exc.errors)
            return []
        if not job.command:
            return [
                FieldError(
                    "command",
                    'required: the dbt or SQLMesh command to run (e.g. "dbt build"), or '
                    "steps, a list of commands run in order",
                )
            ]
        try:
            self._commands.parse(project.kind, job.command)
        except Invalid as exc:
            return list(exc.errors)
        return []

    def _check_webhook(self, job: Job) -> list[FieldError]:
        errors: list[FieldError] = []
        if job.webhook_url:
            errors += self._outbound.check_url("webhook_url", job.webhook_url)
        elif job.webhook_enabled:
            errors.append(FieldError("webhook_url", "required when webhook_enabled is true"))
        for event in job.webhook_events:
            if event not in WEBHOOK_EVENTS:
                errors.append(
                    FieldError(
                        "webhook_events",
                        f"{shown(event)} is not an event; use " + ", ".join(WEBHOOK_EVENTS),
                    )
                )
        repeated = sorted({e for e in job.webhook_events if job.webhook_events.count(e) > 1})
        if repeated:
            errors.append(
                FieldError(
                    "webhook_events",
                    f"{', '.join(repeated)} listed more than once; list each event once",
                )
            )
        if len(job.webhook_headers) > 30:
            errors.append(FieldError("webhook_headers", "at most 30 headers"))
        for name, value in job.webhook_headers.items():
            if not HEADER_NAME_RE.match(name):
                errors.append(FieldError(f"webhook_headers.{name[:40]}", "not a valid header name"))
            elif reserved_header(name):
                errors.append(
                    FieldError(
                        f"webhook_headers.{name}",
                        "runyard sets this header itself; it cannot be overridden",
                    )
                )
            # HTTP clients encode header values as ASCII (or Latin-1, read differently by
            # receivers): refuse anything else now rather than fail at every delivery.
            if len(value) > 4096 or any(not (" " <= c <= "~" or c == "\t") for c in value):
                errors.append(
                    FieldError(
                        f"webhook_headers.{name[:40]}",
                        "values are printable ASCII (no line breaks, control or non-ASCII "
                        "characters) of at most 4,096 characters",
                    )
                )
        if job.webhook_secret is not None and not 16 <= len(job.webhook_secret) <= 256:
            errors.append(FieldError("webhook_secret", "use 16 to 256 characters"))
        return errors

    def _check_defer(self, project: Project, job: Job) -> list[FieldError]:
        """defer_to_job_id names another dbt job of the same project (its manifest is what
        this job's runs compare against and defer to)."""
        target = job.defer_to_job_id
        if target is None:
            return []
        if project.kind != "dbt":
            return [FieldError("defer_to_job_id", "deferral is dbt's (--defer --state)")]
        if job.steps:
            return [
                FieldError(
                    "defer_to_job_id",
                    "deferral applies to a job of one command; a job of steps cannot defer "
                    "(give the steps that need it --defer --state in their own job)",
                )
            ]
        if target == job.id or self._store.jobs.get(job.org_id, project.id, target) is None:
            return [
                FieldError(
                    "defer_to_job_id",
                    f"no other job {shown(target)} in this project: name a job of the same "
                    "project whose successful runs keep the manifest to defer to",
                )
            ]
        try:
            flags = self._commands.parse(project.kind, job.command).flags
        except Invalid:
            return []  # the command's own error is reported
        if "--state" in flags or "--defer-state" in flags:
            return [
                FieldError(
                    "command",
                    "the job defers to another job, so runyard gives dbt --defer --state "
                    "itself: remove --state and --defer-state from the command",
                )
            ]
        return []

    def _check_environment(self, project: Project, job: Job) -> list[FieldError]:
        """environment_id names an environment of the job's project, and the command can
        run with its target (a command naming its own --target cannot)."""
        environment = self._store.environments.of_job(project.id, job.environment_id)
        if environment is None:
            if job.environment_id is None:
                return []  # a project without environments runs with its own settings
            return [
                FieldError(
                    "environment_id",
                    f"no environment {shown(job.environment_id)} in this project: name one "
                    f"of GET /api/v1/projects/{project.id}/environments, or leave it out for "
                    "the project's default",
                )
            ]
        try:
            parsed = self._commands.parse(project.kind, job.command)
        except Invalid:
            return []  # the command's own error is reported
        try:
            with_target(
                self._commands,
                project.kind,
                parsed,
                environment.target,
                environment.gateway,
                environment.name,
            )
        except Invalid as exc:
            return [FieldError("command", exc.detail)]
        return []

    def _check_dependencies(self, job: Job) -> list[FieldError]:
        if not job.depends_on:
            return []
        if len(job.depends_on) > 50:  # a bound on the cycle search, far above real use
            return [FieldError("depends_on", "at most 50 upstream jobs")]
        org_jobs = {j.id: j for j in self._store.jobs.for_org(job.org_id)}
        org_jobs[job.id] = job
        errors: list[FieldError] = []
        seen: set[str] = set()
        for i, dep in enumerate(job.depends_on):
            if dep.job_id not in org_jobs or dep.job_id == job.id:
                errors.append(
                    FieldError(
                        f"depends_on[{i}].job_id",
                        f"no other job {shown(dep.job_id)} in your organization",
                    )
                )
            if dep.job_id in seen:
                errors.append(FieldError(f"depends_on[{i}].job_id", "listed twice"))
            seen.add(dep.job_id)
        if errors:
            return errors
        cycle = _find_cycle(
            job.id, {j.id: [d.job_id for d in j.depends_on] for j in org_jobs.values()}
        )
        if cycle:
            names = " -> ".join(org_jobs[j].name for j in cycle)
            errors.append(FieldError("depends_on", f"this would make a cycle: {names}"))
        return errors


def _find_cycle(start: str, upstreams: dict[str, list[str]]) -> list[str] | None:
    """A path start -> ... -> start through the upstream edges, if one exists."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    visited: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in upstreams.get(node, []):
            if nxt == start:
                return [*path, start]
            if nxt not in visited:
                visited.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


class DependencyLink(msgspec.Struct, kw_only=True):
    job_id: str
    job_name: str
    project_id: str
    on: str


class Dependencies(msgspec.Struct, kw_only=True):
    job_id: str
    upstream: list[DependencyLink]
    downstream: list[DependencyLink]


class BatchBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    job_ids: list[str]


class BatchResult(msgspec.Struct, kw_only=True):
    changed: list[str]
    unchanged: list[str]


def dependencies_of(job: Job, org_jobs: list[Job]) -> Dependencies:
    by_id = {j.id: j for j in org_jobs}
    upstream = [
        DependencyLink(
            job_id=d.job_id,
            job_name=by_id[d.job_id].name,
            project_id=by_id[d.job_id].project_id,
            on=d.on,
        )
        for d in job.depends_on
        if d.job_id in by_id
    ]
    downstream = [
        DependencyLink(job_id=j.id, job_name=j.name, project_id=j.project_id, on=d.on)
        for j in org_jobs
        for d in j.depends_on
        if d.job_id == job.id
    ]
    return Dependencies(job_id=job.id, upstream=upstream, downstream=downstream)
