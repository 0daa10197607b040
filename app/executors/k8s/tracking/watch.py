"""Run tracking on Kubernetes: Job events in, run records out.

Watch scope. deploy/rbac.yaml binds runyard's Role per org namespace and grants nothing
cluster-wide, so there is one watch per namespace: every org's (RUNYARD_NAMESPACE_TEMPLATE)
and every namespace that still has an active run. New orgs are picked up at the next resync,
or at once when runyard launches a run or applies a CronJob there (``watch_namespace``).

Each watch starts with a full list (its resourceVersion is where the watch resumes), reads
raw JSON lines (the client's models cost ~2.5 ms per event), resumes from the last
resourceVersion it saw after a timeout or a dropped connection, and lists again on 410 Gone.
A periodic resync lists every namespace again. Every list is also checked against the
database: an active run whose Job is in no list has lost its Job.

Processing. Watch threads only parse and enqueue; one dispatcher thread moves runs forward
(``k8s_dispatch``), and a small thread pool reads the logs of finished runs and records their
end (``k8s_finish``). Nothing polls a single Job: a burst of finished Jobs costs one pod list
per batch of 50 and one log read per container and attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec

from app.errors import ClusterError, ClusterUnavailable
from app.executors.k8s.labels import SELECTOR
from app.executors.k8s.status import WatchExpired
from app.executors.k8s.tracking.dispatch import Dispatcher, Listed, Seen
from app.executors.k8s.tracking.finish import Finisher, PodSource, RawStream
from app.ids import utcnow
from app.ports import RunEvents, RunStarter
from app.store import Store
from app.types import Obj

log = logging.getLogger("runyard.k8s_tracker")

WATCH_TIMEOUT_SECONDS = 300  # the server ends a watch after this; it resumes at once


class TrackerSource(PodSource, Protocol):
    """What the tracker needs from the gateway (``kubernetes.KubeGateway``)."""

    def list_all_jobs(self, namespace: str, selector: str) -> tuple[list[Obj], str]:
        """Every matching Job and the list's resourceVersion."""
        ...

    def watch_jobs(
        self, namespace: str, selector: str, resource_version: str, timeout_seconds: int
    ) -> RawStream:
        """Raw JSON watch events, one per line; raises WatchExpired (410)."""
        ...


