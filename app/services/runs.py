"""Runs: trigger, rerun, cancel, read, logs and job status.

Every way a run starts (manual, scheduled, rerun, dependency) goes through ``start_run``:
it freezes the configuration into the run's snapshot, applies the job's concurrency policy
atomically with the insert, and hands the run to the executor.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import shlex
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

from app import metrics
from app.cron import next_fire
from app.engines.targets import with_target
from app.errors import (
    ClusterError,
    ClusterUnavailable,
    Conflict,
    Invalid,
    NotFound,
    RateLimited,
    RunyardError,
    invalid,
)
from app.ids import new_id, utcnow
from app.models import (
    OPEN_STATUSES,
    RETRYABLE_DBT_COMMANDS,
    RUN_STATUSES,
    Environment,
    Job,
    JobConfig,
    Principal,
    Project,
    Run,
    RunEnvironment,
    RunRecord,
    RunSnapshot,
    RunState,
    RunStep,
    Step,
    StepPlan,
    TriggeredBy,
    steps_summary,
)
from app.naming import cronjob_name, run_job_name
from app.ports import Executor, Outcome
from app.services import audit
from app.services.commands import CommandChecker
from app.services.cursors import CursorCodec
from app.services.environments import run_environment
from app.services.history import (
    RUN_RESULTS,
    FreshnessReport,
    ModelHistory,
    ModelsReport,
    Timeline,
    retried_command,
    retryable_nodes,
)
from app.services.projects import image_refusal, require_writer
from app.services.queue import RunQueue
from app.services.steps import plan_steps, replan
from app.services.tokens import require_project, require_run_in_scope
from app.store import RunPage, Store
from app.store.jobs import config_of
from app.tracker import RunListener, RunTracker
from validators import ParsedCommand

log = logging.getLogger("runyard.runs")


class LaunchFailed(RunyardError):
    """The executor could not start a recorded run for a reason of its own (not a runyard
    error): the run is recorded as failed, and the caller hears why."""

    status = 422
    title = "Run could not start"
    slug = "launch-failed"


def _launch_reason(exc: Exception) -> str:
    if isinstance(exc, ValueError) and "null" in str(exc).lower():
        return (
            "the project's path, the environment or the command contains a NUL byte, "
            "which no process can be given"
        )
    return f"{exc} ({type(exc).__name__})"[:1000]


IDEMPOTENCY_WINDOW = timedelta(hours=24)


class Triggered(msgspec.Struct):
    run: Run
    replayed: bool


class _Replayed(Exception):
    """Internal: an idempotency key matched an earlier run."""

    def __init__(self, run: Run) -> None:
        super().__init__(run.id)
        self.run = run


def _request_hash(
    command_override: str | None,
    image: str | None = None,
    environment_id: str | None = None,
    steps: list[Step] | None = None,
) -> str:
    body: dict[str, object] = {"command_override": command_override}
    if image is not None:  # keys used before triggers had an image keep their hash
        body["image"] = image
    if environment_id is not None:
        body["environment_id"] = environment_id
    if steps is not None:
        body["steps"] = steps
    return hashlib.sha256(msgspec.json.encode(body)).hexdigest()


class WindowStats(msgspec.Struct, kw_only=True):
    window: str
    runs: int
    success_rate: float | None
    avg_duration_seconds: float | None
    p95_duration_seconds: float | None


class JobStatus(msgspec.Struct, kw_only=True):
    job_id: str
    job_name: str
    enabled: bool
    deployed: bool
    schedule: str | None
    timezone: str
    next_run_time: datetime | None
    last_run: Run | None
    counts: dict[str, int]
    total_runs: int
    active_runs: int
    stats: WindowStats | None = None
    queued_runs: int = 0


class RunService:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        tracker: RunTracker,
        commands: CommandChecker,
        namespace_for: Callable[[str], str],
        clock: Callable[[], datetime] = utcnow,
        *,
        cursor_key: bytes | None = None,
        queue: RunQueue | None = None,
    ) -> None:
        self._store = store
        # Queued runs (docs/queues.md): started by the queue through _launch_queued; woken
        # when any run ends, since that may free a job's or an org's place.
        self.queue = queue or RunQueue(store, default_cap=8, clock=clock)
        self.queue.launch = self._launch_queued
        tracker.on_finished.append(lambda _record: self.queue.wake())
        self._cursors = CursorCodec(cursor_key)
        # Run metrics label runs with their org's slug, which only the store knows.
        metrics.ORG_NAMES.bind(store.orgs.slug_of)
        self._executor = executor
        self._tracker = tracker
        self._commands = commands
        self._namespace_for = namespace_for
        self._clock = clock
        tracker.on_finished.append(self._start_dependants)
        # Model history, timelines and freshness (app/services/history.py): a run's node
        # results are kept when it finishes.
        self.history = ModelHistory(store)
        # retry_refusal's answers for dbt runs by (run id, sha256 of its run_results.json):
        # reading a 2,000-node run_results.json costs more than rendering the whole page.
        self._refusals: dict[tuple[str, str], str | None] = {}
        tracker.on_finished.append(self.history.run_finished)

    # --- starting runs ------------------------------------------------------------------

    def trigger(
        self,
        principal: Principal,
        project_id: str,
        job_id: str,
        command_override: str | None = None,
        idempotency_key: str | None = None,
        image: str | None = None,
        environment_id: str | None = None,
        environment_name: str | None = None,
        steps: list[Step] | None = None,
    ) -> Triggered:
        """A manual run. With an idempotency key, the same key within 24 hours returns the
        run it started instead of starting another; reusing it for another body is a 422.
        ``environment_id`` or ``environment_name``: run once in another environment of the
        project, when the job allows it (allow_environment_override)."""
        require_writer(principal)
        project = self._project(principal, project_id)
        job = self._store.jobs.get(principal.org_id, project_id, job_id)
        if job is None:
            raise NotFound(f"No job with id {job_id!r} in project {project_id!r}.")
        environment = self._one_off_environment(project, job, environment_id, environment_name)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise invalid("Idempotency-Key", "use 1 to 255 characters")
        if steps is not None and command_override is not None:
            raise invalid(
                "steps",
                "give either command_override (one command) or steps (commands run in "
                "order), not both",
            )
        try:
            run = self.start_run(
                project,
                job,
                triggered_by="manual",
                command_override=command_override,
                idempotency_key=idempotency_key,
                image=image,
                environment=environment,
                steps_override=steps,
            )
        except _Replayed as replay:
            return Triggered(replay.run, replayed=True)
        assert run is not None  # manual runs are refused with an error, never skipped
        self._audit_run(
            run,
            "run.trigger",
            command_override=command_override,
            image=image,
            environment=environment.name if environment is not None else None,
        )
        return Triggered(run, replayed=False)

    def _audit_run(self, run: RunRecord, action: str, **details: object) -> None:
        """Recorded once the run exists (its launch is not a database write to join)."""
        given = {name: value for name, value in details.items() if value is not None}
        audit.record(
            self._store,
            org_id=run.org_id,
            action=action,
            object_type="run",
            object_id=run.id,
            object_name=run.job_name or "",
            diff=audit.field_diff(None, given) if given else None,
            project_id=run.project_id,
            clock=self._clock,
        )

    def rerun(
        self, principal: Principal, run_id: str, command_override: str | None = None
    ) -> RunRecord:
        require_writer(principal)
        old = self._store.runs.record(run_id)
        if old is None or old.org_id != principal.org_id:
            raise NotFound(f"No run with id {run_id!r} in your organization.")
        require_run_in_scope(principal, run_id, old.project_id)
        project = self._store.projects.get(principal.org_id, old.project_id)
        if project is None:
            raise Conflict("The run's project was deleted, so it cannot run again.")
        run = self.start_run(
            project,
            None,
            triggered_by="rerun",
            snapshot=old.snapshot,
            job_id=old.job_id,
            command_override=command_override,
            replay_command=(
                None
                if command_override is not None or old.snapshot.steps
                else self._ran(project, old)
            ),
            replay_steps=old.snapshot.steps if command_override is None else None,
            rerun_of=old.id,
        )
        assert run is not None
        self._audit_run(run, "run.rerun", rerun_of=old.id, command_override=command_override)
        return run

    def start_run(
        self,
        project: Project,
        job: Job | None,
        *,
        triggered_by: TriggeredBy,
        command_override: str | None = None,
        snapshot: RunSnapshot | None = None,
        replay_command: str | None = None,
        job_id: str | None = None,
        rerun_of: str | None = None,
        upstream_run_id: str | None = None,
        scheduled_for: datetime | None = None,
        job_name: str | None = None,
        suspended: bool = False,
        idempotency_key: str | None = None,
        image: str | None = None,
        retry_of: str | None = None,
        state: RunState | None = None,
        environment: Environment | None = None,
        steps_override: list[Step] | None = None,
        replay_steps: list[StepPlan] | None = None,
    ) -> RunRecord | None:
        """Record and launch a run. Returns None when a scheduled or dependency run is
        skipped (Forbid with a run active, or the slot already has a run).

        What runs is checked against today's command policy whatever its origin (the job's
        command, an override, or a rerun's ``replay_command``), and the record's ``command``
        is that text, so the run shows what it ran."""
        now = self._clock()
        if snapshot is None:
            assert job is not None
            snapshot = self._snapshot(project, job, environment)
        config = snapshot.job
        plans: list[StepPlan] = []
        if steps_override is not None:
            plans = plan_steps(self._commands, project.kind, steps_override)
        elif command_override is None and replay_command is None:
            if replay_steps:
                plans = replan(self._commands, project.kind, replay_steps)
            elif config.steps and replay_steps is None:
                plans = plan_steps(self._commands, project.kind, config.steps)
        if plans:
            # A run of steps (docs/steps.md): its record's command is the steps' commands
            # in order; ``argv`` and ``parsed`` are the first step's.
            command = steps_summary(plans)
            parsed = self._commands.parse(project.kind, plans[0].command)
        elif command_override is not None:
            command = command_override
            parsed = self._commands.parse(project.kind, command_override, "command_override")
        elif replay_command is not None:
            command = replay_command
            try:
                parsed = self._commands.parse(project.kind, replay_command)
            except Invalid as refused:
                raise Invalid(
                    f"The run's command ({replay_command}) is not allowed by the current "
                    f"command policy, so it was not run again. {refused.detail}",
                    refused.errors,
                ) from None
        else:
            command = config.command
            parsed = self._commands.parse(project.kind, command)
        parsed = self._targeted(project, snapshot, parsed)
        # Each step runs against the environment's target too (docs/environments.md).
        plans = [
            msgspec.structs.replace(
                plan,
                argv=list(
                    self._targeted(
                        project, snapshot, self._commands.parse(project.kind, plan.command)
                    ).argv
                ),
            )
            for plan in plans
        ]
        snapshot = msgspec.structs.replace(
            snapshot,
            argv=list(parsed.argv),
            steps=plans,
            image_override=self._image(project, image, snapshot.image_override),
            # A run of steps starts with no dbt state: its jobs do not defer, and its
            # retry replays steps rather than dbt retry (docs/steps.md).
            state=None
            if plans
            else self._state(
                project,
                snapshot,
                parsed,
                state,
                replayed=replay_command is not None,
                cluster_made=job_name is not None,
            ),
        )
        parsed_type = "steps" if plans else parsed.subcommand
        namespace = (
            self._namespace_for(project.org_slug) if self._executor.name == ("kubernetes") else None
        )
        record = RunRecord(
            id=new_id("run"),
            org_id=project.org_id,
            project_id=project.id,
            job_id=job.id if job else (job_id or ""),
            job_name=job_name or run_job_name(project.name, config.name, now),
            cronjob_name=cronjob_name(project.name, config.name),
            namespace=namespace,
            job_type=parsed_type,
            status="pending",
            start_time=None,
            end_time=None,
            duration_seconds=None,
            triggered_by=triggered_by,
            command=command,
            job_version=snapshot.job_version,
            rerun_of=rerun_of,
            upstream_run_id=upstream_run_id,
            retry_of=retry_of,
            executor=self._executor.name,
            scheduled_for=scheduled_for,
            created_at=now,
            updated_at=now,
            snapshot=snapshot,
            idempotency_key=idempotency_key,
            request_hash=(
                _request_hash(
                    command_override,
                    image,
                    environment.id if environment else None,
                    steps_override,
                )
                if idempotency_key
                else None
            ),
            # A run of steps shows its steps, pending, from the start (docs/steps.md).
            steps=[
                RunStep(index=i, name=p.name, command=p.command, run_on_failure=p.run_on_failure)
                for i, p in enumerate(plans)
            ],
        )
        policy = config.concurrency_policy
        # A Job the cluster created (job_name) runs whatever runyard records: Forbid cannot
        # stop it (a CronJob does not see manual runs), so it still gets its run.
        forbid = policy == "Forbid" and job_name is None
        # Whether runyard decides when the run starts: always, except for a Job the cluster
        # created running (a CronJob rendered before scheduled Jobs started suspended).
        held = job_name is None or suspended
        if job_name is None:  # a Job the cluster already created is recorded, never refused
            try:
                self._executor.admit(project.org_id)
            except RateLimited:
                pass  # the org is at its cap: the run queues (the store decides, atomically)
            except RunyardError:
                if triggered_by in ("manual", "rerun", "retry"):
                    raise  # the caller hears why; nothing is recorded
                log.info(
                    "run skipped: the organization cannot start another run now",
                    extra={"job_id": record.job_id, "triggered_by": triggered_by},
                )
                return None
        admission = self._store.runs.insert_exclusive(
            record,
            forbid=forbid,
            replay_since=now - IDEMPOTENCY_WINDOW if idempotency_key else None,
            queue=policy == "Queue" and held,
            cap=self.queue.cap_of(project.org_id) if held else None,
        )
        if admission.replay is not None:
            if admission.replay_hash != record.request_hash:
                raise invalid(
                    "Idempotency-Key",
                    "this key was already used within 24 hours "
                    "for a trigger with a different body; use a new key",
                )
            raise _Replayed(admission.replay)
        inserted, active = admission.inserted, admission.active
        if not inserted and active and forbid:
            if triggered_by in ("manual", "rerun", "retry"):
                raise Conflict(
                    f"Run {active[0].id} of job {config.name!r} is still {active[0].status} and "
                    "the job's concurrency_policy is Forbid. Wait for it to finish, cancel it "
                    f"(POST /api/v1/runs/{active[0].id}/cancel), or set concurrency_policy to "
                    "Queue (wait in line), Allow or Replace."
                )
            log.info(
                "run skipped: another run of the job is active (Forbid)",
                extra={"job_id": record.job_id, "active_run_id": active[0].id},
            )
            return None
        if not inserted:
            if scheduled_for is not None or job_name is not None:
                return None  # this slot or this Kubernetes Job already has its run
            # Two runs of one job in the same second on Kubernetes: make the name unique
            # with a random suffix; a few tries, as dozens of triggers in one second can
            # draw the same four hex digits.
            for _ in range(5):
                record.job_name = run_job_name(project.name, config.name, now, secrets.token_hex(2))
                record.status = "pending"  # the queue decides again (insert_exclusive)
                admission = self._store.runs.insert_exclusive(
                    record,
                    forbid=False,
                    queue=policy == "Queue",
                    cap=self.queue.cap_of(project.org_id),
                )
                if admission.inserted:
                    break
            else:
                raise Conflict("Too many runs of this job started at once; try again.")
        if not held:  # the cluster started it: only replace the older runs
            if policy == "Replace":
                for other in active:
                    self._cancel_record(other.id, "replaced by run " + record.id)
            return record
        if admission.queued:
            if policy == "Replace":
                for other in active:
                    self._cancel_record(other.id, "replaced by run " + record.id)
            log.info(
                "run queued",
                extra={"run_id": record.id, "job_id": record.job_id, "policy": policy},
            )
            self.queue.wake()
            return self._store.runs.record(record.id) or record
        try:
            if policy == "Replace":
                for other in active:
                    self._cancel_record(other.id, "replaced by run " + record.id)
            self._executor.launch(record)
        except RateLimited:
            # The executor's count of processes lags the database for a moment after a run
            # ends: the run waits in the queue instead of being refused.
            self._store.runs.requeue(record.id, self._clock())
            self.queue.wake()
            return self._store.runs.record(record.id) or record
        except Exception as exc:
            # Whatever went wrong, the run must not stay pending: under Forbid a pending run
            # would refuse every later trigger of the job until a restart.
            raise self._not_started(record, exc) from None
        return record

    def _launch_queued(self, record: RunRecord) -> None:
        """Start a run the queue claimed (now pending). RateLimited goes back to the queue,
        which puts the run back in line; any other failure records it as failed."""
        try:
            self._executor.launch(record)
        except RateLimited:
            raise
        except Exception as exc:
            self._not_started(record, exc)

    def _not_started(self, record: RunRecord, exc: Exception) -> RunyardError:
        """End a run that could not start as failed; the error to answer with."""
        if isinstance(exc, RunyardError):
            reason, answer = exc.detail, exc
        else:
            log.error("a run could not start", extra={"run_id": record.id}, exc_info=exc)
            reason = _launch_reason(exc)
            answer = LaunchFailed(
                f"Run {record.id} could not start: {reason}. It is recorded as failed. Fix "
                "the project or job configuration and trigger it again."
            )
        try:
            self._tracker.finished(
                record.id,
                Outcome(
                    status="failed",
                    end_time=self._clock(),
                    error=f"runyard could not start the run: {reason}",
                ),
            )
        except Exception:
            log.exception(
                "could not record a run that failed to start", extra={"run_id": record.id}
            )
        return answer

    # --- retry from failure, deferral, images -------------------------------------------

    def retry(self, principal: Principal, run_id: str) -> RunRecord:
        """A run of only what failed or was skipped in ``run_id``: for dbt, ``dbt retry``
        given that run's stored run_results.json (``--state``); for SQLMesh, the same
        command again (SQLMesh's state knows which intervals are done and runs only the
        missing ones). A run with nothing to retry is a 409 saying why."""
        require_writer(principal)
        old = self._store.runs.record(run_id)
        if old is None or old.org_id != principal.org_id:
            raise NotFound(f"No run with id {run_id!r} in your organization.")
        require_run_in_scope(principal, run_id, old.project_id)
        if not old.is_terminal:
            raise Conflict(
                f"Run {run_id} is still {old.status}; retry it once it has ended, or "
                f"cancel it first (POST /api/v1/runs/{run_id}/cancel)."
            )
        if old.status == "success":
            raise Conflict(f"Run {run_id} succeeded: nothing failed, so there is nothing to retry.")
        project = self._store.projects.get(principal.org_id, old.project_id)
        if project is None:
            raise Conflict("The run's project was deleted, so it cannot run again.")
        replay_steps: list[StepPlan] | None = None
        replay: str | None
        if old.snapshot.steps:
            # A run of steps is retried from the step that failed it, that step as it
            # was written (not dbt retry: a later step, such as docs generate, may have
            # replaced the run_results.json dbt retry would need). docs/steps.md.
            replay, state = None, None
            first = next(
                (s.index for s in old.steps if s.status in ("failed", "timed_out", "cancelled")),
                0,
            )
            replay_steps = old.snapshot.steps[first:] or old.snapshot.steps
        elif old.snapshot.project_kind == "sqlmesh":
            replay, state = self._ran(project, old), None
        else:
            replay, state = "dbt retry", self._retry_state(old)
        run = self.start_run(
            project,
            None,
            triggered_by="retry",
            snapshot=old.snapshot,
            job_id=old.job_id,
            replay_command=replay,
            replay_steps=replay_steps,
            retry_of=old.id,
            state=state,
        )
        assert run is not None
        self._audit_run(run, "run.retry", retry_of=old.id)
        return run

    def retry_refusal(self, principal: Principal, run_id: str) -> str | None:
        """Why ``retry`` would refuse this run (its 409's message), or None when it would
        start one; checks what ``retry`` checks and starts nothing (the web UI offers the
        button only where it applies)."""
        old = self._store.runs.record(run_id)
        if old is None or old.org_id != principal.org_id:
            raise NotFound(f"No run with id {run_id!r} in your organization.")
        require_run_in_scope(principal, run_id, old.project_id)
        if not old.is_terminal:
            return f"Run {run_id} is still {old.status}."
        if old.status == "success":
            return f"Run {run_id} succeeded: nothing failed, so there is nothing to retry."
        if old.snapshot.project_kind == "sqlmesh" or old.snapshot.steps:
            return None  # a run of steps is retried from its failed step (docs/steps.md)
        info = self._store.artifacts.info(old.id, RUN_RESULTS)
        key = (old.id, info.sha256) if info else None
        if key is not None and key in self._refusals:
            return self._refusals[key]
        try:
            self._retry_state(old)
            answer = None
        except Conflict as exc:
            answer = exc.detail
        if key is not None:
            if len(self._refusals) > 1000:
                self._refusals.clear()
            self._refusals[key] = answer
        return answer

    def _retry_state(self, old: RunRecord) -> RunState:
        raw = self._store.artifacts.read(old.id, RUN_RESULTS)
        if raw is None:
            raise Conflict(
                f"Run {old.id} has no run_results.json, so dbt cannot tell what to retry: dbt "
                "stopped before running any node (a compile or connection error), or the "
                f"artifacts never arrived. Run it again from the start instead (POST "
                f"/api/v1/runs/{old.id}/rerun)."
            )
        command = retried_command(raw)
        if command not in RETRYABLE_DBT_COMMANDS:
            raise Conflict(
                f"Run {old.id} ran dbt {command or 'an unknown command'}, which dbt retry "
                "does not repeat here; retry covers "
                + ", ".join(sorted(RETRYABLE_DBT_COMMANDS))
                + f". Run it again instead (POST /api/v1/runs/{old.id}/rerun)."
            )
        nodes = retryable_nodes(raw)
        if nodes is None:
            raise Conflict(
                f"Run {old.id}'s run_results.json is not one dbt wrote, so it cannot be "
                f"retried; run it again from the start (POST /api/v1/runs/{old.id}/rerun)."
            )
        if not nodes:
            raise Conflict(
                f"Run {old.id} has nothing to retry: its run_results.json lists no node that "
                "failed or was skipped (it failed outside its nodes, e.g. a hook or the "
                f"timeout). Run it again from the start (POST /api/v1/runs/{old.id}/rerun)."
            )
        previous = old.snapshot.state
        return RunState(
            retry_run_id=old.id,
            # A retry of a deferred run defers to what the run deferred to.
            defer_run_id=previous.defer_run_id if previous else None,
            defer_job_id=previous.defer_job_id if previous else None,
        )

    def _state(
        self,
        project: Project,
        snapshot: RunSnapshot,
        parsed: ParsedCommand,
        given: RunState | None,
        *,
        replayed: bool,
        cluster_made: bool = False,
    ) -> RunState | None:
        """The dbt state a run starts with: a retry's (given), a rerun of a retry's (the
        same again), or a deferring job's (its target's latest manifest). The executor
        hands it to the run (local: a folder; Kubernetes: the pod's launcher downloads it
        with the run's credential, serving exactly what is recorded here).

        ``cluster_made``: a Job a CronJob already started is recorded, never refused; its
        pod asks for the deferred-to manifest, so the state is recorded when there is one
        (without one, the pod hears why and the run fails)."""
        if cluster_made:
            try:
                return self._defer_state(project, snapshot.job, parsed)
            except RunyardError:
                return None
        state = given
        if state is None and replayed and snapshot.state and snapshot.state.retry_run_id:
            state = snapshot.state
        if state is None:
            state = self._defer_state(project, snapshot.job, parsed)
        return state

    def _defer_state(
        self, project: Project, config: JobConfig, parsed: ParsedCommand
    ) -> RunState | None:
        """The state a run of a deferring job starts with: the manifest of the newest
        successful run of the job it defers to."""
        if not config.defer_to_job_id or project.kind != "dbt":
            return None
        if "--state" in parsed.flags or "--defer-state" in parsed.flags:
            raise invalid(
                "command",
                "the job defers to another job (defer_to_job_id), so runyard gives dbt "
                "--defer --state itself; remove --state and --defer-state from the command",
            )
        found = self._store.artifacts.latest_successful_run(config.defer_to_job_id, "manifest.json")
        if found is None:
            raise Conflict(
                f"Job {config.name!r} defers to job {config.defer_to_job_id}, which has no "
                "successful run with a manifest.json yet. Run that job first: its successful "
                "runs keep the manifest this job compares against."
            )
        return RunState(defer_run_id=found, defer_job_id=config.defer_to_job_id)

    def _image(self, project: Project, image: str | None, previous: str | None) -> str | None:
        """A trigger's image, or a rerun's earlier one, checked against the project's
        allowed_images as they are now."""
        chosen = image if image is not None else previous
        if chosen is None:
            return None
        if self._executor.name != "kubernetes":
            raise invalid(
                "image",
                "only runs on Kubernetes use a container image; this runyard runs local "
                "processes in the project's path. Leave image out.",
            )
        refusal = image_refusal(project.allowed_images, chosen)
        if refusal:
            raise invalid("image", refusal)
        return chosen

    # --- model history, timeline, freshness -----------------------------------------------

    def _job_of(self, principal: Principal, project_id: str, job_id: str) -> Job:
        self._project(principal, project_id)
        job = self._store.jobs.get(principal.org_id, project_id, job_id)
        if job is None:
            raise NotFound(f"No job with id {job_id!r} in project {project_id!r}.")
        return job

    def models(
        self,
        principal: Principal,
        project_id: str,
        job_id: str,
        window: timedelta,
        window_text: str,
        resource_types: list[str],
    ) -> ModelsReport:
        job = self._job_of(principal, project_id, job_id)
        return self.history.models(job.id, window, window_text, resource_types, self._clock())

    def timeline(self, principal: Principal, run_id: str) -> Timeline:
        return self.history.timeline(self.get(principal, run_id))

    def freshness(self, principal: Principal, project_id: str, job_id: str) -> FreshnessReport:
        job = self._job_of(principal, project_id, job_id)
        return self.history.freshness(job.id, self._clock())

    def _ran(self, project: Project, old: RunRecord) -> str:
        """The command text of what an earlier run ran: its recorded command when that
        still means the same argument list, else the argument list quoted for a shell
        (runs recorded before overrides were kept in ``command``)."""
        try:
            parsed = self._commands.parse(project.kind, old.command)
            if list(self._targeted(project, old.snapshot, parsed).argv) == old.snapshot.argv:
                return old.command
        except Invalid:
            pass
        return shlex.join(old.snapshot.argv)

    def _targeted(
        self, project: Project, snapshot: RunSnapshot, parsed: ParsedCommand
    ) -> ParsedCommand:
        """The command with its environment's target and gateway (engines/targets.py)."""
        env = snapshot.environment
        if env is None:
            return parsed
        return with_target(self._commands, project.kind, parsed, env.target, env.gateway, env.name)

    def _one_off_environment(
        self,
        project: Project,
        job: Job,
        environment_id: str | None,
        environment_name: str | None,
    ) -> Environment | None:
        """The environment a trigger names, when it may run the job there; None: the job's
        own. Another project's environment is as unknown as another org's (404)."""
        if environment_id is None and environment_name is None:
            return None
        repo = self._store.environments
        if environment_id is not None:
            found = repo.get(project.org_id, project.id, environment_id)
            if found is not None and environment_name not in (None, found.name):
                raise invalid(
                    "environment",
                    f"environment {environment_id!r} is named {found.name!r}, not "
                    f"{environment_name!r}: give one of the two",
                )
        else:
            assert environment_name is not None
            found = repo.by_name(project.org_id, project.id, environment_name)
        if found is None:
            raise NotFound(
                f"No environment {environment_id or environment_name!r} in project "
                f"{project.id!r} (GET /api/v1/projects/{project.id}/environments lists them)."
            )
        own = repo.of_job(project.id, job.environment_id)
        if own is not None and own.id == found.id:
            return found
        if not job.allow_environment_override:
            raise Conflict(
                f"Job {job.name!r} runs in environment {own.name if own else 'default'!r} "
                f"only. To run it once in {found.name!r}, set allow_environment_override to "
                "true on the job (PUT), then trigger again."
            )
        return found

    def _snapshot(
        self, project: Project, job: Job, environment: Environment | None = None
    ) -> RunSnapshot:
        """The run's frozen configuration, in the job's environment (or ``environment``, a
        one-off trigger's): each of the environment's fields that is set wins over the
        project's."""
        env = environment or self._store.environments.of_job(project.id, job.environment_id)
        if env is None and job.environment_id is not None:
            # Never run a job meant for one environment with the project's settings instead.
            raise Conflict(
                f"Job {job.name!r} runs in environment {job.environment_id}, which no longer "
                "exists; set the job's environment_id to an environment of the project."
            )
        first = job.steps[0].command if job.steps else job.command
        parsed = self._commands.parse(project.kind, first)
        return RunSnapshot(
            project_name=project.name,
            project_kind=project.kind,
            image=(env.image if env is not None and env.image else project.image),
            path=(env.path if env is not None and env.path else project.path),
            environment=run_environment(env) if env is not None else None,
            service_account=project.service_account,
            template_overrides=project.template_overrides,
            project_environment=project.environment,
            project_secret_environment=project.secret_environment,
            project_resources=project.resources,
            job=config_of(job),
            job_version=job.version,
            argv=list(parsed.argv),
        )

    def _start_dependants(self, finished: RunRecord) -> None:
        """Start the jobs that wait on the job of a run that just finished."""
        if finished.status == "cancelled":
            return
        outcome = "success" if finished.status == "success" else "failure"
        for job in self._store.jobs.dependants(finished.org_id, finished.job_id):
            for dep in job.depends_on:
                if dep.job_id != finished.job_id or dep.on not in (outcome, "any"):
                    continue
                project = self._store.projects.get_any(job.project_id)
                if project is None or not job.enabled:
                    continue
                try:
                    self.start_run(
                        project, job, triggered_by="dependency", upstream_run_id=finished.id
                    )
                except Exception:
                    log.exception(
                        "could not start a dependent run",
                        extra={"job_id": job.id, "upstream_run_id": finished.id},
                    )

    # --- reading ------------------------------------------------------------------------

    def _project(self, principal: Principal, project_id: str) -> Project:
        require_project(principal, project_id)
        project = self._store.projects.get(principal.org_id, project_id)
        if project is None:
            raise NotFound(f"No project with id {project_id!r} in your organization.")
        return project

    def get(self, principal: Principal, run_id: str) -> Run:
        run = self._store.runs.get(principal.org_id, run_id)
        if run is None:
            raise NotFound(f"No run with id {run_id!r} in your organization.")
        require_run_in_scope(principal, run_id, run.project_id)
        return run

    def record_of(self, principal: Principal, run_id: str) -> RunRecord:
        """The run with its snapshot, in one read (a page that shows both). The snapshot
        holds the real secret values, as ``config`` does: callers show it redacted."""
        record = self._store.runs.record(run_id)
        if record is None or record.org_id != principal.org_id:
            raise NotFound(f"No run with id {run_id!r} in your organization.")
        require_run_in_scope(principal, run_id, record.project_id)
        return record

    def config(self, principal: Principal, run_id: str) -> JobConfig:
        self.get(principal, run_id)
        record = self._store.runs.record(run_id)
        assert record is not None
        return record.snapshot.job

    def environment_of(self, principal: Principal, run_id: str) -> RunEnvironment | None:
        """The environment the run ran with, as its snapshot keeps it (secrets included:
        the caller redacts them)."""
        self.get(principal, run_id)
        record = self._store.runs.record(run_id)
        assert record is not None
        return record.snapshot.environment

    def list_runs(
        self,
        principal: Principal,
        *,
        project_id: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        results: bool = True,
    ) -> RunPage:
        if (
            project_id is not None
            and job_id is not None
            and self._store.jobs.get(principal.org_id, project_id, job_id) is None
        ):
            raise NotFound(f"No job with id {job_id!r} in project {project_id!r}.")
        if status is not None and status not in RUN_STATUSES:
            raise invalid("status", "use one of " + ", ".join(RUN_STATUSES))
        if principal.project_id is not None:
            # A project-scoped token lists its project's runs, whatever it asked for.
            if project_id is not None:
                require_project(principal, project_id)
            project_id = principal.project_id
        position = self._cursors.decode(principal.org_id, cursor) if cursor else None
        page = self._store.runs.page(
            principal.org_id,
            project_id=project_id,
            job_id=job_id,
            status=status,
            since=since,
            cursor=position,
            limit=max(1, min(limit, 200)),
            results=results,
        )
        # The store's cursor is a position in a sequence all orgs share: never hand it out.
        opaque = (
            self._cursors.encode(principal.org_id, int(page.next_cursor))
            if page.next_cursor
            else None
        )
        return msgspec.structs.replace(page, next_cursor=opaque)

    def logs(
        self,
        principal: Principal,
        run_id: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        search: str | None = None,
        step: int | None = None,
    ) -> str:
        run = self.get(principal, run_id)
        text: str | None = None
        if step is not None:
            text = self._step_log(run, step, since)
        elif not run.is_terminal and not self._store.runs.has_log(run_id):
            record = self._store.runs.record(run_id)
            assert record is not None
            try:
                text = self._executor.live_logs(record)
            except (ClusterUnavailable, ClusterError):
                text = None
        if text is None:
            text = self._store.runs.read_log(run_id, since=since)
        lines = text.splitlines(keepends=True)
        if search:
            lowered = search.lower()
            lines = [line for line in lines if lowered in line.lower()]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return "".join(lines)

    def _step_log(self, run: Run, index: int, since: datetime | None) -> str:
        """One step's part of the stored log (from its header line to the next step's)."""
        if not run.steps:
            raise invalid("step", "this run has no steps: leave step out to read its log")
        if index >= len(run.steps):
            raise invalid(
                "step", f"this run has {len(run.steps)} steps, numbered 0 to {len(run.steps) - 1}"
            )
        first = run.steps[index].log_seq
        if first is None:
            return ""  # the step has not started (skipped, or not yet)
        later = [s.log_seq for s in run.steps[index + 1 :] if s.log_seq is not None]
        return self._store.runs.read_log(
            run.id, since=since, chunks=(first, min(later) if later else None)
        )

    def cancel(self, principal: Principal, run_id: str) -> Run:
        require_writer(principal)
        run = self.get(principal, run_id)
        if run.is_terminal:
            raise Conflict(
                f"Run {run_id} already ended with status {run.status!r}; only "
                "queued, pending or running runs can be cancelled."
            )
        self._cancel_record(run_id, "cancelled by a user")
        cancelled = self.get(principal, run_id)
        audit.record(
            self._store,
            org_id=principal.org_id,
            action="run.cancel",
            object_type="run",
            object_id=run_id,
            object_name=cancelled.job_name or "",
            diff=audit.field_diff({"status": run.status}, {"status": cancelled.status}),
            project_id=cancelled.project_id,
            clock=self._clock,
        )
        return cancelled

    def _cancel_record(self, run_id: str, why: str) -> None:
        record = self._store.runs.record(run_id)
        if record is None or record.is_terminal:
            return
        if record.status == "queued":
            # Recorded first, so the queue no longer claims it. No executor knows of it,
            # unless the queue launched it in the moment between: then this stops it.
            self._tracker.finished(
                run_id, Outcome(status="cancelled", end_time=self._clock(), error=why)
            )
            try:
                self._executor.cancel(record)
            except Exception:
                log.warning("stopping a queued run found nothing to stop", extra={"run_id": run_id})
            return
        self._executor.cancel(record)
        self._tracker.finished(
            run_id, Outcome(status="cancelled", end_time=self._clock(), error=why)
        )
        if record.steps and record.executor != "local":
            # The local supervisor records how each step ended; a Kubernetes run's steps
            # are read from its pod's log when it ends, which a cancelled run never does.
            stopped = [
                msgspec.structs.replace(s, status="cancelled")
                if s.status in ("pending", "running")
                else s
                for s in record.steps
            ]
            self._store.runs.set_steps(run_id, stopped, self._clock())

    def status(
        self,
        principal: Principal,
        project_id: str,
        job_id: str,
        window: timedelta | None = None,
        window_text: str = "",
    ) -> JobStatus:
        project = self._project(principal, project_id)
        job = self._store.jobs.get(principal.org_id, project_id, job_id)
        if job is None:
            raise NotFound(f"No job with id {job_id!r} in project {project_id!r}.")
        now = self._clock()
        counts = self._store.runs.counts_by_status(job_id)
        scheduled = bool(job.schedule and job.enabled and project.deployed)
        stats = None
        if window is not None:
            since = now - window
            window_counts = self._store.runs.counts_by_status(job_id, since)
            # Queued runs have not run yet: like active ones, not counted in the success rate.
            finished = sum(n for s, n in window_counts.items() if s not in OPEN_STATUSES)
            durations = sorted(self._store.runs.durations(job_id, since))
            stats = WindowStats(
                window=window_text,
                runs=sum(window_counts.values()),
                success_rate=(window_counts.get("success", 0) / finished) if finished else None,
                avg_duration_seconds=(sum(durations) / len(durations)) if durations else None,
                p95_duration_seconds=_percentile(durations, 0.95),
            )
        return JobStatus(
            job_id=job.id,
            job_name=job.name,
            enabled=job.enabled,
            deployed=project.deployed,
            schedule=job.schedule,
            timezone=job.timezone,
            next_run_time=next_fire(job.schedule, job.timezone, now)
            if scheduled and job.schedule
            else None,
            last_run=self._store.runs.last(job_id),
            counts=counts,
            total_runs=sum(counts.values()),
            active_runs=counts.get("pending", 0) + counts.get("running", 0),
            queued_runs=counts.get("queued", 0),
            stats=stats,
        )

    # --- watching a run (waits and event streams) ----------------------------------------

    def watch(self, principal: Principal, run_id: str, listener: RunListener) -> Callable[[], None]:
        """Tell ``listener`` of the run's status changes and log chunks until the returned
        function is called. Reads nothing that blocks for long: the loop's thread may call
        it (the run is looked up first, so another org's run is a 404)."""
        self.get(principal, run_id)
        return self._tracker.listen(run_id, listener)

    def watch_with_log(
        self, principal: Principal, run_id: str, listener: RunListener
    ) -> tuple[Callable[[], None], str]:
        """As ``watch``, with the log stored so far: each chunk is either in that text or
        told to the listener, never both, never neither. Blocks (a worker thread's call)."""
        self.get(principal, run_id)
        stored: list[str] = []
        stop = self._tracker.listen(
            run_id, listener, snapshot=lambda: stored.append(self._store.runs.read_log(run_id))
        )
        return stop, stored[0]


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
