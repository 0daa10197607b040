"""The Kubernetes executor: runs as Jobs, schedules as CronJobs, drift repair, run tracking.

It speaks to the cluster only through the gateway (``app.executors.k8s.gateway``, the one
module that imports the ``kubernetes`` client, builds it), so everything here is plain logic
against the ``KubeAPI`` protocol.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from app import metrics
from app.errors import ClusterError, ClusterUnavailable, RateLimited
from app.executors.k8s.labels import RUN_LABEL
from app.executors.k8s.live import JobSource, LiveJobs, read_logs
from app.executors.k8s.render import Manifests
from app.executors.k8s.sync import Cluster, ClusterConflict, CronJobSync
from app.executors.k8s.tracking.watch import KubernetesTracker, TrackerSource
from app.models import Job, Project, RunRecord
from app.ports import Launched, RunEvents, RunStarter, SyncReport
from app.settings import Settings
from app.store import Store
from app.types import Obj


class KubeAPI(Cluster, JobSource, TrackerSource, Protocol):
    """Everything runyard asks the API server (``gateway.KubeGateway``)."""

    def create_job(self, namespace: str, body: Obj) -> Obj: ...

    def resume_job(self, namespace: str, name: str) -> bool: ...

    def delete_job(self, namespace: str, name: str) -> None: ...

    def close(self) -> None:
        """Release the client's connections (at stop)."""
        ...


@dataclass(frozen=True)
class KubernetesFeatures:
    """What only a runyard on Kubernetes offers: the live jobs API, the manifests it applies,
    one pass of drift repair (``runyard reconcile``). ``Container.kubernetes`` is None on the
    local executor."""

    live: LiveJobs
    manifests: Manifests
    reconcile: Callable[[], SyncReport]


log = logging.getLogger("runyard.kubernetes")
# A reconcile pass in flight may be inside one API request: connect and read timeouts.
STOP_WAIT_SECONDS = 33.0


