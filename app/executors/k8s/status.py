"""What a Kubernetes Job's state means for its run: pure, no client and no I/O.

The run tracker (``k8s_tracker``) reads Jobs and their pods as plain dicts (the API's JSON)
and asks this module two questions:

* ``view_of(job)``: is it runyard's, which run or scheduled job is it, how far has it got?
* ``outcome_of(view, attempts, log, kind)``: how did the run end (status, exit code, error,
  dbt/SQLMesh node results parsed from the log)?

The terminal decision uses the Job controller's interim conditions too (``SuccessCriteriaMet``,
``FailureTarget``, Kubernetes 1.31+): they are final, and they come before the controller
deletes the pods of a failed Job, so the logs can still be read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from app.engines.results import (
    SUMMARY_TAIL_LINES,
    failed_nodes,
    parse_dbt_output,
    parse_sqlmesh_output,
    summarise_failure,
)
from app.executors.k8s.labels import (
    JOB_LABEL,
    MAIN_CONTAINER,
    MANAGED_BY,
    MANAGER,
    ORG_LABEL,
    RUN_LABEL,
    SCHEDULED_ANNOTATION,
)
from app.models import NodeSummary, ProjectKind
from app.ports import Outcome

Phase = Literal["waiting", "running", "succeeded", "failed"]

DEADLINE_REASON = "DeadlineExceeded"


class WatchExpired(Exception):
    """410 Gone: the watch's resourceVersion is older than the API server keeps; list again."""


# Container end reasons that say nothing beyond the exit code.
_PLAIN_REASONS = frozenset({"Error", "Completed", ""})


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339, any offset) as an aware UTC datetime; None if absent/bad."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def resource_version(obj: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as a number, for ordering; None when not numeric (the
    API calls it opaque, so nothing may depend on the order being known)."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """What the tracker needs from one Job object."""

    namespace: str
    name: str
    uid: str
    org: str | None
    job_id: str | None
    run_id: str | None  # one-off runs; scheduled Jobs carry their CronJob's labels only
    cronjob: str | None  # the owning CronJob, for Jobs the CronJob controller created
    scheduled_for: datetime | None  # the CronJob's scheduled time (annotation)
    phase: Phase
    start_time: datetime | None
    end_time: datetime | None
    reason: str | None = None  # of the failure condition: BackoffLimitExceeded, ...
    message: str | None = None
    deadline_seconds: int | None = None
    deleted_at: datetime | None = None
    # spec.suspend: a scheduled Job waits, without a pod, until runyard resumes it.
    suspended: bool = False

    @property
    def scheduled(self) -> bool:
        return self.run_id is None and (self.cronjob is not None or self.scheduled_for is not None)

    @property
    def terminal(self) -> bool:
        return self.phase in ("succeeded", "failed")


def view_of(job: Mapping[str, Any], namespace: str | None = None) -> JobView | None:
    """The Job as the tracker sees it; None for a Job runyard does not manage."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) != MANAGER or not meta.get("name"):
        return None
    annotations = meta.get("annotations") or {}
    owner = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == "CronJob"), None)
    status = job.get("status") or {}
    phase, end_time, reason, message = _phase(status)
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    return JobView(
        namespace=str(meta.get("namespace") or namespace or ""),
        name=str(meta["name"]),
        uid=str(meta.get("uid") or ""),
        org=labels.get(ORG_LABEL),
        job_id=labels.get(JOB_LABEL),
        run_id=labels.get(RUN_LABEL),
        cronjob=str(owner.get("name")) if owner else None,
        scheduled_for=parse_time(annotations.get(SCHEDULED_ANNOTATION))
        or (_time_from_name(str(meta["name"])) if owner else None),
        phase=phase,
        start_time=parse_time(status.get("startTime")),
        end_time=end_time,
        reason=reason,
        message=message,
        deadline_seconds=int(deadline) if isinstance(deadline, int) else None,
        deleted_at=parse_time(meta.get("deletionTimestamp")),
        suspended=(job.get("spec") or {}).get("suspend") is True,
    )


def _time_from_name(name: str) -> datetime | None:
    """The scheduled time in a CronJob's Job name, ``<cronjob>-<minutes since the epoch>``:
    clusters before Kubernetes 1.28 do not set the scheduled-timestamp annotation."""
    suffix = name.rsplit("-", 1)[-1]
    if not suffix.isdigit() or len(suffix) < 7:
        return None
    return datetime.fromtimestamp(int(suffix) * 60, UTC)