def json_lines(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Decoded JSON values from a stream of newline-separated JSON (a watch)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield msgspec.json.decode(line)
    if pending.strip():
        yield msgspec.json.decode(pending)


class KubernetesTracker:
    """Watches runyard's Jobs in every org namespace and keeps their runs' records."""

    def __init__(
        self,
        store: Store,
        source: TrackerSource,
        events: RunEvents,
        namespace_for: Callable[[str], str],
        runs: RunStarter,
        *,
        log_cap_bytes: int,
        resync_seconds: float = 60.0,
        workers: int = 8,
        launch_grace_seconds: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._source = source
        self._namespace_for = namespace_for
        self.resync_seconds = resync_seconds
        self._clock = clock
        write_lock = threading.Lock()
        finisher = Finisher(store, source, events, log_cap_bytes, clock, write_lock)
        self.dispatcher = Dispatcher(
            store,
            events,
            finisher,
            namespace_for,
            runs,
            workers=max(1, workers),
            launch_grace=timedelta(seconds=launch_grace_seconds),
            write_lock=write_lock,
            clock=clock,
        )
        self._queue = self.dispatcher.queue
        self._lock = threading.Lock()  # guards the watchers and their streams
        self._watchers: dict[str, threading.Thread] = {}
        self._streams: dict[str, RawStream] = {}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_resync: float | None = None  # time.time() of the last full list

    @property
    def synced(self) -> threading.Event:
        """Set once every namespace was listed and handled (restart recovery is done)."""
        return self.dispatcher.synced

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Watch every namespace (each first lists, which also recovers runs that ended or
        vanished while runyard was down) and resync every ``resync_seconds``."""
        if self._threads:
            return
        self._stopping.clear()
        for target, name in ((self._dispatch, "k8s-track"), (self._resync_loop, "k8s-resync")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        namespaces = self._wanted_namespaces()
        self.dispatcher.synced.clear()
        self.dispatcher.initial = set(namespaces)
        if not namespaces:
            self.dispatcher.synced.set()
        for namespace in namespaces:
            self.watch_namespace(namespace)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            streams = list(self._streams.values())
            watchers = list(self._watchers.values())
            self._watchers.clear()
        for stream in streams:
            stream.close()  # ends a read blocked on the watch
        self._queue.put(None)
        for thread in [*self._threads, *watchers]:
            thread.join(10)
        self._threads.clear()

    def watch_namespace(self, namespace: str) -> None:
        """Make sure ``namespace`` is watched (a new org's first run or CronJob)."""
        if not self._threads or self._stopping.is_set():
            return
        with self._lock:
            if namespace in self._watchers:
                return
            thread = threading.Thread(
                target=self._watch_loop, args=(namespace,), name=f"k8s-watch-{namespace}"
            )
            thread.daemon = True
            self._watchers[namespace] = thread
        thread.start()

    def expect_deletion(self, namespace: str, job_name: str) -> None:
        """runyard is about to delete this Job (cancel) and records the run's end itself:
        its deletion must not make the run ``lost``."""
        self.dispatcher.expect_deletion((namespace, job_name))

    def resync(self) -> None:
        """List every namespace now and reconcile (also runs every ``resync_seconds``)."""
        complete = True
        for namespace in self._wanted_namespaces():
            self.watch_namespace(namespace)
            try:
                self._list(namespace, initial=False)
            except (ClusterUnavailable, ClusterError) as exc:
                complete = False
                log.warning("resync of namespace %s failed: %s", namespace, exc.detail)
        if complete:
            self.last_resync = time.time()

    def events_waiting(self) -> int:
        """Job events received and not yet handled (a backlog means the tracker lags)."""
        return self._queue.qsize()

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until everything received so far is handled (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.dispatcher.busy():
                return True
            time.sleep(0.01)
        return False

    # --- watching -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.dispatcher.run(self._stopping)

    def _wanted_namespaces(self) -> list[str]:
        wanted = {self._namespace_for(org.slug) for org in self._store.orgs.all()}
        wanted |= {r.namespace for r in self._store.runs.active("kubernetes") if r.namespace}
        return sorted(wanted)

    def _list(self, namespace: str, *, initial: bool) -> str:
        """List the namespace's Jobs into the queue, then what the list held (for runs whose
        Job is missing); returns the list's resourceVersion."""
        asked_at = self._clock()
        items, version = self._source.list_all_jobs(namespace, SELECTOR)
        names = []
        for obj in items:
            self._queue.put(Seen(namespace, obj, deleted=False))
            names.append(str((obj.get("metadata") or {}).get("name")))
        self._queue.put(Listed(namespace, frozenset(names), asked_at, initial))
        return version

    def _watch_loop(self, namespace: str) -> None:
        position: list[str] = []  # the resourceVersion to resume from; empty: list first
        backoff = 0.5
        initial = True
        while not self._stopping.is_set():
            try:
                if not position:
                    position.append(self._list(namespace, initial=initial))
                    initial = False
                stream = self._source.watch_jobs(
                    namespace, SELECTOR, position[0], WATCH_TIMEOUT_SECONDS
                )
                with self._lock:
                    self._streams[namespace] = stream
                try:
                    self._read_watch(namespace, stream, position)
                finally:
                    with self._lock:
                        self._streams.pop(namespace, None)
                    stream.close()
                backoff = 0.5
            except WatchExpired:
                log.info("the watch of Jobs in %s expired (410 Gone): listing again", namespace)
                position.clear()
            except (ClusterUnavailable, ClusterError) as exc:
                log.warning("watching Jobs in %s: %s; retrying", namespace, exc.detail)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:
                log.exception("watching Jobs in %s failed; retrying", namespace)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _read_watch(self, namespace: str, stream: RawStream, position: list[str]) -> None:
        """Enqueue the stream's events, keeping ``position`` at the last resourceVersion
        (BOOKMARKs move it too), so a broken stream resumes where it was."""
        for event in json_lines(stream.chunks()):
            if self._stopping.is_set():
                return
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise WatchExpired(str(obj.get("message") or "410 Gone"))
                raise ClusterError(f"The watch of Jobs in {namespace} failed: {obj.get('message')}")
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                position[:] = [str(version)]
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._queue.put(Seen(namespace, obj, deleted=kind == "DELETED"))

    def _resync_loop(self) -> None:
        while not self._stopping.wait(self.resync_seconds):
            try:
                self.resync()
            except Exception:
                log.exception("resync failed")
