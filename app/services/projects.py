"""Projects: create, read, update (only supplied fields), delete, deploy and undeploy."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from app.errors import (
    ClusterError,
    ClusterUnavailable,
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
)
from app.executors.local.paths import ProjectPaths
from app.ids import new_id, utcnow
from app.models import (
    PROJECT_KINDS,
    PROJECT_SECRET_MAPS,
    Patch,
    Principal,
    Project,
    ProjectConfig,
    check_no_redacted,
    merge_secrets,
    patch_of,
)
from app.notify.outbound import OutboundPolicy
from app.ports import Executor, SyncReport
from app.services import audit
from app.services.checks import (
    MAX_DESCRIPTION_LENGTH,
    check_channel,
    check_environment,
    check_image,
    check_name,
    check_path,
    check_resources,
    check_service_account,
    check_text,
)
from app.services.overrides import check_template_overrides
from app.services.tokens import require_project, sees_project
from app.store import Store

log = logging.getLogger("runyard.projects")


class ProjectCreate(ProjectConfig, kw_only=True, forbid_unknown_fields=True):
    slack_webhook_url: str | None = None


# A PUT body: ProjectCreate's fields, each optional; secret_environment is write-only (a value
# sets an entry, null removes it, "********" keeps it, omitted entries stay).
if TYPE_CHECKING:
    ProjectPatch = Patch
else:
    ProjectPatch = patch_of("ProjectPatch", ProjectCreate, PROJECT_SECRET_MAPS)


# A container image reference, by the grammar of distribution/reference: an optional
# registry (host[:port]), lowercase path components, then an optional tag and digest.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_REFERENCE = re.compile(
    rf"(?P<name>{_NAME})(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)
_REPOSITORY = re.compile(_NAME, re.ASCII)
MAX_ALLOWED_IMAGES = 50


def image_refusal(allowed: list[str], image: str) -> str | None:
    """Why a trigger may not run ``image``, or None when one of the project's
    ``allowed_images`` (repository prefixes) covers it. The match is on the repository
    path's boundaries: ``ghcr.io/acme/analytics`` allows ``ghcr.io/acme/analytics:pr-42``,
    ``...@sha256:<digest>`` and ``ghcr.io/acme/analytics/ci:1``, never
    ``ghcr.io/acme/analytics-other:1``."""
    if not allowed:
        return (
            "the project allows no trigger image: add the image's repository to the "
            'project\'s allowed_images (e.g. "ghcr.io/acme/analytics") first'
        )
    match = _REFERENCE.fullmatch(image) if len(image) <= 1024 else None
    if match is None:
        return (
            f"{image[:200]!r} is not a container image reference such as "
            "ghcr.io/acme/analytics:pr-42 or ghcr.io/acme/analytics@sha256:<digest>"
        )
    name = match["name"]
    for prefix in allowed:
        if name == prefix or name.startswith(prefix + "/"):
            return None
    return (
        f"the repository {name!r} is not under any of the project's allowed_images "
        f"({', '.join(allowed)}); add it to the project's allowed_images or use an image "
        "from one of them"
    )


def check_allowed_images(field: str, values: list[str]) -> list[FieldError]:
    """Repository prefixes (no tag, no digest): registry and path, e.g. ghcr.io/acme."""
    if len(values) > MAX_ALLOWED_IMAGES:
        return [FieldError(field, f"at most {MAX_ALLOWED_IMAGES} repository prefixes")]
    errors = []
    for i, value in enumerate(values):
        if len(value) > 255 or not _REPOSITORY.fullmatch(value):
            errors.append(
                FieldError(
                    f"{field}[{i}]",
                    f"{value[:80]!r} is not a repository prefix: give a registry and path "
                    "without tag or digest, such as ghcr.io/acme or ghcr.io/acme/analytics",
                )
            )
    return errors


def require_writer(principal: Principal) -> None:
    if not principal.can_write:
        raise Forbidden(
            "This token has the 'viewer' role and can only read. Use a token "
            "with the 'admin' role to make changes."
        )


class ProjectService:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        outbound: OutboundPolicy,
        clock: Callable[[], datetime] = utcnow,
        paths: ProjectPaths | None = None,
    ) -> None:
        self._store = store
        self._executor = executor
        self._outbound = outbound
        self._clock = clock
        self._paths = paths

    def get(self, principal: Principal, project_id: str) -> Project:
        require_project(principal, project_id)
        project = self._store.projects.get(principal.org_id, project_id)
        if project is None:
            raise NotFound(f"No project with id {project_id!r} in your organization.")
        return project

    def list_projects(self, principal: Principal) -> list[Project]:
        found = self._store.projects.for_org(principal.org_id)
        return [p for p in found if sees_project(principal, p.id)]

    def _audit(
        self, project: Project, action: str, before: Project | None, after: Project | None
    ) -> None:
        audit.record(
            self._store,
            org_id=project.org_id,
            action=action,
            object_type="project",
            object_id=project.id,
            object_name=project.name,
            diff=audit.field_diff(before, after, ignore=("deployed", "slack_webhook_url_set")),
            project_id=project.id,
            clock=self._clock,
        )

    def create(self, principal: Principal, body: ProjectCreate) -> Project:
        require_writer(principal)
        now = self._clock()
        fields = msgspec.structs.asdict(body)
        project = Project(
            **{k: v for k, v in fields.items() if k != "slack_webhook_url"},
            id=new_id("proj"),
            org_id=principal.org_id,
            org_slug=principal.org_slug,
            slack_webhook_url=body.slack_webhook_url,
            slack_webhook_url_set=bool(body.slack_webhook_url),
            created_at=now,
            updated_at=now,
        )
        self._check(project, check_no_redacted("secret_environment", project.secret_environment))
        self._check_path(project)
        self._store.projects.save(project)
        # Every project has a default environment, the one its jobs run in unless they name
        # another: empty, so each of its fields is the project's (docs/environments.md).
        self._store.environments.create_default(project.org_id, project.id, now)
        self._audit(project, "project.create", None, project)
        return project

    def update(self, principal: Principal, project_id: str, patch: ProjectPatch) -> Project:
        require_writer(principal)
        current = self.get(principal, project_id)
        changes = patch.changes()
        if (
            "kind" in changes
            and changes["kind"] != current.kind
            and self._store.jobs.count(project_id)
        ):
            raise Conflict(
                "The project's kind cannot change while it has jobs: their commands "
                "were validated for the current kind. Delete the jobs first."
            )
        secret_errors: list[FieldError] = []
        if "secret_environment" in changes:
            changes["secret_environment"], secret_errors = merge_secrets(
                "secret_environment", current.secret_environment, changes["secret_environment"]
            )
        updated = msgspec.structs.replace(current, **changes, updated_at=self._clock())
        updated.slack_webhook_url_set = bool(updated.slack_webhook_url)
        self._check(updated, secret_errors)
        if "path" in changes:
            self._check_path(updated)
        with self._store.database.write():
            self._store.projects.save(updated)
            self._audit(updated, "project.update", current, updated)
        if updated.deployed:
            # Image, environment, resources and overrides flow into every CronJob. The change
            # is saved either way; if the cluster cannot take it now, its jobs are marked out
            # of sync and reconcile applies it.
            self._sync_jobs(updated)
        return updated

    def _check_path(self, project: Project) -> None:
        """A given path must be an existing directory in the org's folder under the
        projects root, whatever the executor: only the local executor runs in it, but a
        path pointing elsewhere is never worth storing (and launch checks it again)."""
        if project.path is not None and self._paths is not None:
            self._paths.resolve(project.org_slug, project.path)

    def _sync_jobs(self, project: Project) -> SyncReport:
        jobs = self._store.jobs.for_project(project.id)
        try:
            report = self._executor.deploy(project, jobs)
        except (ClusterError, ClusterUnavailable) as exc:
            for job in jobs:
                self._store.jobs.set_sync(job.id, "pending", exc.detail)
            raise
        return report

    def delete(self, principal: Principal, project_id: str, cascade: bool) -> None:
        require_writer(principal)
        project = self.get(principal, project_id)
        jobs = self._store.jobs.for_project(project_id)
        if jobs and not cascade:
            raise Conflict(
                f"The project has {len(jobs)} job(s). Delete them first, or repeat "
                "the request with ?cascade=true to delete the project and its jobs."
            )
        with self._store.database.write():
            self._store.projects.delete(project_id)
            self._audit(project, "project.delete", project, None)
        if project.deployed:
            # Gone from the database first; reconcile removes CronJobs left behind when the
            # cluster cannot be reached now.
            try:
                self._executor.undeploy(project, jobs)
            except (ClusterError, ClusterUnavailable) as exc:
                log.warning(
                    "could not remove the project's CronJobs now; reconcile will",
                    extra={"project_id": project_id, "error": exc.detail},
                )

    def deploy(self, principal: Principal, project_id: str) -> tuple[Project, SyncReport]:
        require_writer(principal)
        project = self.get(principal, project_id)
        if self._executor.name == "kubernetes" and self._without_image(project):
            raise Invalid(
                "The project has no image: set 'image' to the container image that "
                "holds the project (or an image on each environment its jobs run in) before "
                "deploying it to Kubernetes.",
                [FieldError("image", "required to deploy on Kubernetes")],
            )
        self._store.projects.set_deployed(project_id, True)
        project = msgspec.structs.replace(project, deployed=True)
        # Deployed stands even if the cluster cannot be reached now (503): the jobs are marked
        # out of sync and the reconcile loop creates their CronJobs when it answers.
        report = self._sync_jobs(project)
        # The Kubernetes executor records each job's state as it writes its CronJob; the
        # local one writes nothing, its scheduler reads the database: in sync from now on.
        for job in self._store.jobs.for_project(project_id):
            if job.sync_state == "not_deployed":
                self._store.jobs.set_sync(job.id, "in_sync", None)
        self._audit_deploy(project, "project.deploy", report)
        return project, report

    def _audit_deploy(self, project: Project, action: str, report: SyncReport) -> None:
        audit.record(
            self._store,
            org_id=project.org_id,
            action=action,
            object_type="project",
            object_id=project.id,
            object_name=project.name,
            diff=audit.field_diff(
                {"deployed": action != "project.deploy"},
                {"deployed": action == "project.deploy"},
            ),
            project_id=project.id,
            clock=self._clock,
        )

    def _without_image(self, project: Project) -> bool:
        """Whether some job would run without an image: the project has none and the
        environment of a job (or the default one, with no jobs yet) has none either."""
        if project.image is not None:
            return False
        environments = self._store.environments
        jobs = self._store.jobs.for_project(project.id)
        if not jobs:
            default = environments.default(project.id)
            return default is None or default.image is None
        for job in jobs:
            environment = environments.of_job(project.id, job.environment_id)
            if environment is None or environment.image is None:
                return True
        return False

    def undeploy(self, principal: Principal, project_id: str) -> tuple[Project, SyncReport]:
        require_writer(principal)
        project = self.get(principal, project_id)
        jobs = self._store.jobs.for_project(project_id)
        report = self._executor.undeploy(project, jobs)
        self._store.projects.set_deployed(project_id, False)
        for job in jobs:
            self._store.jobs.set_sync(job.id, "not_deployed", None)
        self._audit_deploy(project, "project.undeploy", report)
        return msgspec.structs.replace(project, deployed=False), report

    def _check(self, project: Project, secret_errors: list[FieldError] | None = None) -> None:
        errors = check_name("name", project.name, "Project")
        errors += secret_errors or []
        errors += check_environment("secret_environment", project.secret_environment)
        for name in sorted(set(project.secret_environment) & set(project.environment)):
            errors.append(
                FieldError(
                    f"secret_environment.{name[:40]}",
                    "also set in environment: keep a variable in one of the two",
                )
            )
        if project.kind not in PROJECT_KINDS:
            errors.append(FieldError("kind", "use 'dbt' or 'sqlmesh'"))
        errors += check_environment("environment", project.environment)
        # Secret variables reach the run's environment too: the same names are refused.
        errors += check_environment("secret_environment", project.secret_environment)
        errors += check_resources("resources", project.resources)
        errors += check_channel("slack_channel", project.slack_channel)
        errors += check_template_overrides("template_overrides", project.template_overrides)
        errors += check_text(
            "description", project.description, MAX_DESCRIPTION_LENGTH, "a description"
        )
        errors += check_image("image", project.image)
        errors += check_allowed_images("allowed_images", project.allowed_images)
        errors += check_path("path", project.path)
        errors += check_service_account("service_account", project.service_account)
        if project.slack_webhook_url:
            errors += self._outbound.check_url("slack_webhook_url", project.slack_webhook_url)
        if errors:
            raise Invalid(
                "The project has invalid fields: "
                + "; ".join(f"{e.field}: {e.message}" for e in errors),
                errors,
            )
