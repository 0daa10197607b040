"""Project environments: create, read, update (only supplied fields), delete.

An environment is where and how a project's jobs run (dev, staging, prod): the dbt target
or SQLMesh environment and gateway, the image (Kubernetes) or path (local), variables and
credentials. Every field left unset falls back to the project's, so the default
environment every project has (created empty with it) runs the project as it always ran.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from app.engines.targets import check_target
from app.errors import ClusterError, ClusterUnavailable, Conflict, FieldError, Invalid, NotFound
from app.executors.local.paths import ProjectPaths
from app.ids import new_id, utcnow
from app.models import (
    ENVIRONMENT_SECRET_MAPS,
    Environment,
    EnvironmentConfig,
    Job,
    Patch,
    Principal,
    Project,
    RunEnvironment,
    check_no_redacted,
    merge_secrets,
    patch_of,
)
from app.ports import Executor
from app.services import audit
from app.services.checks import (
    MAX_DESCRIPTION_LENGTH,
    SUBDOMAIN_RE,
    check_environment,
    check_image,
    check_path,
    check_text,
    shown,
)
from app.services.projects import require_writer
from app.services.tokens import require_project
from app.store import Store

log = logging.getLogger("runyard.environments")

# A Secret's key: what Kubernetes allows in a Secret's data (validation.IsConfigMapKey).
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
MAX_SECRET_REFS = 100


class EnvironmentCreate(EnvironmentConfig, kw_only=True, forbid_unknown_fields=True):
    pass


# A PUT body: each field optional; secret_environment is write-only (a value sets an entry,
# null removes it, "********" keeps it, omitted entries stay).
if TYPE_CHECKING:
    EnvironmentPatch = Patch
else:
    EnvironmentPatch = patch_of("EnvironmentPatch", EnvironmentCreate, ENVIRONMENT_SECRET_MAPS)


def run_environment(environment: Environment) -> RunEnvironment:
    """What a run's snapshot keeps of the environment it runs in."""
    return RunEnvironment(
        id=environment.id,
        name=environment.name,
        target=environment.target,
        gateway=environment.gateway,
        environment=dict(environment.environment),
        secret_environment=dict(environment.secret_environment),
        secret_env=dict(environment.secret_env),
        secret_env_from=list(environment.secret_env_from),
    )


class EnvironmentService:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        clock: Callable[[], datetime] = utcnow,
        paths: ProjectPaths | None = None,
    ) -> None:
        self._store = store
        self._executor = executor
        self._clock = clock
        self._paths = paths

    # --- reads --------------------------------------------------------------------------

    def project(self, principal: Principal, project_id: str) -> Project:
        require_project(principal, project_id)  # a project-scoped token sees only its own
        project = self._store.projects.get(principal.org_id, project_id)
        if project is None:
            raise NotFound(f"No project with id {project_id!r} in your organization.")
        return project

    def list_environments(self, principal: Principal, project_id: str) -> list[Environment]:
        project = self.project(principal, project_id)
        return self._store.environments.for_project(project.id)

    def get(self, principal: Principal, project_id: str, environment_id: str) -> Environment:
        project = self.project(principal, project_id)
        found = self._store.environments.get(principal.org_id, project.id, environment_id)
        if found is None:
            raise NotFound(f"No environment with id {environment_id!r} in project {project_id!r}.")
        return found

    # --- writes -------------------------------------------------------------------------

    def create(self, principal: Principal, project_id: str, body: EnvironmentCreate) -> Environment:
        require_writer(principal)
        project = self.project(principal, project_id)
        now = self._clock()
        environment = Environment(
            **msgspec.structs.asdict(body),
            id=new_id("env"),
            org_id=principal.org_id,
            project_id=project.id,
            is_default=False,
            created_at=now,
            updated_at=now,
        )
        self._check(
            project,
            environment,
            check_no_redacted("secret_environment", environment.secret_environment),
        )
        with self._store.database.write():
            self._store.environments.save(environment)
            self._audit("environment.create", project, None, environment)
        return environment

    def update(
        self, principal: Principal, project_id: str, environment_id: str, patch: EnvironmentPatch
    ) -> Environment:
        require_writer(principal)
        project = self.project(principal, project_id)
        current = self.get(principal, project_id, environment_id)
        changes = patch.changes()
        secret_errors: list[FieldError] = []
        if "secret_environment" in changes:
            changes["secret_environment"], secret_errors = merge_secrets(
                "secret_environment", current.secret_environment, changes["secret_environment"]
            )
        updated = msgspec.structs.replace(current, **changes, updated_at=self._clock())
        self._check(project, updated, secret_errors)
        with self._store.database.write():
            self._store.environments.save(updated)
            self._audit("environment.update", project, current, updated)
        if project.deployed:
            self._sync_jobs(project, updated)
        return updated

    def delete(self, principal: Principal, project_id: str, environment_id: str) -> None:
        require_writer(principal)
        project = self.project(principal, project_id)
        environment = self.get(principal, project_id, environment_id)
        if environment.is_default:
            raise Conflict(
                f"Environment {environment.name!r} is the project's default: jobs without an "
                "environment_id run in it, so it cannot be deleted (it is deleted with the "
                "project)."
            )
        users = self._jobs_in(project, environment)
        if users:
            raise Conflict(
                f"Environment {environment.name!r} is used by job(s) "
                f"{', '.join(sorted(j.name for j in users))}; move them to another "
                "environment (environment_id) or delete them first."
            )
        with self._store.database.write():
            self._store.environments.delete(environment.id)
            self._audit("environment.delete", project, environment, None)

    def _jobs_in(self, project: Project, environment: Environment) -> list[Job]:
        jobs = self._store.jobs.for_project(project.id)
        if environment.is_default:
            return [j for j in jobs if j.environment_id in (None, environment.id)]
        return [j for j in jobs if j.environment_id == environment.id]

    def _sync_jobs(self, project: Project, environment: Environment) -> None:
        """The environment's image, variables and secret references flow into the CronJobs
        of its jobs. The change is saved either way; a job the cluster cannot take now is
        marked out of sync and reconcile applies it."""
        for job in self._jobs_in(project, environment):
            try:
                self._executor.apply_job(project, job)
            except (ClusterError, ClusterUnavailable) as exc:
                self._store.jobs.set_sync(job.id, "pending", exc.detail)
                log.warning(
                    "could not apply the job's CronJob now; reconcile will",
                    extra={"job_id": job.id, "error": exc.detail},
                )

    def _audit(
        self,
        action: str,
        project: Project,
        before: Environment | None,
        after: Environment | None,
    ) -> None:
        """Who changed which environment, in the change's transaction; secret values never
        (app/services/audit.py)."""
        changed = after or before
        assert changed is not None
        audit.record(
            self._store,
            org_id=project.org_id,
            action=action,
            object_type="environment",
            object_id=changed.id,
            object_name=changed.name,
            diff=audit.field_diff(before, after, ignore=("project_id",)),
            project_id=project.id,
        )

    # --- checks -------------------------------------------------------------------------

    def _check(self, project: Project, environment: Environment, errors: list[FieldError]) -> None:
        errors = [*errors, *_check_fields(project, environment)]
        if self._executor.name != "kubernetes" and (
            environment.secret_env or environment.secret_env_from
        ):
            errors.append(
                FieldError(
                    "secret_env" if environment.secret_env else "secret_env_from",
                    "this runyard runs local processes, which cannot read Kubernetes "
                    "Secrets: give the values in secret_environment (sealed, write-only, "
                    "masked in logs) instead",
                )
            )
        if errors:
            raise Invalid(
                "The environment has invalid fields: "
                + "; ".join(f"{e.field}: {e.message}" for e in errors),
                errors,
            )
        if environment.path is not None and self._paths is not None:
            # Confined like a project's path: an existing folder in the org's folder.
            self._paths.resolve(project.org_slug, environment.path)


