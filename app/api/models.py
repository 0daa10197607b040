"""dbt-native reads and actions: model history, a run's timeline, source freshness, and
retry from failure. Thin handlers over RunService (app/services/runs.py, history.py)."""

from __future__ import annotations

from litestar import Controller, get, post

from app.api.params import parse_window
from app.api.views import run_out
from app.errors import invalid
from app.models import Principal, RunOut
from app.services.history import RESOURCE_TYPES, FreshnessReport, ModelsReport, Timeline
from app.services.runs import RunService
from app.services.tokens import ACTION_OPT

DEFAULT_WINDOW = "30d"


def _resource_types(value: str) -> list[str]:
    chosen = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in RESOURCE_TYPES]
    if not chosen or unknown or len(chosen) > len(RESOURCE_TYPES):
        raise invalid(
            "resource_type",
            "use one or more of " + ", ".join(sorted(RESOURCE_TYPES)) + " separated by commas",
        )
    return list(dict.fromkeys(chosen))


class ModelHistoryController(Controller):
    path = "/api/v1"
    tags = ["models"]

    @get(
        "/projects/{project_id:str}/jobs/{job_id:str}/models",
        sync_to_thread=True,
        summary="Each model's last status, failures, p50/p95 duration and trend over a window",
    )
    def models(
        self,
        principal: Principal,
        runs: RunService,
        project_id: str,
        job_id: str,
        window: str = DEFAULT_WINDOW,
        resource_type: str = "model",
    ) -> ModelsReport:
        span = parse_window(window)
        assert span is not None
        return runs.models(
            principal, project_id, job_id, span, window, _resource_types(resource_type)
        )

    @get(
        "/projects/{project_id:str}/jobs/{job_id:str}/freshness",
        sync_to_thread=True,
        summary="Each source's newest load, age and status, from the job's latest sources.json",
    )
    def freshness(
        self, principal: Principal, runs: RunService, project_id: str, job_id: str
    ) -> FreshnessReport:
        return runs.freshness(principal, project_id, job_id)

    @get(
        "/runs/{run_id:str}/timeline",
        sync_to_thread=True,
        summary="The run's nodes with start offsets and durations (a Gantt chart's data)",
    )
    def timeline(self, principal: Principal, runs: RunService, run_id: str) -> Timeline:
        return runs.timeline(principal, run_id)

    @post(
        "/runs/{run_id:str}/retry",
        sync_to_thread=True,
        status_code=201,
        summary="Run only what failed or was skipped in this run (dbt retry)",
        opt={ACTION_OPT: "trigger"},
    )
    def retry(self, principal: Principal, runs: RunService, run_id: str) -> RunOut:
        return run_out(runs.retry(principal, run_id))
