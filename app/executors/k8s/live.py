"""The live jobs API: runyard's Kubernetes Job objects in the caller's org namespace, as they
are right now (not run records), and their pods' logs.

Pure with respect to the cluster client: it reads through a ``JobSource`` (the gateway in
``kubernetes.py``) in plain dicts. Only the caller's org namespace is ever read, and only Jobs
carrying ``app.kubernetes.io/managed-by=runyard``: another org's Job, or one runyard did not
create, is 404 exactly as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

import msgspec

from app.errors import NotFound
from app.executors.k8s.labels import (
    JOB_LABEL,
    JOB_NAME_LABEL,
    MANAGED_BY,
    MANAGER,
    PROJECT_ANNOTATION,
    PROJECT_LABEL,
    RUN_LABEL,
    SCHEDULED_ANNOTATION,
    SELECTOR,
)
from app.models import Principal
from app.store import Store
from app.types import Obj

LiveStatus = Literal["pending", "running", "succeeded", "failed"]
LIVE_STATUSES: tuple[str, ...] = get_args(LiveStatus)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # sorts Jobs without any time last


class JobSource(Protocol):
    """The Job and Pod calls of the gateway (``kubernetes.KubeGateway``)."""

    def list_jobs(self, namespace: str, selector: str) -> list[Obj]: ...

    def read_job(self, namespace: str, name: str) -> Obj | None: ...

    def list_pods(self, namespace: str, selector: str) -> list[Obj]: ...

    def pod_log(self, namespace: str, pod: str, container: str, tail: int | None) -> str | None:
        """The container's log; None while it has none (not started yet)."""
        ...


class LiveJob(msgspec.Struct, kw_only=True):
    id: str  # the Kubernetes Job name
    project: str | None
    status: LiveStatus
    start_time: datetime | None
    completion_time: datetime | None
    namespace: str
    project_id: str | None
    job_id: str | None
    run_id: str | None
    scheduled: bool  # created by the job's CronJob (else a one-off run)
    cronjob: str | None
    scheduled_time: datetime | None
    created_at: datetime | None
    active: int
    succeeded: int
    failed: int
    reason: str | None = None  # why it failed, from the Job's Failed condition
    message: str | None = None


class Condition(msgspec.Struct, kw_only=True):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None


class ContainerState(msgspec.Struct, kw_only=True):
    name: str
    state: str  # waiting, running or terminated
    reason: str | None = None
    exit_code: int | None = None
    restarts: int = 0


class PodSummary(msgspec.Struct, kw_only=True):
    name: str
    phase: str | None
    node: str | None
    start_time: datetime | None
    containers: list[ContainerState]


class LiveJobDetail(LiveJob, kw_only=True):
    conditions: list[Condition]
    pods: list[PodSummary]


class LiveJobList(msgspec.Struct):
    jobs: list[LiveJob]
    total: int


def _time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def job_status(obj: Obj) -> LiveStatus:
    """succeeded/failed from the Job's conditions (including the interim SuccessCriteriaMet
    and FailureTarget, set before the pods are cleaned up); running once a pod is ready;
    pending before that (not started, image pulling, suspended)."""
    status = obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    if status.get("ready"):
        return "running"
    if status.get("active"):
        return "pending"  # a pod exists but is not running yet
    if status.get("startTime") and (status.get("succeeded") or status.get("failed")):
        return "running"  # its pod ended; the controller has not concluded yet
    return "pending"


def _failure(obj: Obj) -> tuple[str | None, str | None]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return cond.get("reason"), cond.get("message")
    return None, None


