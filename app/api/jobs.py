"""/api/v1/projects/{id}/jobs: thin handlers over JobService and RunService."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, MediaType, Response, delete, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from app.api.auth import AnyRequest, provide_principal
from app.api.params import parse_window
from app.api.read_cache import ReadCache
from app.api.views import (
    JobList,
    RunList,
    TriggerBody,
    TriggerResult,
    VersionList,
    job_out,
    run_list,
)
from app.models import JobOut, Principal
from app.services.jobs import (
    BatchBody,
    BatchResult,
    Dependencies,
    JobCreate,
    JobPatch,
    JobService,
)
from app.services.runs import JobStatus, RunService
from app.services.tokens import ACTION_OPT


class JobController(Controller):
    path = "/api/v1/projects/{project_id:str}/jobs"
    tags = ["jobs"]

    # The two hot reads run on the event loop's thread: short indexed reads under WAL
    # through its read-only connection (app/store/db.py), no hop to a worker thread. They
    # take the principal from the request rather than as a dependency: with two
    # dependencies Litestar resolves them in a task group, two tasks per request.
    @get(
        "/",
        sync_to_thread=False,
        summary="List a project's jobs",
        responses={200: ResponseSpec(data_container=JobList, description="The project's jobs")},
    )
    def list_jobs(self, request: AnyRequest, jobs: JobService, project_id: str) -> Response[bytes]:
        # The store renders the JSON (the hot read path); tests compare it with JobList.
        # Kept while the database is unchanged (app/api/read_cache.py).
        principal = provide_principal(request)
        cache: ReadCache = request.app.state.read_cache
        body = cache.get(
            ("jobs", principal.org_id, project_id),
            lambda: jobs.list_jobs_json(principal, project_id),
        )
        return Response(body, media_type=MediaType.JSON)

    @post("/", sync_to_thread=True, summary="Create a job", opt={ACTION_OPT: "write"})
    def create_job(
        self, principal: Principal, jobs: JobService, project_id: str, data: JobCreate
    ) -> JobOut:
        return job_out(jobs.create(principal, project_id, data))

    @post(
        "/batch-enable",
        sync_to_thread=True,
        status_code=200,
        summary="Enable many jobs of the project at once",
        opt={ACTION_OPT: "write"},
    )
    def batch_enable(
        self, principal: Principal, jobs: JobService, project_id: str, data: BatchBody
    ) -> BatchResult:
        return jobs.set_enabled(principal, project_id, data.job_ids, True)

    @post(
        "/batch-disable",
        sync_to_thread=True,
        status_code=200,
        summary="Disable many jobs of the project at once",
        opt={ACTION_OPT: "write"},
    )
    def batch_disable(
        self, principal: Principal, jobs: JobService, project_id: str, data: BatchBody
    ) -> BatchResult:
        return jobs.set_enabled(principal, project_id, data.job_ids, False)

    @get(
        "/{job_id:str}/dependencies",
        sync_to_thread=True,
        summary="The job's upstream and downstream jobs",
    )
    def job_dependencies(
        self, principal: Principal, jobs: JobService, project_id: str, job_id: str
    ) -> Dependencies:
        return jobs.dependencies(principal, project_id, job_id)

    @get("/{job_id:str}", sync_to_thread=False, summary="Read a job")
    def get_job(
        self, request: AnyRequest, jobs: JobService, project_id: str, job_id: str
    ) -> JobOut:
        return job_out(jobs.get(provide_principal(request), project_id, job_id))

    @put(
        "/{job_id:str}",
        sync_to_thread=True,
        summary="Update a job (only the supplied fields change)",
        opt={ACTION_OPT: "write"},
    )
    def update_job(
        self,
        principal: Principal,
        jobs: JobService,
        project_id: str,
        job_id: str,
        data: JobPatch,
    ) -> JobOut:
        return job_out(jobs.update(principal, project_id, job_id, data))

    @delete(
        "/{job_id:str}",
        sync_to_thread=True,
        status_code=204,
        summary="Delete a job",
        opt={ACTION_OPT: "write"},
    )
    def delete_job(
        self, principal: Principal, jobs: JobService, project_id: str, job_id: str
    ) -> None:
        jobs.delete(principal, project_id, job_id)

    @get(
        "/{job_id:str}/versions",
        sync_to_thread=True,
        summary="The job's configuration versions, newest first",
    )
    def versions(
        self, principal: Principal, jobs: JobService, project_id: str, job_id: str
    ) -> VersionList:
        versions = jobs.versions(principal, project_id, job_id)
        return VersionList(versions, len(versions))

    @post(
        "/{job_id:str}/trigger",
        sync_to_thread=True,
        status_code=201,
        summary="Start a one-off run of the job (Idempotency-Key header supported)",
        opt={ACTION_OPT: "trigger"},
    )
    def trigger(
        self,
        principal: Principal,
        runs: RunService,
        project_id: str,
        job_id: str,
        data: TriggerBody | None = None,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key")] = None,
    ) -> Response[TriggerResult]:
        override = data.command_override if data else None
        image = data.image if data else None
        result = runs.trigger(
            principal,
            project_id,
            job_id,
            override,
            idempotency_key,
            image,
            environment_id=data.environment_id if data else None,
            environment_name=data.environment if data else None,
            steps=data.steps if data else None,
        )
        run = result.run
        if result.replayed:
            replay = TriggerResult(
                job_run_id=run.id,
                job_name=run.job_name,
                status=run.status,
                message="This Idempotency-Key already started this run",
            )
            return Response(replay, status_code=200)
        queued = run.status == "queued"  # concurrency_policy Queue or the org's cap
        body = TriggerResult(
            job_run_id=run.id,
            job_name=run.job_name,
            status="queued" if queued else "pending",
            message=(
                f"Run queued at place {run.queue_position}: it starts when the runs before "
                "it end (docs/queues.md)"
                if queued
                else "Run triggered successfully"
            ),
            queue_position=run.queue_position if queued else None,
        )
        return Response(body, status_code=201)

    @get("/{job_id:str}/runs", sync_to_thread=True, summary="The job's runs, newest first")
    def runs(
        self,
        principal: Principal,
        runs: RunService,
        project_id: str,
        job_id: str,
        status: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> RunList:
        page = runs.list_runs(
            principal,
            project_id=project_id,
            job_id=job_id,
            status=status,
            cursor=cursor,
            limit=limit,
        )
        return run_list(page)

    @get(
        "/{job_id:str}/status",
        sync_to_thread=True,
        summary="Last run, counts by status, next fire time; ?window=7d adds statistics",
    )
    def status(
        self,
        principal: Principal,
        runs: RunService,
        project_id: str,
        job_id: str,
        window: str | None = None,
    ) -> JobStatus:
        span = parse_window(window)
        return runs.status(principal, project_id, job_id, span, window or "")
