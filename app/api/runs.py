"""/api/v1/runs: run records, stored logs, cancel and rerun."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, MediaType, get, post
from litestar.params import Parameter

from app.api.auth import AnyRequest, provide_principal
from app.api.params import parse_time
from app.api.views import RunConfig, RunList, TriggerBody, run_list, run_out
from app.errors import invalid
from app.models import Principal, RunOut
from app.services.runs import RunService
from app.services.tokens import ACTION_OPT


class RunController(Controller):
    path = "/api/v1/runs"
    tags = ["runs"]

    @get("/", sync_to_thread=True, summary="The organization's runs, newest first")
    def list_runs(
        self,
        principal: Principal,
        runs: RunService,
        project_id: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        since: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> RunList:
        page = runs.list_runs(
            principal,
            project_id=project_id,
            job_id=job_id,
            status=status,
            since=parse_time("since", since),
            cursor=cursor,
            limit=limit,
        )
        return run_list(page)

    # An indexed read: served from the event loop's read-only connection (app/store/db.py).
    @get("/{run_id:str}", sync_to_thread=False, summary="A run record")
    def get_run(self, request: AnyRequest, runs: RunService, run_id: str) -> RunOut:
        # The principal from the request, not a dependency: one dependency is resolved
        # inline, two in a task group (app/api/jobs.py's reads do the same).
        return run_out(runs.get(provide_principal(request), run_id))

    @get(
        "/{run_id:str}/config",
        sync_to_thread=True,
        summary="The configuration snapshot the run used",
    )
    def run_config(self, principal: Principal, runs: RunService, run_id: str) -> RunConfig:
        run = runs.get(principal, run_id)
        return RunConfig(
            run_id=run.id,
            job_version=run.job_version,
            config=runs.config(principal, run_id),
            environment=runs.environment_of(principal, run_id),
        )

    @get(
        "/{run_id:str}/logs",
        sync_to_thread=True,
        media_type=MediaType.TEXT,
        summary="The run's logs as plain text (live while it runs)",
    )
    def logs(
        self,
        principal: Principal,
        runs: RunService,
        run_id: str,
        tail: Annotated[int | None, Parameter(ge=0, le=1_000_000)] = None,
        since: str | None = None,
        search: Annotated[str | None, Parameter(max_length=500)] = None,
        step: Annotated[int | None, Parameter(ge=0, le=1000)] = None,
    ) -> str:
        return runs.logs(
            principal,
            run_id,
            tail=tail,
            since=parse_time("since", since),
            search=search,
            step=step,
        )

    @post(
        "/{run_id:str}/cancel",
        sync_to_thread=True,
        status_code=200,
        summary="Cancel a pending or running run",
        opt={ACTION_OPT: "trigger"},
    )
    def cancel(self, principal: Principal, runs: RunService, run_id: str) -> RunOut:
        return run_out(runs.cancel(principal, run_id))

    @post(
        "/{run_id:str}/rerun",
        sync_to_thread=True,
        status_code=201,
        summary="Run again from this run's configuration snapshot",
        opt={ACTION_OPT: "trigger"},
    )
    def rerun(
        self,
        principal: Principal,
        runs: RunService,
        run_id: str,
        data: TriggerBody | None = None,
    ) -> RunOut:
        if data is not None and data.steps is not None:
            raise invalid(
                "steps",
                "a rerun replays its run's steps; to run other steps, trigger the job with "
                'them (POST /api/v1/projects/{project}/jobs/{job}/trigger with {"steps": ...})',
            )
        if data is not None and data.image is not None:
            # A rerun replays its snapshot, image included: a different image is a new run.
            raise invalid(
                "image",
                "a rerun replays its run's snapshot, including the image it ran; to run "
                "another image, trigger the job with it (POST "
                '/api/v1/projects/{project}/jobs/{job}/trigger with {"image": ...})',
            )
        if data is not None and (data.environment_id is not None or data.environment is not None):
            # Likewise its environment: another environment is a new trigger.
            raise invalid(
                "environment",
                "a rerun replays its run's snapshot, including its environment; to run in "
                "another environment, trigger the job with it (POST "
                '/api/v1/projects/{project}/jobs/{job}/trigger with {"environment": ...})',
            )
        override = data.command_override if data else None
        return run_out(runs.rerun(principal, run_id, override))
