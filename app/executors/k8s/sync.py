"""Keeps runyard's CronJobs in step with the database: deploy, undeploy, one job, reconcile.

Pure with respect to the cluster client: it talks to a ``Cluster`` (the gateway in
``kubernetes.py``) in plain dicts, so it needs no ``kubernetes`` import.

How an object is written. The rendered CronJob is compared with the live one, and written
only when they differ. Writes are full replacements (PUT) carrying the live
``resourceVersion``: the stored object becomes exactly the rendered one (a strategic-merge
patch would keep stale list entries such as a removed env var), and a concurrent change by
someone else makes the write fail with 409 instead of being overwritten blindly.

How objects are compared (``same``). Every field runyard renders must be equal (quantities
compared by value, "0.5" == "500m"), lists must have the same length, and the live object may
carry extra fields only where the API server fills a default and only with that default
value. So server defaulting never causes a write, while a hand edit of anything runyard sets,
or one that adds a container, an env var or a privileged flag, is reverted.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from app.errors import ClusterError, ClusterUnavailable, RunyardError
from app.executors.k8s.labels import JOB_LABEL, MANAGED_BY, MANAGER, PROJECT_LABEL, SELECTOR
from app.models import Job, Project, SyncState
from app.naming import cronjob_name
from app.ports import SyncReport
from app.store import Store
from app.types import Obj

log = logging.getLogger("runyard.kubernetes")

MAX_ERRORS = 50  # a report lists at most this many errors; the count is always exact
WRITERS = 8  # CronJob writes in flight at once during a deploy or a reconcile


class ClusterConflict(ClusterError):
    """409 from the API server: the name is taken, or the object changed since it was read."""


class Cluster(Protocol):
    """The CronJob calls of the gateway (``kubernetes.KubeGateway``)."""

    def list_cronjobs(self, namespace: str, selector: str) -> list[Obj]: ...

    def read_cronjob(self, namespace: str, name: str) -> Obj | None: ...

    def create_cronjob(self, namespace: str, body: Obj) -> Obj: ...

    def replace_cronjob(self, namespace: str, name: str, body: Obj) -> Obj: ...

    def delete_cronjob(self, namespace: str, name: str, uid: str | None = None) -> None: ...


# --- comparing ---------------------------------------------------------------------------

_ANY = object()
# Fields the API server adds to CronJobs, with the value it adds. Anything else that the
# live object has and runyard did not render counts as a difference.
SERVER_DEFAULTS: dict[str, Any] = {
    "creationTimestamp": None,  # empty template metadata
    "completionMode": "NonIndexed",
    "completions": 1,
    "parallelism": 1,
    # jobTemplate.spec's default. runyard renders both the CronJob's own suspend and
    # jobTemplate.spec.suspend (true: scheduled Jobs wait for runyard, render.py), so a live
    # false there differs from the rendered true and is reverted.
    "suspend": False,
    "podReplacementPolicy": "Failed",  # the default when a podFailurePolicy is set
    "manualSelector": None,
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "serviceAccount": _ANY,  # the deprecated mirror of serviceAccountName
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "imagePullPolicy": ("Always", "IfNotPresent"),  # depends on the image tag
    "defaultMode": 420,  # configMap and secret volumes
}
_QUANTITY_MAPS = frozenset({"requests", "limits"})
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{s: Decimal(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


def parse_quantity(text: Any) -> Decimal | None:
    """A Kubernetes quantity ("500m", "1Gi", "2", "1e3") as a number; None if it is not one."""
    match = _QUANTITY_RE.match(str(text).strip())
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
        if suffix[:1] in ("e", "E"):
            return value * (Decimal(10) ** int(suffix[1:]))
        return value * _SUFFIX[suffix]
    except (InvalidOperation, KeyError):
        return None


def _default_ok(key: str, value: Any) -> bool:
    if key not in SERVER_DEFAULTS:
        return False
    allowed = SERVER_DEFAULTS[key]
    if allowed is _ANY:
        return True
    return value in allowed if isinstance(allowed, tuple) else bool(value == allowed)


def same(want: Any, have: Any, *, quantities: bool = False) -> bool:
    """Whether the live value ``have`` is what runyard rendered as ``want`` (see the module
    docstring for the rules)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        for key, value in want.items():
            child_quantities = quantities or key in _QUANTITY_MAPS
            if key not in have or not same(value, have[key], quantities=child_quantities):
                return False
        return all(_default_ok(k, have[k]) for k in have.keys() - want.keys())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(same(w, h) for w, h in zip(want, have, strict=True))
        )
    if quantities:
        amount = parse_quantity(want)
        return amount is not None and amount == parse_quantity(have)
    return bool(want == have) and type(want) is type(have)


