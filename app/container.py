"""Wiring: builds the store, the executor, the tracker and the services from settings.

The web layer, the CLI and the tests all build runyard through here, so there is one
place that decides which executor runs and how the pieces are connected.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from app import metrics
from app.ids import utcnow
from app.notify.outbox import NotificationOutbox
from app.ports import Executor
from app.services.commands import CommandChecker
from app.services.jobs import JobService
from app.services.outbound import OutboundPolicy
from app.executors.local.paths import ProjectPaths
from app.services.projects import ProjectService
from app.services.ratelimit import RateLimiter
from app.services.retention import RetentionWorker
from app.services.runs import RunService
from app.services.tokens import TokenService
from app.settings import ExecutorName, Settings
from app.store import Store
from app.tracker import RunTracker

log = logging.getLogger("runyard")

ExecutorFactory = Callable[["Container"], Executor]


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


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        executor_factory: ExecutorFactory | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store = Store(settings.database, settings.secret_key)
        self.store.migrate()
        self.commands = CommandChecker.from_settings(settings.command_policy)
        self.outbound = OutboundPolicy(settings.webhook_allowed_hosts)
        self.tracker = RunTracker(self.store, settings.log_cap_bytes, clock)
        self.tracker.on_started.append(metrics.run_started)
        self.tracker.on_finished.append(metrics.run_finished)
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
        self.notifications = NotificationOutbox(self.store, settings, self.outbound, clock=clock)
        self.notifications.attach(self.tracker)
        self.executor_name: ExecutorName = choose_executor(settings)
        factory = executor_factory or default_executor_factory(self.executor_name)
        self.executor = factory(self)
        self.retention = RetentionWorker(self.store, settings.run_retention_days, clock)
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
        self.runs = RunService(
            self.store,
            self.executor,
            self.tracker,
            self.commands,
            settings.namespace_for,
            clock,
            # Cursors stay valid across restarts for as long as the secret key does.
            cursor_key=self.store.database.box.derive(b"pagination cursors"),
        )

    def start(self) -> None:
        """Start background work: the executor's watchers and schedulers, retention."""
        self.executor.start()
        self.retention.start()
        self.notifications.start()

    def stop(self) -> None:
        self.retention.stop()
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


def default_executor_factory(name: ExecutorName) -> ExecutorFactory:
    if name == "kubernetes":
        from app.executors.k8s.gateway import build_kubernetes_executor

        kubernetes_factory: ExecutorFactory = build_kubernetes_executor
        return kubernetes_factory
    from app.executors.local.executor import build_local_executor

    local_factory: ExecutorFactory = build_local_executor
    return local_factory
