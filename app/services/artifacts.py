"""Run artifacts: what is kept, uploads from pods (hostile input), reads for an org, and
collection from a local run's target folder. Storage is ``store.artifacts``.

An upload is accepted only when every check passes, in this order: the name is one of
``ARTIFACT_NAMES`` (no path ever comes from it), the credential was minted for this run of
this org and has not expired, the run is still active or ended less than the grace period
ago, the declared and actual sizes fit the per-file limit and what is left of the per-run
budget, and the content is one JSON object (checked streaming, after it is written to a
scratch file, before it becomes visible). A refused upload stores nothing.

The same credential lets a run's pod download its dbt state (``state_file``): the stored
artifacts of earlier runs its snapshot names (retry, deferral), exactly those and only
while the run is active, sanitised as the local executor writes them (app/engines/state.py).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from app.engines.state import (
    RUN_RESULTS,
    StateUnavailable,
    missing_message,
    state_content,
    state_files,
)
from app.errors import BadRequest, Conflict, Invalid, NotFound, RunyardError, Unauthorized
from app.executors.k8s.render import STATE_DIR
from app.models import Principal, RunRecord
from app.services.history import ModelHistory
from app.services.tokens import require_run_in_scope
from app.store import Store
from app.store.artifacts import (
    ARTIFACT_NAMES,
    JOB_TOKEN_PREFIX,
    UPLOAD_TOKEN_ENV,
    ArtifactInfo,
    ArtifactTooLarge,
    NotJson,
    check_json_object,
)

log = logging.getLogger("runyard.artifacts")


class TooLarge(RunyardError):
    status = 413
    title = "Request body too large"
    slug = "body-too-large"


class NotRecordedYet(RunyardError):
    status = 503
    title = "Run not recorded yet"
    slug = "run-not-recorded-yet"


def _names() -> str:
    return ", ".join(ARTIFACT_NAMES)


def check_name(name: str) -> str:
    if name not in ARTIFACT_NAMES:
        raise BadRequest(
            f"{name[:80]!r} is not an artifact runyard keeps. Artifact names are: {_names()}."
        )
    return name


# --- the service -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    file_bytes: int
    run_bytes: int
    grace: timedelta


class ArtifactService:
    def __init__(self, store: Store, limits: Limits, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock

    # --- credentials --------------------------------------------------------------------

    def token_for(self, run: RunRecord) -> str:
        """The credential a run's pod uploads with: valid for this run only, for at most its
        timeout plus the grace period (and the service closes it once the run has ended)."""
        return self._store.artifacts.run_token(
            run.org_id,
            run.id,
            run.snapshot.job.timeout_seconds,
            int(self._limits.grace.total_seconds()),
            self._clock(),
        )

    def _authorize(self, run_id: str, credential: str, *, waiting: bool = False) -> RunRecord:
        refused = Unauthorized(
            "Send 'Authorization: Bearer <credential>' with the run's upload credential "
            f"(the pod's {UPLOAD_TOKEN_ENV}); it is valid for that run only, until shortly "
            "after the run has ended.",
            headers={"WWW-Authenticate": 'Bearer realm="runyard artifacts"'},
        )
        if not credential:
            raise refused
        now = self._clock()
        artifacts = self._store.artifacts
        if credential.startswith(JOB_TOKEN_PREFIX):
            # A scheduled run's pod names its run as "<namespace>~<Kubernetes Job name>".
            namespace, _, job_name = run_id.partition("~")
            found = artifacts.run_of_k8s_job(namespace, job_name) if job_name else None
            run = self._store.runs.record(found) if found else None
            if run is None and job_name and waiting:
                # A pod fetching its state can start before runyard has seen its Job; it
                # asks again (the launcher waits up to two minutes).
                raise NotRecordedYet(
                    f"runyard has not recorded a run for Kubernetes Job {job_name[:80]!r} "
                    "yet; ask again in a few seconds.",
                    headers={"Retry-After": "5"},
                )
            if run is None or not artifacts.job_token_matches(credential, run.org_id, run.job_id):
                raise refused
        else:
            run = self._store.runs.record(run_id)
            if run is None or not artifacts.token_matches(credential, run.org_id, run.id, now):
                raise refused  # the same answer for a run that does not exist: nothing leaks
        if run.status not in ("pending", "running"):
            ended = run.end_time or run.updated_at
            if now - ended > self._limits.grace:
                raise Unauthorized(
                    f"Run {run_id} ended at {ended.isoformat()}; its upload credential "
                    f"expired {int(self._limits.grace.total_seconds())} seconds later.",
                )
        return run

    # --- uploads ------------------------------------------------------------------------

    def upload(
        self,
        run_id: str,
        name: str,
        credential: str,
        source: BinaryIO,
        declared_bytes: int | None,
    ) -> ArtifactInfo:
        run = self._authorize(run_id, credential)  # first: strangers learn nothing
        check_name(name)
        store = self._store.artifacts
        existing = store.info(run.id, name)
        left = (
            self._limits.run_bytes - store.total_size(run.id) + (existing.size if existing else 0)
        )
        limit = min(self._limits.file_bytes, left)
        too_large = TooLarge(
            f"{name} is larger than runyard keeps: at most {self._limits.file_bytes} bytes "
            f"per artifact and {self._limits.run_bytes} per run ({max(left, 0)} left for "
            "this run). Raise RUNYARD_ARTIFACT_MAX_FILE_BYTES or RUNYARD_ARTIFACT_MAX_RUN_BYTES."
        )
        if declared_bytes is not None and declared_bytes > limit:
            raise too_large  # before reading a byte
        try:
            info = store.put(run.id, name, source, limit_bytes=limit, check=check_json_object)
        except ArtifactTooLarge:
            raise too_large from None
        except NotJson as exc:
            raise Invalid(f"{exc} Upload the file dbt wrote, unchanged.") from None
        if store.total_size(run.id) > self._limits.run_bytes:
            # Two uploads raced past the budget: the later one does not stay.
            store.delete(run.id, name)
            raise too_large
        log.info(
            "artifact stored",
            extra={"run_id": run.id, "artifact": name, "bytes": info.size},
        )
        if name == RUN_RESULTS:
            try:
                # A pod's upload may land after the run's end was recorded: its nodes
                # replace what the log said. The file is kept either way.
                ModelHistory(self._store).artifact_stored(run.id, name)
            except Exception:
                log.exception(
                    "model history could not use an uploaded run_results.json",
                    extra={"run_id": run.id},
                )
        return info

    # --- a pod's dbt state ----------------------------------------------------------

    def state_file(self, run_id: str, name: str, credential: str) -> tuple[int | None, BinaryIO]:
        """One file of the run's dbt state, for its pod: (size when known, content). Only
        the files the run's snapshot names (a retry's run_results.json, a deferral's
        manifest.json), only while the run is active, only with the run's credential."""
        run = self._authorize(run_id, credential, waiting=True)  # first: strangers learn nothing
        check_name(name)
        if run.status not in ("pending", "running"):
            raise Conflict(
                f"Run {run.id} is {run.status}: its pod fetches its state when it starts, "
                "and the run has ended."
            )
        state = run.snapshot.state
        if state is None:
            defer = run.snapshot.job.defer_to_job_id
            raise Conflict(
                f"Run {run.id} starts with no dbt state"
                + (
                    f": its job defers to job {defer}, which had no successful run with a "
                    "manifest.json when this run was recorded. Run that job first."
                    if defer
                    else " (it is neither a retry nor a run of a deferring job)."
                )
            )
        files = state_files(state)
        source = files.get(name)
        if source is None:
            raise NotFound(f"Run {run.id}'s state holds {', '.join(sorted(files))}, not {name}.")
        store = self._store.artifacts
        if name != RUN_RESULTS:
            info = store.info(source, name)
            stream = store.open(source, name) if info else None
            if info is None or stream is None:
                raise Conflict("Run " + run.id + " cannot start: " + missing_message(state, name))
            return info.size, stream
        raw = store.read(source, name)
        if raw is None:
            raise Conflict("Run " + run.id + " cannot start: " + missing_message(state, name))
        try:
            content = state_content(state, name, raw, STATE_DIR)
        except StateUnavailable as exc:
            raise Conflict(f"Run {run.id} cannot start: {exc}.") from None
        return len(content), io.BytesIO(content)

    # --- reads for an org ---------------------------------------------------------------

    def _run_of(self, principal: Principal, run_id: str) -> str:
        run = self._store.runs.get(principal.org_id, run_id)
        if run is None:
            raise NotFound(f"No run with id {run_id!r} in your organization.")
        require_run_in_scope(principal, run_id, run.project_id)
        return run.id

    def list(self, principal: Principal, run_id: str) -> list[ArtifactInfo]:
        return self._store.artifacts.list(self._run_of(principal, run_id))

    def listing(
        self, principal: Principal, run_id: str, launcher: bool
    ) -> tuple[Sequence[ArtifactInfo], str | None]:
        """The run's artifacts and, when a finished dbt run has none, why that may be
        (an upload that never arrived leaves the outcome as it was, and says so here)."""
        found = self.list(principal, run_id)
        record = self._store.runs.record(run_id)
        if found or record is None or record.snapshot.project_kind != "dbt":
            return found, None
        if record.status in ("pending", "running"):
            return found, "The run is still active: artifacts are kept when it ends."
        if record.executor == "kubernetes":
            if not launcher:
                return found, (
                    "No artifacts: runyard's launcher is not configured "
                    "(RUNYARD_LAUNCHER_IMAGE and RUNYARD_INTERNAL_URL), so pods keep none."
                )
            return found, (
                "No artifacts arrived from the run's pod. The run's outcome is the command's "
                "either way; the launcher's 'runyard launcher:' lines in the run's log say "
                "what it uploaded or why it could not."
            )
        return found, (
            "dbt wrote no artifacts during this run (a command that stops before running, "
            "such as one with a compile error, leaves none; earlier runs' files are not kept)."
        )

    def open(self, principal: Principal, run_id: str, name: str) -> tuple[ArtifactInfo, BinaryIO]:
        found_run = self._run_of(principal, run_id)  # another org's: 404 before all else
        check_name(name)
        info = self._store.artifacts.info(found_run, name)
        stream = self._store.artifacts.open(found_run, name) if info else None
        if info is None or stream is None:
            raise NotFound(
                f"Run {run_id} has no {name}: see GET /api/v1/runs/{run_id}/artifacts for "
                "what it kept."
            )
        return info, stream

    def open_latest(
        self, principal: Principal, project_id: str, job_id: str, name: str
    ) -> tuple[str, ArtifactInfo, BinaryIO]:
        job = self._store.jobs.get(principal.org_id, project_id, job_id)
        if job is None:
            raise NotFound(f"No job {job_id!r} in project {project_id!r} of your organization.")
        check_name(name)
        run_id = self._store.artifacts.latest_successful_run(job.id, name)
        if run_id is not None:
            info = self._store.artifacts.info(run_id, name)
            stream = self._store.artifacts.open(run_id, name)
            if info is not None and stream is not None:
                return run_id, info, stream
        raise NotFound(f"No successful run of job {job_id} has kept {name} (yet).")