def _check_fields(project: Project, env: Environment) -> list[FieldError]:
    errors = []
    if not 1 <= len(env.name) <= 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", env.name):
        errors.append(
            FieldError(
                "name",
                "environment names use lowercase letters, digits and hyphens, start and end "
                f"with a letter or digit, and have at most 63 characters; got {shown(env.name)}",
            )
        )
    errors += check_text("description", env.description, MAX_DESCRIPTION_LENGTH, "a description")
    errors += check_target("target", env.target)
    errors += check_target("gateway", env.gateway)
    if env.gateway is not None and project.kind != "sqlmesh":
        errors.append(FieldError("gateway", "a gateway is SQLMesh's; dbt chooses with target"))
    errors += check_image("image", env.image)
    errors += check_path("path", env.path)
    errors += check_environment("environment", env.environment)
    errors += check_environment("secret_environment", env.secret_environment)
    for name in sorted(set(env.secret_environment) & set(env.environment)):
        errors.append(
            FieldError(
                f"secret_environment.{name[:40]}",
                "also set in environment: keep a variable in one of the two",
            )
        )
    errors += _check_secret_refs(env)
    return errors


def _check_secret_refs(env: Environment) -> list[FieldError]:
    errors: list[FieldError] = []
    if len(env.secret_env) > MAX_SECRET_REFS:
        errors.append(FieldError("secret_env", f"at most {MAX_SECRET_REFS} variables"))
    # The variables' names follow the same allowlist as every other variable of a run.
    errors += check_environment("secret_env", dict.fromkeys(env.secret_env, ""))
    for name, ref in env.secret_env.items():
        field = f"secret_env.{name[:40]}"
        if name in env.environment or name in env.secret_environment:
            errors.append(
                FieldError(field, "also set in environment or secret_environment: keep one")
            )
        errors += _check_secret_name(f"{field}.secret", ref.secret)
        if not SECRET_KEY_RE.match(ref.key):
            errors.append(
                FieldError(
                    f"{field}.key",
                    "a key of a Kubernetes Secret: letters, digits, '-', '_' and '.', at most "
                    f"253 characters; got {shown(ref.key)}",
                )
            )
    if len(env.secret_env_from) > MAX_SECRET_REFS:
        errors.append(FieldError("secret_env_from", f"at most {MAX_SECRET_REFS} Secrets"))
    for i, secret in enumerate(env.secret_env_from):
        errors += _check_secret_name(f"secret_env_from[{i}]", secret)
    repeated = sorted({s for s in env.secret_env_from if env.secret_env_from.count(s) > 1})
    if repeated:
        errors.append(
            FieldError("secret_env_from", f"listed more than once: {', '.join(repeated)}")
        )
    return errors


def _check_secret_name(field: str, value: str) -> list[FieldError]:
    if 1 <= len(value) <= 253 and SUBDOMAIN_RE.match(value):
        return []
    return [
        FieldError(
            field,
            "the name of a Kubernetes Secret in your organization's namespace: lowercase "
            "letters, digits, '-' and '.', starting and ending with a letter or digit, at "
            f"most 253 characters; got {shown(value)}",
        )
    ]
