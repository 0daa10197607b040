"""The local executor: runs each run's command as a local process, schedules with the
embedded scheduler. The default when there is no cluster (laptops, CI, the demo).

One supervisor thread per active run follows the process: it copies its output into the
run's stored log every ``POLL_SECONDS``, enforces the deadline, retries, and reports the
outcome to the tracker. The process runs under a tiny wrapper (``local_wrapper.py``) in its
own process group, writing to a spool file beside the database, so it survives a crash of
runyard and a restarted runyard can re-attach to it.

Stopping runyard (``stop()``) terminates the active runs' processes and records them as
``cancelled`` ("runyard was stopped while the run was active"): on a laptop or in CI,
Ctrl-C should not leave dbt running unseen. Only a crash leaves processes behind; the next
``start()`` re-attaches to those still alive and records the others as ``lost``.
One runyard process per database: two would each take the other's runs for their own
(``runyard serve`` holds a lock on the database for that reason).

Isolation (``local_sandbox``): a run's project folder must lie in its org's folder under
the projects root, checked again at launch. With the sandbox on, the run gets its own
HOME and TMPDIR (``<spool>/<run>.tmp``) and the wrapper confines it with Landlock to its
project folder, those folders, the interpreter and system libraries; as root it also
loses every capability (or switches to the project folder's owner). Without Landlock in
the kernel, runs of a second org are refused unless RUNYARD_LOCAL_SANDBOX=off. Each org
may have at most ``max_runs_per_org`` runs active at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from app.engines.environment import engine_env
from app.errors import Conflict, RateLimited, RunyardError
from app.executors.local import sandbox as local_sandbox
from app.executors.local.output import TAIL_BYTES, OutputCollector, collect_artifacts
from app.executors.local.paths import ProjectPaths
from app.executors.local.process import (
    build_env,
    identity,
    is_same_process,
    project_dir,
    read_exit_code,
    reap,
    signal_group,
    spawn,
)
from app.executors.local.state import StateUnavailable, place_state
from app.ids import utcnow
from app.models import (
    NODE_RESULT_COMMANDS,
    Job,
    NodeSummary,
    Project,
    RunRecord,
    RunStatus,
    RunStep,
    StepStatus,
)
from app.ports import Launched, Outcome, RunEvents, Schedules, SyncReport
from app.settings import Settings
from app.store import Store
from app.store.local import LocalProcess

log = logging.getLogger("runyard.local")

POLL_SECONDS = 0.2  # how often output is copied to the log (one write per batch)
READ_CHUNK = 1024 * 1024  # at most this much output per log write
PARTIAL_LINE_LIMIT = 64 * 1024  # an unfinished line longer than this is stored anyway
NO_RETRY_EXIT_CODES = frozenset({1, 2})  # dbt/SQLMesh "the project failed": as podFailurePolicy
RETRY_AFTER_SECONDS = 30  # told to a trigger refused by the per-org cap
PRIVATE = 0o700  # the spool and every run's folders, whatever the umask

StopReason = Literal["cancelled", "timed_out", "shutdown"]
# How a step ended, from the outcome its command would have given a run (lost: failed).
_STEP_STATUS: dict[str, StepStatus] = {
    "success": "success",
    "failed": "failed",
    "timed_out": "timed_out",
    "cancelled": "cancelled",
}


class _Process:
    """A process of this runyard process, started by ``spawn``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def ended(self) -> bool:
        return self.popen.poll() is not None

    def wait(self, seconds: float) -> None:
        """Return when the process ends, or after ``seconds``: the end is seen at once."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(seconds)

    def signal(self, signum: signal.Signals) -> None:
        signal_group(self.pid, signum)

    def exit_code(self) -> int | None:
        code = self.popen.returncode
        return 128 - code if code is not None and code < 0 else code


class _ForeignProcess:
    """A process started by an earlier runyard process: not our child, so its exit status
    comes from the wrapper's exit file."""

    def __init__(self, pid: int, ident: str, exit_file: Path) -> None:
        self.pid = pid
        self._identity = ident
        self._exit_file = exit_file

    def ended(self) -> bool:
        reap(self.pid)
        return not is_same_process(self.pid, self._identity)

    def exit_code(self) -> int | None:
        return read_exit_code(self._exit_file)

    def ended_at(self) -> datetime | None:
        """When the command ended: the wrapper writes its exit file right then. (This
        runyard may have seen the end much later: it was down when the process ended.)"""
        try:
            return datetime.fromtimestamp(self._exit_file.stat().st_mtime, UTC)
        except OSError:
            return None

    def signal(self, signum: signal.Signals) -> None:
        if is_same_process(self.pid, self._identity):  # not a later process with its pid
            signal_group(self.pid, signum)