class KubernetesExecutor:
    name = "kubernetes"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        gateway: KubeAPI,
        manifests: Manifests,
        tracker: KubernetesTracker | None = None,
    ) -> None:
        self._store = store
        # Follows the Jobs to record how runs end (``track_runs``); None: nobody does.
        self.tracker = tracker
        self._settings = settings
        self.gateway = gateway
        self.manifests = manifests
        self.sync = CronJobSync(store, gateway, manifests.cronjob, settings.namespace_for)
        self.live = LiveJobs(store, gateway, settings.namespace_for)
        self._reconciling = threading.Lock()
        self.last_reconcile: float | None = None  # time.time() of the last finished pass
        self._stopping = threading.Event()
        self._loop: threading.Thread | None = None

    # -- runs --------------------------------------------------------------------------------

    def admit(self, org_id: str) -> None:
        """Every run is admitted: the cluster's quotas, not runyard, bound an org's pods."""

    def launch(self, run: RunRecord) -> Launched:
        if run.triggered_by == "scheduled":
            return self._resume(run)
        org_slug = self._store.orgs.slug_of(run.org_id) or ""
        body = self.manifests.job(run, org_slug)
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self.gateway.create_job(namespace, body)
        except ClusterConflict:
            # Already there: ours when a retried launch created it before; else a name clash.
            existing = self.gateway.read_job(namespace, name) or {}
            if (existing.get("metadata") or {}).get("labels", {}).get(RUN_LABEL) != run.id:
                raise ClusterError(
                    f"A Kubernetes Job named {name!r} already exists in namespace "
                    f"{namespace!r} and is not this run's; trigger the job again."
                ) from None
        if self.tracker is not None:
            self.tracker.watch_namespace(namespace)  # a new org's first run
        return Launched(job_name=name, namespace=namespace)

    def _resume(self, run: RunRecord) -> Launched:
        """Start a scheduled run: its CronJob created its Job suspended (render.py); letting
        it run is the launch. Resuming a Job that runs already changes nothing."""
        namespace, name = run.namespace or "", run.job_name or ""
        try:
            resumed = self.gateway.resume_job(namespace, name)
        except ClusterUnavailable as exc:
            # Not the run's fault, and its Job still waits: the run goes back to its place
            # in the queue, which tries again shortly (app/services/queue.py).
            raise RateLimited(f"{exc.detail} The run waits in the queue.") from None
        if not resumed:
            raise ClusterError(
                f"The Kubernetes Job {namespace}/{name} of this scheduled run was deleted "
                "while the run waited; the next scheduled fire makes a new one."
            )
        return Launched(job_name=name, namespace=namespace)

    def cancel(self, run: RunRecord) -> None:
        if run.job_name and run.namespace:
            if self.tracker is not None:  # the caller records "cancelled", not "lost"
                self.tracker.expect_deletion(run.namespace, run.job_name)
            self.gateway.delete_job(run.namespace, run.job_name)  # absent already: fine

    def live_logs(self, run: RunRecord) -> str | None:
        if not (run.job_name and run.namespace):
            return None
        return read_logs(self.gateway, run.namespace, run.job_name, None)

    # -- schedules ---------------------------------------------------------------------------

    def apply_job(self, project: Project, job: Job) -> None:
        self.sync.apply_job(project, job)
        if self.tracker is not None:  # a new org's first CronJob
            self.tracker.watch_namespace(self._settings.namespace_for(project.org_slug))

    def remove_job(self, project: Project, job: Job) -> None:
        self.sync.remove_job(project, job)

    def deploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport:
        return self.sync.deploy(project, jobs)

    def undeploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport:
        return self.sync.undeploy(project, jobs)

    def features(self) -> KubernetesFeatures:
        return KubernetesFeatures(
            live=self.live, manifests=self.manifests, reconcile=self.reconcile
        )

    def reconcile(self) -> SyncReport:
        """One pass of drift repair (the loop's, or `runyard reconcile`'s). Never two at once."""
        with self._reconciling:
            report = self.sync.reconcile()
            self.last_reconcile = time.time()
        if report.created or report.updated or report.deleted or report.failed:
            log.info(
                "reconcile: %d created, %d updated, %d deleted, %d unchanged, %d failed",
                report.created,
                report.updated,
                report.deleted,
                report.unchanged,
                report.failed,
            )
        return report

    # -- background work ---------------------------------------------------------------------

    def start(self) -> None:
        """Track runs (k8s_tracker); reconcile now and every RUNYARD_RECONCILE_INTERVAL
        seconds (0: never)."""
        if self.tracker is not None:
            self.tracker.start()
        if self._settings.reconcile_interval_seconds <= 0 or self._loop is not None:
            return
        self._stopping.clear()
        self._loop = threading.Thread(target=self._run_loop, name="k8s-reconcile", daemon=True)
        self._loop.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._loop is not None:
            self._loop.join(STOP_WAIT_SECONDS)
            self._loop = None
        if self.tracker is not None:
            self.tracker.stop()
        self.gateway.close()

    def _run_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reconcile()
            except ClusterUnavailable as exc:
                log.warning("reconcile skipped: %s", exc.detail)
            except Exception:
                log.exception("reconcile failed")
            self._stopping.wait(self._settings.reconcile_interval_seconds)


def track_runs(
    executor: KubernetesExecutor,
    store: Store,
    events: RunEvents,
    runs: RunStarter,
    settings: Settings,
) -> KubernetesTracker:
    """The tracker of the executor's Jobs, connected to it: built after the run service,
    through which it records the runs of the Jobs that CronJobs create (the service needs
    the executor first)."""
    tracker = KubernetesTracker(
        store,
        executor.gateway,
        events,
        settings.namespace_for,
        runs,
        log_cap_bytes=settings.log_cap_bytes,
        scope=settings.k8s_watch_scope,
        watch_threads=settings.k8s_watch_threads,
    )
    executor.tracker = tracker
    bind_lag_metrics(executor, tracker)
    return tracker


def bind_lag_metrics(executor: KubernetesExecutor, tracker: KubernetesTracker) -> None:
    """How far the cluster side may be behind: read at scrape time."""

    def age(moment: float | None) -> list[tuple[dict[str, str], float]]:
        return [] if moment is None else [({}, max(0.0, time.time() - moment))]

    metrics.GAUGES.bind(
        "runyard_reconcile_age_seconds",
        "Seconds since the last finished reconcile of CronJobs",
        lambda: age(executor.last_reconcile),
    )
    metrics.GAUGES.bind(
        "runyard_tracker_resync_age_seconds",
        "Seconds since the run tracker last listed every namespace",
        lambda: age(tracker.last_resync),
    )
    metrics.GAUGES.bind(
        "runyard_tracker_events_waiting",
        "Job events received from the watch and not handled yet",
        lambda: [({}, float(tracker.events_waiting()))],
    )