def _phase(status: Mapping[str, Any]) -> tuple[Phase, datetime | None, str | None, str | None]:
    """(phase, end time, failure reason, failure message) from the Job's status. A failed
    Job has no completionTime: its end is when the failure condition was set."""
    done: dict[str, Mapping[str, Any]] = {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True":
            done[str(cond.get("type"))] = cond
    for kind in ("Complete", "SuccessCriteriaMet"):
        if kind in done:
            end = parse_time(status.get("completionTime")) or parse_time(
                done[kind].get("lastTransitionTime")
            )
            return "succeeded", end, None, None
    for kind in ("Failed", "FailureTarget"):
        if kind in done:
            cond = done[kind]
            end = parse_time(cond.get("lastTransitionTime"))
            return "failed", end, cond.get("reason"), cond.get("message")
    # Running from the moment the Job controller started it (a pod exists, maybe still
    # pulling its image) until a terminal condition; startTime marks that moment.
    if status.get("startTime") and (
        status.get("active") or status.get("ready") or status.get("failed")
    ):
        return "running", None, None, None
    return "waiting", None, None, None


# --- pods: one attempt each -----------------------------------------------------------------


class ContainerEnd(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    exit_code: int | None
    reason: str | None = None
    message: str | None = None  # the termination message (FallbackToLogsOnError: log tail)


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One pod of the Job (restartPolicy Never: each retry is a new pod)."""

    pod: str
    containers: list[str]  # init containers first, in spec order: the order of their logs
    ended: list[ContainerEnd]


def attempts_of(pods: Sequence[Mapping[str, Any]]) -> list[Attempt]:
    """The Job's pods as attempts, oldest first."""
    ordered = sorted(
        pods,
        key=lambda p: (
            str((p.get("metadata") or {}).get("creationTimestamp") or ""),
            resource_version(p) or 0,
            str((p.get("metadata") or {}).get("name")),
        ),
    )
    result = []
    for pod in ordered:
        spec = pod.get("spec") or {}
        names = [
            str(c.get("name"))
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        ]
        ended = []
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated is not None:
                code = terminated.get("exitCode")
                ended.append(
                    ContainerEnd(
                        name=str(cs.get("name")),
                        exit_code=int(code) if isinstance(code, int) else None,
                        reason=terminated.get("reason"),
                        message=terminated.get("message"),
                    )
                )
        result.append(
            Attempt(pod=str((pod.get("metadata") or {}).get("name")), containers=names, ended=ended)
        )
    return result


def main_end(attempt: Attempt | None) -> ContainerEnd | None:
    """How the attempt's main container ended (the one running dbt or SQLMesh); else the
    first container that failed."""
    if attempt is None:
        return None
    for end in attempt.ended:
        if end.name == MAIN_CONTAINER:
            return end
    return next((e for e in attempt.ended if e.exit_code), None)


# --- the run's outcome ----------------------------------------------------------------------


def parse_results(kind: ProjectKind, log: str) -> list[NodeSummary]:
    return parse_sqlmesh_output(log) if kind == "sqlmesh" else parse_dbt_output(log)


def outcome_of(
    view: JobView,
    attempts: Sequence[Attempt],
    last_log: str,
    kind: ProjectKind,
    *,
    now: datetime,
) -> Outcome:
    """The run's end from its (terminal) Job, its pods and the last attempt's log.

    ``last_log`` is parsed for the dbt/SQLMesh results, so a failed run names its model;
    when the pods are gone, a termination message (the log tail) stands in for it."""
    last = attempts[-1] if attempts else None
    end = main_end(last)
    if not last_log and end is not None and end.message:
        last_log = end.message
    results = parse_results(kind, last_log) if last_log else []
    end_time = view.end_time or view.deleted_at or now
    if view.phase == "succeeded":
        return Outcome(status="success", end_time=end_time, exit_code=0, results=results)
    exit_code = end.exit_code if end is not None else None
    tail = "\n".join(last_log.splitlines()[-SUMMARY_TAIL_LINES:])
    if view.reason == DEADLINE_REASON:
        limit = f" of {view.deadline_seconds} seconds" if view.deadline_seconds else ""
        error = f"The run took longer than its timeout{limit} and was stopped."
        if failed_nodes(results):
            error += " Before that: " + summarise_failure(kind, results, None, "")
        return Outcome(
            status="timed_out",
            end_time=end_time,
            exit_code=exit_code,
            error=error,
            results=results,
        )
    if end is not None:
        error = summarise_failure(kind, results, exit_code, tail) or (
            f"{kind} exited with code {exit_code}"
        )
        if end.reason not in _PLAIN_REASONS and end.reason is not None:
            error = f"{end.reason}: {error}"  # OOMKilled, ContainerCannotRun, ...
    else:
        # No pod left to say how it ended: the Job's own failure condition.
        error = summarise_failure(kind, results, None, "") if results else ""
        error = error or view.message or "The Kubernetes Job failed."
        if view.reason:
            error += f" ({view.reason})"
    if len(attempts) > 1:
        error += f" (after {len(attempts)} attempts)"
    return Outcome(
        status="failed", end_time=end_time, exit_code=exit_code, error=error, results=results
    )


def lost_outcome(view: JobView | None, namespace: str, name: str, *, now: datetime) -> Outcome:
    """A run whose Job is gone before its end was seen: deleted (``view``: the deletion
    was seen), or missing from a list (runyard may have stopped before creating it)."""
    where = f"{namespace}/{name}"
    if view is not None:
        error = (
            f"The Kubernetes Job {where} was deleted before it finished (by a person or a "
            "controller other than runyard), so its end and exit code are unknown."
        )
    else:
        error = (
            f"The Kubernetes Job {where} no longer exists and runyard did not see it end: it "
            "was deleted, or runyard stopped before it was created."
        )
    return Outcome(
        status="lost",
        end_time=(view.deleted_at if view is not None else None) or now,
        error=error,
    )