class LiveJobs:
    def __init__(
        self, store: Store, source: JobSource, namespace_for: Callable[[str], str]
    ) -> None:
        self._store = store
        self._source = source
        self._namespace_for = namespace_for

    def list_jobs(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        project: str | None = None,
        limit: int = 100,
    ) -> LiveJobList:
        names = self._project_names(principal)
        selector = SELECTOR
        if project is not None:
            ids = [pid for pid, name in names.items() if name == project]
            if not ids:
                return LiveJobList([], 0)
            selector += f",{PROJECT_LABEL}={ids[0]}"
        namespace = self._namespace_for(principal.org_slug)
        objs = self._source.list_jobs(namespace, selector)
        views = [self._view(o, namespace, names) for o in objs]
        if status is not None:
            views = [v for v in views if v.status == status]
        views.sort(key=lambda v: v.start_time or v.created_at or _EPOCH, reverse=True)
        return LiveJobList(views[:limit], len(views))

    def get_job(self, principal: Principal, name: str) -> LiveJobDetail:
        namespace, obj = self._find(principal, name)
        pods = self._source.list_pods(namespace, f"{JOB_NAME_LABEL}={name}")
        view = self._view(obj, namespace, self._project_names(principal))
        return LiveJobDetail(
            **msgspec.structs.asdict(view),
            conditions=[
                Condition(
                    type=str(c.get("type")),
                    status=str(c.get("status")),
                    reason=c.get("reason"),
                    message=c.get("message"),
                    last_transition_time=_time(c.get("lastTransitionTime")),
                )
                for c in (obj.get("status") or {}).get("conditions") or []
            ],
            pods=[_pod_summary(p) for p in _oldest_first(pods)],
        )

    def logs(self, principal: Principal, name: str, tail: int | None) -> str:
        namespace, _ = self._find(principal, name)
        text = read_logs(self._source, namespace, name, tail) or ""
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail > 0 else ""
        return text

    # -- helpers -----------------------------------------------------------------------------

    def _find(self, principal: Principal, name: str) -> tuple[str, Obj]:
        namespace = self._namespace_for(principal.org_slug)
        obj = self._source.read_job(namespace, name)
        if (
            obj is None
            or ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) != MANAGER
        ):
            raise NotFound(f"No Kubernetes Job named {name!r} in your organization.")
        return namespace, obj

    def _project_names(self, principal: Principal) -> dict[str, str]:
        return {p.id: p.name for p in self._store.projects.for_org(principal.org_id)}

    def _view(self, obj: Obj, namespace: str, names: dict[str, str]) -> LiveJob:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        status = obj.get("status") or {}
        project_id = labels.get(PROJECT_LABEL)
        owner = next(
            (r for r in meta.get("ownerReferences") or [] if r.get("kind") == "CronJob"), None
        )
        run_id = labels.get(RUN_LABEL)
        if run_id is None:  # a scheduled Job: its run record, once the tracker has made one
            run = self._store.runs.by_k8s_job(namespace, str(meta.get("name")))
            run_id = run.id if run else None
        reason, message = _failure(obj)
        return LiveJob(
            id=str(meta.get("name")),
            project=names.get(project_id or "") or annotations.get(PROJECT_ANNOTATION),
            status=job_status(obj),
            start_time=_time(status.get("startTime")),
            completion_time=_time(status.get("completionTime")),
            namespace=namespace,
            project_id=project_id,
            job_id=labels.get(JOB_LABEL),
            run_id=run_id,
            scheduled=owner is not None or SCHEDULED_ANNOTATION in annotations,
            cronjob=owner.get("name") if owner else None,
            scheduled_time=_time(annotations.get(SCHEDULED_ANNOTATION)),
            created_at=_time(meta.get("creationTimestamp")),
            active=int(status.get("active") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            reason=reason,
            message=message,
        )


def _oldest_first(pods: list[Obj]) -> list[Obj]:
    return sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp")))


def _pod_summary(pod: Obj) -> PodSummary:
    status = pod.get("status") or {}
    containers = []
    for cs in status.get("containerStatuses") or []:
        state_name, state = next(iter((cs.get("state") or {"waiting": {}}).items()))
        containers.append(
            ContainerState(
                name=str(cs.get("name")),
                state=state_name,
                reason=(state or {}).get("reason"),
                exit_code=(state or {}).get("exitCode"),
                restarts=int(cs.get("restartCount") or 0),
            )
        )
    return PodSummary(
        name=str((pod.get("metadata") or {}).get("name")),
        phase=status.get("phase"),
        node=(pod.get("spec") or {}).get("nodeName"),
        start_time=_time(status.get("startTime")),
        containers=containers,
    )


def read_logs(source: JobSource, namespace: str, job_name: str, tail: int | None) -> str | None:
    """The logs of every container of every pod of the Job, oldest pod first (retries make
    several). With more than one stream, each starts with a ``==> pod/container <==`` line.
    None when no container has a log yet."""
    streams: list[tuple[str, str]] = []
    for pod in _oldest_first(source.list_pods(namespace, f"{JOB_NAME_LABEL}={job_name}")):
        spec = pod.get("spec") or {}
        pod_name = str((pod.get("metadata") or {}).get("name"))
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            text = source.pod_log(namespace, pod_name, str(container.get("name")), tail)
            if text:  # an empty stream (the launcher's init container) adds no header
                streams.append((f"{pod_name}/{container.get('name')}", text))
    if not streams:
        return None
    if len(streams) == 1:
        return streams[0][1]
    parts = []
    for header, text in streams:
        parts.append(f"==> {header} <==\n{text}")
        if text and not text.endswith("\n"):
            parts.append("\n")
    return "".join(parts)