def up_to_date(desired: Obj, live: Obj) -> bool:
    """The live CronJob needs no write: its spec is the rendered one, and it carries runyard's
    labels and annotations (others' labels and annotations are left alone)."""
    want_meta, have_meta = desired.get("metadata") or {}, live.get("metadata") or {}
    for part in ("labels", "annotations"):
        have = have_meta.get(part) or {}
        if any(have.get(k) != v for k, v in (want_meta.get(part) or {}).items()):
            return False
    return same(desired.get("spec"), live.get("spec"))


def replacement(desired: Obj, live: Obj) -> Obj:
    """The body of a PUT: the rendered object, with the live resourceVersion (so a concurrent
    change is a 409, not lost) and the labels and annotations others put on the object."""
    live_meta = live.get("metadata") or {}
    meta = dict(desired["metadata"])
    meta["resourceVersion"] = live_meta.get("resourceVersion")
    meta["labels"] = {**(live_meta.get("labels") or {}), **meta.get("labels", {})}
    meta["annotations"] = {**(live_meta.get("annotations") or {}), **meta.get("annotations", {})}
    return {**desired, "metadata": meta}


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


# --- syncing -----------------------------------------------------------------------------

Render = Callable[[Project, Job], "Obj | None"]


class CronJobSync:
    """Deploy, undeploy, apply one job, and reconcile everything, against a ``Cluster``.

    ``render(project, job)`` returns the job's CronJob (None for a job without a schedule)
    or raises a RunyardError when it cannot (no image, a command that no longer validates).
    """

    def __init__(
        self, store: Store, cluster: Cluster, render: Render, namespace_for: Callable[[str], str]
    ) -> None:
        self._store = store
        self._cluster = cluster
        self._render = render
        self._namespace_for = namespace_for

    # -- the Executor calls ------------------------------------------------------------------

    def deploy(self, project: Project, jobs: Iterable[Job]) -> SyncReport:
        """One LIST of the project's CronJobs, then a write only for what differs."""
        jobs = list(jobs)
        report = SyncReport()
        namespace = self._namespace_for(project.org_slug)
        try:
            live = self._cluster.list_cronjobs(namespace, _project_selector(project.id))
        except ClusterUnavailable as exc:
            self._mark_all(jobs, "pending", exc.detail)
            raise
        self._sync_project(project, jobs, {_name(o): o for o in live}, report)
        return report

    def undeploy(self, project: Project, jobs: Iterable[Job]) -> SyncReport:
        report = SyncReport()
        namespace = self._namespace_for(project.org_slug)
        for obj in self._cluster.list_cronjobs(namespace, _project_selector(project.id)):
            self._delete(namespace, obj, report)
        if report.failed:
            raise ClusterError("; ".join(report.errors))
        self._mark_all(jobs, "not_deployed")
        return report

    def apply_job(self, project: Project, job: Job) -> None:
        desired = self._render(project, job)
        namespace = self._namespace_for(project.org_slug)
        if desired is None:  # no schedule (any more): no CronJob
            self.remove_job(project, job)
            return
        live = self._cluster.read_cronjob(namespace, _name(desired))
        if live is not None and not _same_owner(live, desired):
            raise _name_taken(namespace, live)
        self._write(namespace, desired, live)

    def remove_job(self, project: Project, job: Job) -> None:
        """Delete the job's CronJob by its current name, if it is this job's."""
        namespace = self._namespace_for(project.org_slug)
        live = self._cluster.read_cronjob(namespace, cronjob_name(project.name, job.name))
        if live is not None and _labels(live).get(JOB_LABEL) == job.id:
            uid = (live.get("metadata") or {}).get("uid")
            self._cluster.delete_cronjob(namespace, _name(live), uid)

    def reconcile(self) -> SyncReport:
        """Bring every org namespace back to the database: deployed projects' CronJobs created
        or reverted, runyard's CronJobs of deleted or undeployed jobs and projects removed.
        Raises ClusterUnavailable when the API cannot be reached at all."""
        report = SyncReport()
        deployed: dict[str, list[Project]] = {}
        for project in self._store.projects.list_deployed():
            deployed.setdefault(project.org_id, []).append(project)
        for org in self._store.orgs.all():
            projects = deployed.get(org.id, [])
            namespace = self._namespace_for(org.slug)
            try:
                live = self._cluster.list_cronjobs(namespace, SELECTOR)
            except ClusterError as exc:
                # An org with nothing deployed may have no namespace (or no RoleBinding) yet:
                # that is not worth an error every interval.
                if projects:
                    _fail(report, exc.detail)
                continue
            by_project: dict[str, dict[str, Obj]] = {}
            for obj in live:
                by_project.setdefault(_labels(obj).get(PROJECT_LABEL, ""), {})[_name(obj)] = obj
            for project in projects:
                jobs = self._store.jobs.for_project(project.id)
                self._sync_project(project, jobs, by_project.pop(project.id, {}), report)
            for leftovers in by_project.values():  # projects deleted or not deployed
                for obj in leftovers.values():
                    self._delete(namespace, obj, report)
        return report

    # -- the work ----------------------------------------------------------------------------

    def _sync_project(
        self, project: Project, jobs: list[Job], live: dict[str, Obj], report: SyncReport
    ) -> None:
        """Render every job, then write what differs: up to WRITERS requests at a time (on a
        real API server each write is a round trip of 10-20 ms; 1,000 in a row take long)."""
        namespace = self._namespace_for(project.org_slug)
        plan: list[tuple[Job, Obj, Obj | None]] = []
        for job in jobs:
            try:
                desired = self._render(project, job)
            except RunyardError as exc:
                _fail(report, f"job {job.name!r}: {exc.detail}")
                self._mark(job, "pending", exc.detail)
                continue
            if desired is None:  # no schedule: nothing to keep in the cluster
                self._mark(job, "in_sync")
            else:
                plan.append((job, desired, live.pop(_name(desired), None)))
        unreachable = threading.Event()  # after the first, the rest are not tried

        def attempt(step: tuple[Job, Obj, Obj | None]) -> str | RunyardError:
            if unreachable.is_set():
                return ClusterUnavailable("not tried: the Kubernetes API could not be reached")
            try:
                return self._write(namespace, step[1], step[2])
            except ClusterUnavailable as exc:
                unreachable.set()
                return exc
            except RunyardError as exc:
                return exc

        with ThreadPoolExecutor(WRITERS, thread_name_prefix="k8s-sync") as pool:
            outcomes = list(pool.map(attempt, plan))
        first_unreachable: ClusterUnavailable | None = None
        for (job, _, _), outcome in zip(plan, outcomes, strict=True):
            if isinstance(outcome, str):
                setattr(report, outcome, getattr(report, outcome) + 1)
                self._mark(job, "in_sync")
            elif isinstance(outcome, ClusterUnavailable):
                first_unreachable = first_unreachable or outcome
                self._mark(job, "pending", first_unreachable.detail)
            else:
                _fail(report, f"job {job.name!r}: {outcome.detail}")
                self._mark(job, "pending", outcome.detail)
        if first_unreachable is not None:
            raise first_unreachable
        for obj in live.values():  # runyard's CronJobs of this project no job wants
            self._delete(namespace, obj, report)

    def _write(self, namespace: str, desired: Obj, live: Obj | None) -> str:
        """Create, replace or leave alone; returns the SyncReport counter to bump."""
        for _attempt in range(3):
            if live is None:
                try:
                    self._cluster.create_cronjob(namespace, desired)
                except ClusterConflict:
                    live = self._cluster.read_cronjob(namespace, _name(desired))
                    if live is None or not _same_owner(live, desired):
                        raise _name_taken(namespace, desired) from None
                    continue
                return "created"
            if up_to_date(desired, live):
                return "unchanged"
            try:
                self._cluster.replace_cronjob(namespace, _name(desired), replacement(desired, live))
            except ClusterConflict:  # changed since it was read: read it again and compare
                live = self._cluster.read_cronjob(namespace, _name(desired))
                continue
            return "updated"
        raise ClusterError(
            f"CronJob {namespace}/{_name(desired)} kept changing while runyard wrote it; "
            "runyard tries again at the next reconcile."
        )

    def _delete(self, namespace: str, obj: Obj, report: SyncReport) -> None:
        try:
            self._cluster.delete_cronjob(namespace, _name(obj), obj["metadata"].get("uid"))
        except ClusterError as exc:
            _fail(report, exc.detail)
            return
        report.deleted += 1

    def _mark(self, job: Job, state: SyncState, error: str | None = None) -> None:
        if (job.sync_state, job.sync_error) != (state, error):
            self._store.jobs.set_sync(job.id, state, error)
            job.sync_state, job.sync_error = state, error

    def _mark_all(self, jobs: Iterable[Job], state: SyncState, error: str | None = None) -> None:
        for job in jobs:
            self._mark(job, state, error)


def _same_owner(live: Obj, desired: Obj) -> bool:
    """The live CronJob is runyard's and of the same project (then runyard may rewrite it;
    "a-b" + "c" and "a" + "b-c" are both named "a-b-c")."""
    labels, wanted = _labels(live), _labels(desired)
    return labels.get(MANAGED_BY) == MANAGER and labels.get(PROJECT_LABEL) == wanted.get(
        PROJECT_LABEL
    )


def _project_selector(project_id: str) -> str:
    return f"{SELECTOR},{PROJECT_LABEL}={project_id}"


def _name_taken(namespace: str, obj: Obj) -> ClusterError:
    return ClusterError(
        f"A CronJob named {_name(obj)!r} already exists in namespace {namespace!r} and does not "
        "belong to this project (another project's job, or not created by runyard). Rename "
        "the job or the project, or remove that CronJob."
    )


def _fail(report: SyncReport, message: str) -> None:
    report.failed += 1
    if len(report.errors) < MAX_ERRORS:
        report.errors.append(message)
    log.warning("cronjob sync failed: %s", message)
