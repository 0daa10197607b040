"""Kubernetes views: a job's CronJob manifest (dry run) and the live jobs API.

The manifest works with either executor: rendering needs no cluster. The live jobs API reads
the cluster, so a runyard running jobs as local processes answers it with 409 (the request
conflicts with how this runyard is set up; a 4xx, since retrying cannot help and nothing is
broken) and points to the run records (``/api/v1/runs``), which exist with both executors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from litestar import Controller, MediaType, Response, get
from litestar.params import Parameter

from app.api.auth import ORG_WIDE
from app.errors import Conflict, RunyardError, invalid
from app.executors.k8s.executor import KubernetesFeatures
from app.executors.k8s.live import LIVE_STATUSES, LiveJobDetail, LiveJobList, LiveJobs
from app.executors.k8s.render import Manifests, redact_env
from app.models import Principal
from app.services.jobs import JobService
from app.store.artifacts import UPLOAD_TOKEN_ENV


class KubernetesOnly(RunyardError):
    status = 409
    title = "Not available with the local executor"
    slug = "kubernetes-only"


def _live(kubernetes: KubernetesFeatures | None) -> LiveJobs:
    if kubernetes is None:
        raise KubernetesOnly(
            "This runyard runs jobs as local processes (RUNYARD_EXECUTOR=local), so there are "
            "no Kubernetes Job objects to show. Use /api/v1/runs and "
            "/api/v1/runs/{run_id}/logs for runs and their logs."
        )
    return kubernetes.live


@get(
    "/api/v1/projects/{project_id:str}/jobs/{job_id:str}/manifest",
    sync_to_thread=True,
    tags=["jobs"],
    summary="The job's CronJob exactly as runyard would apply it (dry run; ?format=yaml)",
)
def job_manifest(
    principal: Principal,
    jobs: JobService,
    manifests: Manifests,
    project_id: str,
    job_id: str,
    format: Literal["json", "yaml"] = "json",
) -> Response[Any]:
    project = jobs.project(principal, project_id)
    job = jobs.get(principal, project_id, job_id)
    manifest = manifests.cronjob(project, job)
    if manifest is not None:
        # Applied with the secret variables' values; shown with them redacted. References
        # to Kubernetes Secrets (secretKeyRef, envFrom) hold no value and show as they are.
        environment = manifests.environment_of(project, job)
        manifest = redact_env(
            manifest,
            [
                *project.secret_environment,
                *(environment.secret_environment if environment else ()),
                *job.secret_environment,
                UPLOAD_TOKEN_ENV,
            ],
        )
    if manifest is None:
        raise Conflict(
            f"Job {job.name!r} has no schedule, so it has no CronJob: it runs only when "
            f"triggered (POST /api/v1/projects/{project_id}/jobs/{job_id}/trigger), as a "
            "one-off Kubernetes Job. Set a schedule to give it a CronJob."
        )
    if format == "yaml":
        return Response(yaml.safe_dump(manifest, sort_keys=False), media_type="application/yaml")
    return Response(manifest, media_type=MediaType.JSON)


class LiveJobController(Controller):
    path = "/api/v1/jobs"
    tags = ["kubernetes jobs"]
    # Jobs by Kubernetes name across the org's namespace: not for a project-scoped token.
    opt = {ORG_WIDE: True}

    @get(
        "/",
        sync_to_thread=True,
        summary="runyard's Kubernetes Jobs in your organization's namespace, newest first",
    )
    def list_jobs(
        self,
        principal: Principal,
        kubernetes: KubernetesFeatures | None,
        status: str | None = None,
        project: Annotated[str | None, Parameter(max_length=63)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> LiveJobList:
        if status is not None and status not in LIVE_STATUSES:
            raise invalid("status", "use one of " + ", ".join(LIVE_STATUSES))
        return _live(kubernetes).list_jobs(principal, status=status, project=project, limit=limit)

    @get("/{job_name:str}", sync_to_thread=True, summary="One Kubernetes Job, with its pods")
    def get_job(
        self, principal: Principal, kubernetes: KubernetesFeatures | None, job_name: str
    ) -> LiveJobDetail:
        return _live(kubernetes).get_job(principal, job_name)

    @get(
        "/{job_name:str}/logs",
        sync_to_thread=True,
        media_type=MediaType.TEXT,
        summary="The last lines of the logs of the Job's pods, as plain text",
    )
    def logs(
        self,
        principal: Principal,
        kubernetes: KubernetesFeatures | None,
        job_name: str,
        tail: Annotated[int, Parameter(ge=0, le=100_000)] = 100,
    ) -> str:
        return _live(kubernetes).logs(principal, job_name, tail)
