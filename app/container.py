"""Wiring: builds the store, the executor, the tracker and the services from settings.

The web layer, the CLI and the tests all build runyard through here, so there is one
place that decides which executor runs and how the pieces are connected. Everything is
built in dependency order from explicit arguments:

1. the store, the command policy, the run tracker and the notification outbox;
2. the executor, from those (``ExecutorDeps``); it knows nothing of the services;
3. the services, over the store and the executor;
4. what starts runs on its own, through the run service (``ports.RunStarter``): the
   embedded scheduler with the local executor, the Job tracker on Kubernetes (it records
   the runs of CronJobs). The run service needs the executor, so these come last and are
   then connected to the executor, which tells them about schedules and namespaces.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app import metrics
from app.executors.k8s.executor import KubernetesExecutor, KubernetesFeatures, track_runs
from app.executors.k8s.render import Manifests
from app.executors.local.executor import LocalExecutor, build_local_executor
from app.executors.local.paths import ProjectPaths
from app.ids import utcnow
from app.notify.outbound import OutboundPolicy
from app.notify.outbox import NotificationOutbox
from app.ports import Executor, RunEvents
from app.scheduler import Scheduler, fire_through
from app.services.audit import AuditService
from app.services.commands import CommandChecker
from app.services.environments import EnvironmentService
from app.services.jobs import JobService
from app.services.projects import ProjectService
from app.services.queue import RunQueue
from app.services.ratelimit import RateLimiter
from app.services.retention import RetentionWorker
from app.services.runs import RunService
from app.services.silence import SilenceWatch
from app.services.tokens import TokenService
from app.settings import ExecutorName, Settings
from app.store import Store
from app.tracker import RunTracker

log = logging.getLogger("runyard")


@dataclass(frozen=True)
class ExecutorDeps:
    """What an executor may be built from: all of it exists before the executor."""

    store: Store
    settings: Settings
    events: RunEvents  # the run tracker
    commands: CommandChecker
    clock: Callable[[], datetime]


ExecutorFactory = Callable[[ExecutorDeps], Executor]


def choose_executor(settings: Settings, env: dict[str, str] | None = None) -> ExecutorName:
    """RUNYARD_EXECUTOR when set; else kubernetes when a cluster configuration is found."""
    if settings.executor:
        return settings.executor
    env = dict(os.environ) if env is None else env
    if env.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    kubeconfig = env.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if any(Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p):
        return "kubernetes"
    return "local"


def build_executor(name: ExecutorName, deps: ExecutorDeps) -> Executor:
    if name == "kubernetes":
        # Imported here: the kubernetes client loads only when a cluster is used.
        from app.executors.k8s.gateway import build_kubernetes_executor

        return build_kubernetes_executor(deps.store, deps.settings, deps.commands)
    return build_local_executor(deps.store, deps.events, deps.settings, clock=deps.clock)


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        executor_factory: ExecutorFactory | None = None,
        clock: Callable[[], datetime] = utcnow,
        scheduler_thread: bool = True,
    ) -> None:
        """``executor_factory``: another executor (tests); ``scheduler_thread=False``: the
        embedded scheduler does not tick by itself (tests call ``scheduler.tick(now)``)."""
        self.settings = settings
        self.clock = clock
        self._scheduler_thread = scheduler_thread
        # 1. The store and what records runs.
        self.store = Store(settings.database, settings.secret_key)
        self.store.migrate()
        self.commands = CommandChecker.from_settings(settings.command_policy)
        self.outbound = OutboundPolicy(settings.webhook_allowed_hosts)
        self.tracker = RunTracker(self.store, settings.log_cap_bytes, clock)
        self.tracker.on_started.append(metrics.run_started)
        self.tracker.on_finished.append(metrics.run_finished)
        self._bind_gauges()
        self.notifications = NotificationOutbox(self.store, settings, self.outbound, clock=clock)
        self.notifications.attach(self.tracker)
        # 2. The executor.
        self.executor_name: ExecutorName = choose_executor(settings)
        deps = ExecutorDeps(self.store, settings, self.tracker, self.commands, clock)
        if executor_factory is not None:
            self.executor = executor_factory(deps)
        else:
            self.executor = build_executor(self.executor_name, deps)
        # 3. The services.
        self.retention = RetentionWorker(
            self.store,
            settings.run_retention_days,
            clock,
            audit_days=settings.audit_retention_days,
        )
        self.audit = AuditService(
            self.store,
            cursor_key=self.store.database.box.derive(b"audit cursors"),
            retention_days=settings.audit_retention_days,
            clock=clock,
        )
        self.tokens = TokenService(self.store)
        self.rate_limiter = RateLimiter(
            settings.rate_limit.requests, settings.rate_limit.per_seconds
        )
        self.projects = ProjectService(
            self.store,
            self.executor,
            self.outbound,
            clock,
            paths=ProjectPaths(settings.projects_root_path),
        )
        self.jobs = JobService(self.store, self.executor, self.commands, self.outbound, clock)
        self.environments = EnvironmentService(
            self.store, self.executor, clock, paths=ProjectPaths(settings.projects_root_path)
        )
        # Queued runs and the per-org cap (docs/queues.md). RUNYARD_LOCAL_MAX_RUNS_PER_ORG is
        # the default cap of the local executor, which counts its processes against it; on
        # Kubernetes only an org's own max_concurrent_runs caps it.
        local = isinstance(self.executor, LocalExecutor)
        self.queue = RunQueue(
            self.store, settings.local_max_runs_per_org if local else None, clock=clock
        )
        if isinstance(self.executor, LocalExecutor):
            default_cap = settings.local_max_runs_per_org

            def local_cap(org_id: str) -> int:
                cap = self.queue.cap_of(org_id)
                return default_cap if cap is None else cap

            self.executor.cap_of = local_cap
        self.runs = RunService(
            self.store,
            self.executor,
            self.tracker,
            self.commands,
            settings.namespace_for,
            clock,
            # Cursors stay valid across restarts for as long as the secret key does.
            cursor_key=self.store.database.box.derive(b"pagination cursors"),
            queue=self.queue,
        )
        self.silence = SilenceWatch(
            self.store,
            self.notifications,
            clock=clock,
            interval_seconds=settings.silence_interval_seconds,
            minute_seconds=settings.silence_minute_seconds,
        )
        # 4. What starts runs on its own, through the run service.
        self.scheduler: Scheduler | None = None
        self.kubernetes: KubernetesFeatures | None = None
        if isinstance(self.executor, LocalExecutor):
            self.scheduler = Scheduler(
                self.store,
                fire_through(self.runs),
                clock=clock,
                missed_fire_policy=settings.missed_fire_policy,
            )
            self.executor.schedules = self.scheduler
        elif isinstance(self.executor, KubernetesExecutor):
            if self.executor.tracker is None:
                track_runs(self.executor, self.store, self.tracker, self.runs, settings)
            self.kubernetes = self.executor.features()

    def _bind_gauges(self) -> None:
        metrics.GAUGES.bind(
            "runyard_runs_active",
            "Runs pending or running, by executor and status",
            lambda: [
                ({"executor": e, "status": s}, n) for e, s, n in self.store.runs.active_counts()
            ],
        )
        metrics.GAUGES.bind(
            "runyard_notifications",
            "Notifications by channel and state; pending and delivering are the outbox "
            "backlog, failed the deliveries that gave up",
            lambda: [
                ({"channel": kind, "state": state}, n)
                for kind, state, n in self.store.outbox.counts_by_kind()
            ],
        )

    def manifests(self) -> Manifests:
        """What the manifest endpoint renders with: the executor's on Kubernetes; with the
        local executor the same rendering, built when asked (the kubernetes client, whose
        models shape the overrides, loads only then)."""
        if self.kubernetes is not None:
            return self.kubernetes.manifests
        from app.executors.k8s.gateway import build_manifests

        return build_manifests(self.settings, self.commands, environments=self.store.environments)

    def start(self) -> None:
        """Start background work: the executor (re-attaching to runs, watches, reconcile),
        then the scheduler, retention and notification delivery."""
        self.executor.start()
        if self.scheduler is not None and self._scheduler_thread:
            self.scheduler.start()
        self.queue.start()  # after the executor re-attached to the runs it had
        self.retention.start()
        self.notifications.start()
        self.silence.start()

    def stop(self) -> None:
        self.silence.stop()
        self.retention.stop()
        if self.scheduler is not None:
            self.scheduler.stop()  # first: a fire in progress still launches normally
        self.queue.stop()
        self.executor.stop()
        self.notifications.stop()
        self.store.close()


class ServerLockHeld(RuntimeError):
    """Another runyard server holds the database; the message names it."""


def server_lock_path(database: str) -> Path | None:
    """``<database>.lock`` beside the database; None for an in-memory database."""
    if database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return path.with_name(path.name + ".lock")


def hold_server_lock(database: str) -> int | None:
    """Take the exclusive lock of the database's server, or raise ServerLockHeld naming
    the holder. Returns the lock file's descriptor: the lock lasts as long as it is open
    (the process's lifetime; the kernel releases it when the process dies, even by
    SIGKILL). Touches nothing else: the database is not opened."""
    path = server_lock_path(database)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
        os.close(fd)
        raise ServerLockHeld(
            f"another runyard server is serving the database {database!r} "
            f"({holder or 'holder unknown'}; lock file {str(path)!r}). Stop it first, or "
            "point this one at another database with RUNYARD_DATABASE. Nothing was changed."
        ) from None
    except OSError:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    note = f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, note.encode(), 0)
    return fd