class _ActiveRun:
    """One run being followed. Its files in the spool directory: ``<run>.log`` (output),
    ``<run>.exit`` (exit code, by the wrapper), ``<run>.dbt/`` (dbt's JSON event log),
    ``<run>.tmp/`` (the run's HOME and TMPDIR when sandboxed)."""

    def __init__(
        self,
        run: RunRecord,
        cwd: Path,
        spool_dir: Path,
        first_started_at: datetime,
        deadline: float,
        *,
        sandboxed: bool = False,
    ) -> None:
        self.run = run
        self.cwd = cwd
        self.spool = spool_dir / f"{run.id}.log"
        self.exit_file = spool_dir / f"{run.id}.exit"
        self.dbt_log_dir = dbt_log_dir = spool_dir / f"{run.id}.dbt"
        self.tmp_dir = spool_dir / f"{run.id}.tmp"
        # dbt state from earlier runs (retry, deferral): app/executors/local/state.py.
        self.state_dir = spool_dir / f"{run.id}.state"
        self.argv = list(run.snapshot.argv)  # plus --state/--defer when the run has state
        kind = run.snapshot.project_kind
        extra = engine_env(kind, cwd, dbt_log_dir)
        if sandboxed:
            # Nothing of runyard's own HOME is reachable from the sandbox: dbt, DuckDB
            # (~/.duckdb) and the rest get a HOME and a TMPDIR of the run's own.
            extra |= {"HOME": str(self.tmp_dir), "TMPDIR": str(self.tmp_dir)}
        self.env = build_env(run, cwd, extra=extra)
        self.sandbox: str | None = None  # the wrapper's plan (JSON) for each attempt
        self.sandbox_note = ""
        self.first_started_at = first_started_at
        self.deadline = deadline  # time.monotonic() value
        self.attempts = run.snapshot.job.retries + 1
        self.attempt = 1
        self.process: _Process | _ForeignProcess | None = None
        self.offset = 0  # bytes of the spool file already stored
        self.collector = OutputCollector(kind, cwd, dbt_log_dir)
        self.stop: StopReason | None = None
        self.kill_at: float | None = None
        self.detached = False
        self.lock = threading.Lock()  # orders stop requests and (re)starts of the process
        self.wake = threading.Event()
        self.ended = threading.Event()  # the current process has ended
        self.thread: threading.Thread | None = None
        # A run of steps (docs/steps.md): the plans, each step's record, the step being
        # run, and what the steps so far reported. Re-attached after a restart, the
        # record says which step was running.
        self.plans = list(run.snapshot.steps)
        self.steps: list[RunStep] = list(run.steps) or [
            RunStep(index=i, name=p.name, command=p.command, run_on_failure=p.run_on_failure)
            for i, p in enumerate(self.plans)
        ]
        self.step = next((s.index for s in self.steps if s.status == "running"), 0)
        self.results: list[NodeSummary] = list(run.results) if self.plans else []
        self.step_errors: dict[int, str] = {}
        self.kept_failed_results = False
        if self.plans:
            self.argv = list(self.plans[self.step].argv)


class LocalExecutor:
    name = "local"

    def __init__(
        self,
        store: Store,
        events: RunEvents,
        *,
        paths: ProjectPaths,
        spool_dir: Path,
        sandbox: bool = True,
        max_runs_per_org: int = 8,
        landlock_abi: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        term_grace_seconds: float = 10.0,
        artifact_limits: tuple[int, int] = (200 * 1024 * 1024, 500 * 1024 * 1024),
    ) -> None:
        self._store = store
        self._events = events
        self._paths = paths
        self._spool_dir = spool_dir
        self._sandbox = sandbox
        self._max_runs_per_org = max_runs_per_org
        # The org's cap (its max_concurrent_runs, else max_runs_per_org): set by the
        # container to the run queue's, so both count against the same number.
        self.cap_of: Callable[[str], int] = lambda _org_id: self._max_runs_per_org
        self._artifact_limits = artifact_limits  # bytes per artifact, per run
        # Probed once; tests pass 0 to play a kernel without Landlock.
        self.landlock_abi = local_sandbox.abi_version() if landlock_abi is None else landlock_abi
        self._clock = clock
        self._grace = term_grace_seconds
        self._runs: dict[str, _ActiveRun] = {}
        self._lock = threading.Lock()
        self._stopping = False
        # The embedded scheduler, told when schedules change. The container connects it
        # once the run service it fires through exists (that service needs this executor);
        # None: no schedule fires (deploy still reports what would be live).
        self.schedules: Schedules | None = None

    # --- runs -----------------------------------------------------------------------------

    def admit(self, org_id: str) -> None:
        """Whether a run of ``org_id`` may start now: a 409 when Landlock is missing and the
        org is not the one served, a 429 when it has ``max_runs_per_org`` runs active.
        ``launch`` checks the same; callers ask first so a refused trigger records
        nothing."""
        self._check_isolation(org_id)
        with self._lock:
            self._admit(org_id)

    def at_capacity(self, org_id: str) -> bool:
        with self._lock:
            return self._active_of(org_id) >= self.cap_of(org_id)

    def _active_of(self, org_id: str) -> int:
        return sum(1 for a in self._runs.values() if a.run.org_id == org_id)

    def _admit(self, org_id: str) -> None:
        cap = self.cap_of(org_id)
        if self._active_of(org_id) >= cap:
            raise RateLimited(
                f"Your organization already has {cap} local run(s) active, the most runyard "
                f"runs at once for one organization (RUNYARD_LOCAL_MAX_RUNS_PER_ORG={cap}). "
                "Wait for a run to finish or cancel one, then trigger again; the operator "
                "can raise RUNYARD_LOCAL_MAX_RUNS_PER_ORG.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    def _check_isolation(self, org_id: str) -> None:
        """Without Landlock, runs of one org only (the first to create a project): nothing
        would keep a second org's runs out of the first one's files."""
        if not self._sandbox or self.landlock_abi > 0:
            return
        served = self._store.local.first_project_org()
        if served is not None and served != org_id:
            raise Conflict(
                "This runyard runs local projects of one organization only: the kernel has "
                "no Landlock (Linux 5.13 or later, with landlock in the lsm= boot list), so "
                "nothing would keep one organization's runs out of another's files. Use "
                "the Kubernetes executor, a kernel with Landlock, or, if every organization "
                "here is trusted, have the operator set RUNYARD_LOCAL_SANDBOX=off."
            )

    def launch(self, run: RunRecord) -> Launched:
        slug = self._store.orgs.slug_of(run.org_id) or ""
        cwd = project_dir(run, self._paths, slug)  # 422: no path, missing, or outside
        self._check_isolation(run.org_id)
        now = self._clock()
        active = _ActiveRun(
            run,
            cwd,
            self._spool_dir,
            now,
            time.monotonic() + run.snapshot.job.timeout_seconds,
            sandboxed=self._sandbox,
        )
        with self._lock:
            if self._stopping:
                raise RunyardError(
                    "runyard is shutting down and starts no new runs; "
                    "trigger the run again once it is back."
                )
            self._admit(run.org_id)
            self._runs[run.id] = active
        try:
            self._make_private(self._spool_dir)
            self._place_state(active)
            self._start_attempt(active)
        except (OSError, StateUnavailable) as exc:
            with self._lock:
                self._runs.pop(run.id, None)
            shutil.rmtree(active.state_dir, ignore_errors=True)
            raise RunyardError(
                f"runyard could not start {run.snapshot.argv[0]!r} in {str(cwd)!r}: {exc}"
            ) from None
        self._events.started(run.id, now)
        if active.plans:
            self._begin_step(active, 0)
        self._note(active, f"{shlex.join(active.argv)}   (in {cwd})")
        if active.sandbox_note:
            self._note(active, active.sandbox_note)
        if not self._sandbox:
            self._note(active, "RUNYARD_LOCAL_SANDBOX=off: this run is not confined")
            log.warning(
                "local run started without a sandbox (RUNYARD_LOCAL_SANDBOX=off): it can "
                "read and write whatever runyard's user can",
                extra={"run_id": run.id},
            )
        self._supervise_in_thread(active)
        return Launched(job_name=run.job_name or run.id)

    def cancel(self, run: RunRecord) -> None:
        """Stop the run's process group (SIGTERM, SIGKILL after the grace period) and wait
        for it to end, so a replacing run does not meet the old one's locks."""
        with self._lock:
            active = self._runs.get(run.id)
        if active is None:
            self._stop_unsupervised(run.id)
            return
        self._request_stop(active, "cancelled")
        active.ended.wait(self._grace + 5)

    def live_logs(self, run: RunRecord) -> str | None:
        return None  # the supervisor stores output while the run goes on

    # --- schedules: nothing external to write; the scheduler reads the database -----------

    def apply_job(self, project: Project, job: Job) -> None:
        if self.schedules is not None:
            self.schedules.refresh_job(job.id)

    def remove_job(self, project: Project, job: Job) -> None:
        if self.schedules is not None:
            self.schedules.forget_job(job.id)

    def deploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport:
        """Nothing to write for local runs: the scheduler reads the database; this wakes it.
        created: schedules that become active; updated: active schedules whose cron or zone
        changed; unchanged: the rest (already active as they are, or disabled, or without a
        schedule)."""
        if self.schedules is None:
            active = sum(1 for j in jobs if j.schedule and j.enabled)
            return SyncReport(created=active, unchanged=len(jobs) - active)
        report = self.schedules.preview(jobs, deployed=True)
        self.schedules.refresh_project(project.id)
        return report

    def undeploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport:
        """deleted: schedules that stop; unchanged: the rest. Running runs go on."""
        if self.schedules is None:
            return SyncReport(unchanged=len(jobs))
        report = self.schedules.preview(jobs, deployed=False)
        for job in jobs:
            self.schedules.forget_job(job.id)
        return report

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if not self._sandbox:
            log.warning(
                "RUNYARD_LOCAL_SANDBOX=off: local runs are NOT confined; any project can "
                "read and write whatever runyard's user can, including runyard's database "
                "and every organization's projects. Only for a single trusted organization."
            )
        elif self.landlock_abi <= 0:
            log.warning(
                "Landlock is not available in this kernel: local runs cannot be confined, "
                "so runyard runs the projects of one organization only (the first to create "
                "a project) and refuses runs of any other (409). Set "
                "RUNYARD_LOCAL_SANDBOX=off only if every organization is trusted."
            )
        self._recover()

    def stop(self) -> None:
        """Terminate the active runs. The container stops the scheduler first, so that a
        fire in progress still launches normally."""
        with self._lock:
            self._stopping = True
            runs = list(self._runs.values())
        for active in runs:
            self._request_stop(active, "shutdown")
        for active in runs:
            if active.thread is not None:
                active.thread.join(self._grace + 10)

    def detach(self) -> None:
        """Stop following the active runs but leave their processes running, as a crash
        would: the next ``start()`` on this database re-attaches to them. (The scheduler,
        the container's, is stopped by the caller.)"""
        with self._lock:
            self._stopping = True
            runs = list(self._runs.values())
        for active in runs:
            active.detached = True
            active.wake.set()
        for active in runs:
            if active.thread is not None:
                active.thread.join(10)

    # --- supervision ----------------------------------------------------------------------

    def _start_attempt(self, active: _ActiveRun) -> None:
        """Start (or restart, for a retry) the run's process and record where it is."""
        active.collector.reset()
        active.ended.clear()
        if self._sandbox:
            active.sandbox = self._prepare_sandbox(active)
        popen = spawn(
            active.argv,
            active.cwd,
            active.env,
            active.spool,
            active.exit_file,
            sandbox=active.sandbox,
        )
        active.process = _Process(popen)
        self._store.local.save_process(
            LocalProcess(
                run_id=active.run.id,
                pid=popen.pid,
                identity=identity(popen.pid) or "",
                attempt=active.attempt,
                first_started_at=active.first_started_at,
                spool=str(active.spool),
                log_offset=active.offset,
            ),
            self._clock(),
        )

    @staticmethod
    def _make_private(folder: Path) -> None:
        folder.mkdir(mode=PRIVATE, parents=True, exist_ok=True)
        folder.chmod(PRIVATE)  # whatever the umask, and for a folder made before

    def _place_state(self, active: _ActiveRun) -> None:
        """The dbt state the run starts with (retry, deferral), in its own folder."""
        state = active.run.snapshot.state
        if state is None or active.run.snapshot.project_kind != "dbt":
            return
        shutil.rmtree(active.state_dir, ignore_errors=True)  # an earlier launch's leftovers
        extra = place_state(state, active.state_dir, self._store.artifacts.read)
        active.argv = [*active.run.snapshot.argv, *extra]

    def _prepare_sandbox(self, active: _ActiveRun) -> str:
        """The run's own folders, created private, and the wrapper's plan (JSON)."""
        for folder in (active.tmp_dir, active.dbt_log_dir):
            self._make_private(folder)
        own = [str(active.tmp_dir), str(active.dbt_log_dir)]
        if active.state_dir.is_dir():
            own.append(str(active.state_dir))
        user, why = local_sandbox.unprivileged_user(str(active.cwd), own)
        if user is not None:
            for folder in (active.tmp_dir, active.dbt_log_dir):
                os.chown(folder, *user)
            if active.state_dir.is_dir():
                os.chown(active.state_dir, *user)
                for file in active.state_dir.iterdir():
                    os.chown(file, *user, follow_symlinks=False)
        active.sandbox_note = (
            f"sandbox: runs as {why}" if user is not None else f"sandbox: same uid ({why})"
        )
        plan = local_sandbox.build_plan([str(active.cwd), *own], user=user)
        return plan.to_json()

    def _supervise_in_thread(self, active: _ActiveRun) -> None:
        active.thread = threading.Thread(
            target=self._supervise, args=(active,), name=f"run-{active.run.id}", daemon=True
        )
        active.thread.start()

    def _keep_artifacts(self, active: _ActiveRun) -> None:
        """Store the dbt artifacts this run wrote (docs/artifacts.md). A failure here is
        logged and leaves the run's outcome as it is."""
        if active.run.snapshot.project_kind != "dbt":
            return  # SQLMesh leaves nothing beyond its log and results (docs/artifacts.md)
        try:
            kept = collect_artifacts(
                self._store,
                active.run.id,
                active.cwd,
                started_at=active.first_started_at,
                invocation_id=active.collector.invocation_id(),
                file_limit=self._artifact_limits[0],
                run_limit=self._artifact_limits[1],
            )
        except Exception:
            log.exception("keeping a run's artifacts failed", extra={"run_id": active.run.id})
            return
        if kept:
            self._note(active, f"artifacts kept: {', '.join(kept)}")

    def _supervise(self, active: _ActiveRun) -> None:
        run_id = active.run.id
        try:
            if active.plans:
                outcome = self._follow_steps(active)  # keeps each step's artifacts
            else:
                outcome = self._follow_attempts(active)
                if outcome is not None:
                    self._keep_artifacts(active)  # before the end is recorded and announced
            if outcome is not None:
                self._events.finished(run_id, outcome)
        except Exception:
            log.exception("the supervisor of a local run failed", extra={"run_id": run_id})
            with contextlib.suppress(Exception):
                if active.plans:  # no step stays running after its run has ended
                    for step in active.steps:
                        if step.status in ("pending", "running"):
                            step.status = "skipped" if step.status == "pending" else "failed"
                    self._save_steps(active)
            with contextlib.suppress(Exception):
                self._events.finished(
                    run_id,
                    Outcome(
                        status="failed",
                        end_time=self._clock(),
                        error="runyard lost track of the run's process because of an internal "
                        "error; see runyard's log.",
                    ),
                )
        finally:
            if not active.detached:
                with contextlib.suppress(Exception):
                    self._store.local.forget_process(run_id)
                for path in (active.spool, active.exit_file):
                    path.unlink(missing_ok=True)
                shutil.rmtree(active.tmp_dir, ignore_errors=True)
                shutil.rmtree(active.state_dir, ignore_errors=True)
                active.collector.close()
            active.ended.set()
            # Last: stop() joins the threads of the runs it finds here before the database
            # is closed, so this thread must be done with the database when it leaves.
            with self._lock:
                self._runs.pop(run_id, None)

    # --- steps (docs/steps.md) -----------------------------------------------------------

    def _save_steps(self, active: _ActiveRun) -> None:
        self._store.runs.set_steps(
            active.run.id, active.steps, self._clock(), results=active.results
        )

    def _begin_step(self, active: _ActiveRun, index: int) -> None:
        """Record that step ``index`` starts, where its part of the log starts, and write
        its header line. Its process is started by the caller."""
        step = active.steps[index]
        step.status = "running"
        step.started_at = self._clock()
        step.log_seq = self._store.runs.next_log_seq(active.run.id)
        self._save_steps(active)
        total = len(active.plans)
        self._events.log(active.run.id, f"== step {index + 1}/{total}: {step.name} ==\n")

    def _end_step(
        self, active: _ActiveRun, index: int, status: StepStatus, code: int | None
    ) -> None:
        step = active.steps[index]
        step.status = status
        step.exit_code = code
        step.ended_at = self._clock()
        if step.started_at is not None:
            step.duration_seconds = max(0.0, (step.ended_at - step.started_at).total_seconds())
        self._save_steps(active)

    def _skip_steps(self, active: _ActiveRun, first: int, last: int | None = None) -> None:
        """Mark the steps from ``first`` to before ``last`` (None: the end) skipped."""
        for step in active.steps[first:last]:
            if step.status == "pending":
                step.status = "skipped"
                self._note(active, f"step {step.index + 1} ({step.name}) skipped")
        self._save_steps(active)

    def _keep_step_results(self, active: _ActiveRun, index: int, outcome: Outcome) -> None:
        """The node results of the step, tagged with it, and the artifacts it wrote. Only
        steps that run nodes report them (docs generate's compile results would list a
        model that failed in the build before it as a success)."""
        plan = active.plans[index]
        kind = active.run.snapshot.project_kind
        runs_nodes = kind == "sqlmesh" or plan.subcommand in NODE_RESULT_COMMANDS
        if runs_nodes:
            active.results += [msgspec.structs.replace(n, step=index) for n in outcome.results]
        if kind != "dbt":
            return
        # The run keeps the run_results.json of the first step that failed (what a look
        # at the failure, the model history and dbt need), else of the last step that
        # ran nodes; the other artifacts are the last step's that wrote them.
        skip = () if runs_nodes and not active.kept_failed_results else ("run_results.json",)
        try:
            # The first step's process starts just before its record says so.
            started = (index and active.steps[index].started_at) or active.first_started_at
            kept = collect_artifacts(
                self._store,
                active.run.id,
                active.cwd,
                started_at=started,
                invocation_id=active.collector.invocation_id(),
                file_limit=self._artifact_limits[0],
                run_limit=self._artifact_limits[1],
                skip=skip,
            )
        except Exception:
            log.exception("keeping a step's artifacts failed", extra={"run_id": active.run.id})
            return
        if "run_results.json" in kept and outcome.status != "success":
            active.kept_failed_results = True
        if kept:
            self._note(active, f"artifacts kept: {', '.join(kept)}")

    def _follow_steps(self, active: _ActiveRun) -> Outcome | None:
        """Run the steps in order, each supervised like a run of one command (attempts,
        deadline, stop). A failed step fails the run; the later steps run only when
        marked run_on_failure. A stop (cancel, timeout, shutdown) ends the current step
        and skips the rest. The outcome to record, or None (cancelled, detached)."""
        total = len(active.plans)
        while True:
            index = active.step
            outcome = self._follow_attempts(active)
            if active.detached:
                return None
            assert active.process is not None
            code = active.process.exit_code()
            status = _STEP_STATUS.get(outcome.status, "failed") if outcome else "cancelled"
            self._end_step(active, index, status, code)
            if outcome is not None:
                self._keep_step_results(active, index, outcome)
                if outcome.status != "success" and outcome.error:
                    active.step_errors[index] = outcome.error
            if outcome is None or outcome.status not in ("success", "failed"):
                self._skip_steps(active, index + 1)  # stopped: nothing more runs
                return self._stopped(active, index, outcome)
            failed = self._first_failed(active)
            following = next(
                (
                    j
                    for j in range(index + 1, total)
                    if failed is None or active.plans[j].run_on_failure
                ),
                None,
            )
            self._skip_steps(active, index + 1, following)
            if following is None:
                return self._steps_outcome(active, outcome)
            with active.lock:  # a stop requested from now on finds the new process
                if active.stop is not None:
                    stop = active.stop
                else:
                    stop = None
                    active.step = following
                    active.attempt = 1
                    active.argv = list(active.plans[following].argv)
                    self._begin_step(active, following)
                    self._note(active, f"{shlex.join(active.argv)}   (in {active.cwd})")
                    try:
                        self._start_attempt(active)
                    except OSError as exc:
                        self._end_step(active, following, "failed", None)
                        self._skip_steps(active, following + 1)
                        error = f"runyard could not start step {following + 1}: {exc}"
                        return self._outcome(active, "failed", None, error)
            if stop is not None:
                self._skip_steps(active, following)
                return self._stopped(active, index, self._decide(active, 1), between=True)

    @staticmethod
    def _first_failed(active: _ActiveRun) -> int | None:
        return next((s.index for s in active.steps if s.status == "failed"), None)

    def _stopped(
        self,
        active: _ActiveRun,
        index: int,
        outcome: Outcome | Literal["retry"] | None,
        *,
        between: bool = False,
    ) -> Outcome | None:
        """The outcome of a run of steps stopped during (or after) step ``index``."""
        if outcome is None or outcome == "retry":
            return None  # cancelled: the service records it
        name = active.steps[index].name
        where = f"after step {index + 1}" if between else f"during step {index + 1}"
        error = f"{outcome.error or outcome.status} ({where} of {len(active.plans)}: {name})"
        return msgspec.structs.replace(
            outcome,
            error=error,
            results=list(active.results),
            exit_code=None if between else outcome.exit_code,
        )

    def _steps_outcome(self, active: _ActiveRun, last: Outcome) -> Outcome:
        failed = self._first_failed(active)
        if failed is None:
            return msgspec.structs.replace(last, results=list(active.results))
        step = active.steps[failed]
        error = (
            f"Step {failed + 1} of {len(active.plans)} ({step.name}) failed with exit code "
            f"{step.exit_code}."
        )
        if failed in active.step_errors:
            error += " " + active.step_errors[failed]
        return Outcome(
            status="failed",
            end_time=self._end_time(active),
            exit_code=step.exit_code,
            error=error,
            results=list(active.results),
        )

    def _follow_attempts(self, active: _ActiveRun) -> Outcome | None:
        """Follow attempts until the run ends; the outcome to record, or None when there is
        nothing to record (cancelled: the service records it; detached)."""
        while True:
            self._follow(active)
            if active.detached:
                return None
            assert active.process is not None
            code = active.process.exit_code()
            decided = self._decide(active, code)
            if decided != "retry":
                return decided
            self._note(
                active,
                f"attempt {active.attempt} of {active.attempts} failed with exit code {code}; "
                f"retrying (attempt {active.attempt + 1} of {active.attempts})",
            )
            with active.lock:  # a stop requested from now on finds the new process
                if active.stop is not None:  # requested since: it decides, not a retry
                    stopped = self._decide(active, code)
                    assert stopped is None or isinstance(stopped, Outcome)
                    return stopped
                active.attempt += 1
                try:
                    self._start_attempt(active)
                except OSError as exc:
                    error = f"runyard could not start attempt {active.attempt}: {exc}"
                    return self._outcome(active, "failed", code, error)

    def _decide(self, active: _ActiveRun, code: int | None) -> Outcome | Literal["retry"] | None:
        """How an attempt that exited with ``code`` ends the run, or "retry"."""
        if active.stop == "cancelled":
            self._note(active, "the run was cancelled; its process group was stopped")
            return None
        if code == 0:  # also when it finished just as a stop was requested
            return self._outcome(active, "success", code)
        if active.stop == "shutdown":
            error = "runyard was stopped while the run was active; its process was terminated."
            return self._outcome(active, "cancelled", code, error)
        if active.stop == "timed_out":
            limit = active.run.snapshot.job.timeout_seconds
            error = f"The run exceeded its timeout_seconds ({limit} s) and was stopped."
            return self._outcome(active, "timed_out", code, error)
        if code is None:
            error = (
                "runyard restarted while the run was active, and its process ended without "
                "leaving an exit code; how it ended is unknown."
            )
            return self._outcome(active, "lost", None, error)
        if code in NO_RETRY_EXIT_CODES or active.attempt >= active.attempts:
            return self._outcome(active, "failed", code)
        return "retry"

    def _follow(self, active: _ActiveRun) -> None:
        """Copy output to the log until the current process ends, enforcing the deadline
        and escalating a stop to SIGKILL after the grace period."""
        assert active.process is not None
        process = active.process
        while not active.detached:
            ended = process.ended()
            self._drain(active, final=ended)
            if ended:
                break
            now = time.monotonic()
            if active.stop is None and now >= active.deadline:
                self._request_stop(active, "timed_out")
            if active.kill_at is not None and now >= active.kill_at:
                process.signal(signal.SIGKILL)
                active.kill_at = None
            if isinstance(process, _Process):
                process.wait(POLL_SECONDS)
            else:
                active.wake.wait(POLL_SECONDS)
                active.wake.clear()
        if active.stop is not None and not active.detached and isinstance(process, _Process):
            # The group's leader has ended; stragglers it left behind go too. (Not for a
            # process of an earlier runyard: its pid is no longer ours to vouch for.)
            signal_group(process.pid, signal.SIGKILL)
        active.ended.set()

    def _drain(self, active: _ActiveRun, final: bool) -> None:
        """Store the output written since the last call; whole lines unless ``final``."""
        while True:
            try:
                with active.spool.open("rb") as spool:
                    spool.seek(active.offset)
                    data = spool.read(READ_CHUNK)
            except FileNotFoundError:
                return
            if not data:
                return
            full = len(data) == READ_CHUNK
            if not final:
                cut = data.rfind(b"\n") + 1
                if cut:
                    data = data[:cut]  # whole lines; the rest comes with the next batch
                elif len(data) < PARTIAL_LINE_LIMIT:
                    return  # wait for the rest of the line
            text = data.decode("utf-8", errors="replace")
            active.offset += len(data)
            with self._store.database.write():
                self._events.log(active.run.id, text)
                self._store.local.set_log_offset(active.run.id, active.offset)
            active.collector.feed(text)
            if not full:
                return

    def _request_stop(self, active: _ActiveRun, reason: StopReason) -> None:
        with active.lock:
            if active.stop is None:
                active.stop = reason
            process = active.process
            if process is not None and not active.ended.is_set():
                process.signal(signal.SIGTERM)
                active.kill_at = time.monotonic() + self._grace
        active.wake.set()

    def _note(self, active: _ActiveRun, text: str) -> None:
        """A line of runyard's own in the run's log."""
        self._events.log(active.run.id, f"[runyard] {text}\n")

    def _outcome(
        self, active: _ActiveRun, status: RunStatus, code: int | None, error: str | None = None
    ) -> Outcome:
        results, summary = active.collector.summary(status, code)
        if status in ("failed", "timed_out") and summary:
            error = f"{error} {summary}" if error else summary
        return Outcome(
            status=status,
            end_time=self._end_time(active),
            exit_code=code,
            error=error,
            results=results,
        )

    def _end_time(self, active: _ActiveRun) -> datetime:
        """Now, or for a process re-attached after a restart, its own end (which may have
        come while runyard was down), never before the run started nor after now."""
        now = self._clock()
        if isinstance(active.process, _ForeignProcess):
            ended = active.process.ended_at()
            if ended is not None:
                return max(active.first_started_at, min(ended, now))
        return now

    def _stop_unsupervised(self, run_id: str) -> None:
        """Cancel a run this executor does not follow (a process left by a crash that
        ``start()`` has not re-attached yet)."""
        found = self._store.local.process(run_id)
        if found is not None and is_same_process(found.pid, found.identity):
            signal_group(found.pid, signal.SIGTERM)

    # --- recovery -------------------------------------------------------------------------

    def _recover(self) -> None:
        """Re-attach to the processes of runs a previous runyard process left active; record
        the others as lost. No run stays pending or running without a process."""
        processes = {p.run_id: p for p in self._store.local.processes()}
        for run in self._store.runs.active(self.name):
            with self._lock:
                if run.id in self._runs:
                    continue
            found = processes.pop(run.id, None)
            if found is None:
                self._events.finished(
                    run.id,
                    Outcome(
                        status="lost",
                        end_time=self._clock(),
                        error="runyard restarted while the run was active, before its process "
                        "was started; trigger it again.",
                    ),
                )
                continue
            self._reattach(run, found)
        for leftover in processes.values():  # runs that ended but were not cleaned up
            self._store.local.forget_process(leftover.run_id)
            spool = Path(leftover.spool)
            for path in (spool, spool.with_suffix(".exit")):
                path.unlink(missing_ok=True)
            shutil.rmtree(spool.with_suffix(".dbt"), ignore_errors=True)
            shutil.rmtree(spool.with_suffix(".tmp"), ignore_errors=True)
            shutil.rmtree(spool.with_suffix(".state"), ignore_errors=True)

    def _reattach(self, run: RunRecord, found: LocalProcess) -> None:
        spool = Path(found.spool)
        try:
            cwd = project_dir(run, self._paths, self._store.orgs.slug_of(run.org_id) or "")
        except (RunyardError, ValueError):
            cwd = self._paths.root  # only read for results; the process runs where it ran
        elapsed = (self._clock() - found.first_started_at).total_seconds()
        active = _ActiveRun(
            run,
            cwd,
            spool.parent,
            found.first_started_at,
            time.monotonic() + run.snapshot.job.timeout_seconds - elapsed,
            sandboxed=self._sandbox,
        )
        active.attempt = found.attempt
        active.offset = found.log_offset
        active.collector.feed(_spool_tail(spool, found.log_offset))
        active.process = _ForeignProcess(found.pid, found.identity, active.exit_file)
        alive = not active.process.ended()
        with self._lock:
            self._runs[run.id] = active
        self._events.started(run.id, found.first_started_at)
        self._note(
            active,
            "runyard restarted; "
            + (
                f"re-attached to the run's process (pid {found.pid})"
                if alive
                else "the run's process ended while runyard was down"
            ),
        )
        log.info(
            "re-attached to a local run", extra={"run_id": run.id, "pid": found.pid, "alive": alive}
        )
        self._supervise_in_thread(active)


def _spool_tail(spool: Path, end: int) -> str:
    """The output before ``end`` that the result parsers look at (its last lines)."""
    start = max(0, end - TAIL_BYTES)
    try:
        with spool.open("rb") as handle:
            handle.seek(start)
            data = handle.read(end - start)
    except OSError:
        return ""
    if start > 0:
        data = data[data.find(b"\n") + 1 :]  # from the first whole line
    return data.decode("utf-8", errors="replace")


def spool_dir_for(database: str) -> Path:
    """Where run output is spooled: beside the database (``runyard.db-local/``)."""
    if database == ":memory:" or database.startswith("file:"):
        return Path(tempfile.gettempdir()) / "runyard-local"
    path = Path(database).expanduser()
    return path.with_name(path.name + "-local")


def build_local_executor(
    store: Store,
    events: RunEvents,
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    landlock_abi: int | None = None,
    term_grace_seconds: float = 10.0,
) -> LocalExecutor:
    """The local executor as the settings describe it. ``events``: the run tracker.
    ``landlock_abi=0`` plays a kernel without Landlock (tests)."""
    return LocalExecutor(
        store,
        events,
        paths=ProjectPaths(settings.projects_root_path),
        spool_dir=spool_dir_for(settings.database),
        sandbox=settings.local_sandbox,
        max_runs_per_org=settings.local_max_runs_per_org,
        landlock_abi=landlock_abi,
        clock=clock,
        term_grace_seconds=term_grace_seconds,
        artifact_limits=(settings.artifact_max_file_bytes, settings.artifact_max_run_bytes),
    )
