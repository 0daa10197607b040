"""Run tracking on Kubernetes: Job events in, run records out.

Watch scope (RUNYARD_K8S_WATCH_SCOPE, docs/kubernetes.md). ``cluster``: one watch of
runyard's Jobs (its label selector) in every namespace, one thread and one connection
however many orgs; it needs the ClusterRole ``runyard-watch`` (list and watch Jobs and Pods,
nothing else). ``namespaces``: for operators who grant nothing cluster-wide, a pool of
RUNYARD_K8S_WATCH_THREADS threads shares the org namespaces (every org's, and every
namespace that still has an active run): a thread with one namespace holds its watch; a
thread with several visits them in turn, each visit a watch from where the last one ended
that stops once it has been idle for ``VISIT_IDLE_SECONDS``. ``auto`` (the default) tries a
cluster-wide list at start and uses ``namespaces`` when it is refused (401/403). New orgs
are picked up at the next resync, or at once when runyard launches a run or applies a
CronJob there (``watch_namespace``).

Each watch starts with a full list (its resourceVersion is where the watch resumes), reads
raw JSON lines (the client's models cost ~2.5 ms per event), resumes from the last
resourceVersion it saw after a timeout or a dropped connection, and lists again on 410 Gone.
A periodic resync lists again. Every list is also checked against the database: an active
run whose Job is in no list has lost its Job.

Processing. Watch threads only parse and enqueue; one dispatcher thread moves runs forward
(``k8s_dispatch``), and a small thread pool reads the logs of finished runs and records their
end (``k8s_finish``). Nothing polls a single Job: a burst of finished Jobs costs one pod list
per batch of 50 and one log read per container and attempt.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import msgspec

from app.errors import ClusterError, ClusterUnavailable
from app.executors.k8s.labels import SELECTOR
from app.executors.k8s.status import WatchExpired
from app.executors.k8s.tracking.dispatch import Dispatcher, Key, Listed, Seen
from app.executors.k8s.tracking.finish import Finisher, PodSource, RawStream
from app.ids import utcnow
from app.ports import RunEvents, RunStarter
from app.store import Store
from app.types import Obj

log = logging.getLogger("runyard.k8s_tracker")

WATCH_TIMEOUT_SECONDS = 300  # the server ends a watch after this; it resumes at once
VISIT_SECONDS = 1  # a pool thread's watch of one of its namespaces lasts at most this
VISIT_IDLE_SECONDS = 0.2  # and ends sooner when nothing came for this long

Scope = Literal["auto", "cluster", "namespaces"]


class TrackerSource(PodSource, Protocol):
    """What the tracker needs from the gateway (``kubernetes.KubeGateway``)."""

    def list_all_jobs(self, namespace: str | None, selector: str) -> tuple[list[Obj], str]:
        """Every matching Job (in every namespace for None) and the list's resourceVersion."""
        ...

    def can_watch_all_namespaces(self, selector: str) -> bool:
        """Whether runyard may list and watch Jobs in every namespace."""
        ...

    def watch_jobs(
        self,
        namespace: str | None,
        selector: str,
        resource_version: str,
        timeout_seconds: int,
        idle_seconds: float | None = None,
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


class _Position:
    """Where the watch of one namespace (or of all) resumes."""

    def __init__(self) -> None:
        self.version = ""  # empty: list first
        self.initial = True
        self.backoff = 0.5
        self.retry_at = 0.0  # time.monotonic()


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
        scope: Scope = "auto",
        watch_threads: int = 8,
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
        self.scope: Scope = scope  # what start() chose, once started
        self.watch_threads = max(1, watch_threads)
        self._lock = threading.Lock()  # guards the shards and the streams
        self._shards: list[list[str]] = []  # namespaces of each pool thread
        self._watched: set[str] = set()
        self._positions: dict[str | None, _Position] = {}
        self._streams: dict[int, RawStream] = {}  # by watching thread (-1: cluster)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_resync: float | None = None  # time.time() of the last full list

    @property
    def synced(self) -> threading.Event:
        """Set once every namespace was listed and handled (restart recovery is done)."""
        return self.dispatcher.synced

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Watch (each watch first lists, which also recovers runs that ended or vanished
        while runyard was down) and resync every ``resync_seconds``."""
        if self._threads:
            return
        self._stopping.clear()
        for target, name in ((self._dispatch, "k8s-track"), (self._resync_loop, "k8s-resync")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.scope = self._choose_scope()
        self.dispatcher.synced.clear()
        if self.scope == "cluster":
            self.dispatcher.initial = {None}
            self._spawn(self._cluster_loop, "k8s-watch")
            return
        namespaces = self._wanted_namespaces()
        self.dispatcher.initial = set(namespaces)
        if not namespaces:
            self.dispatcher.synced.set()
        self._shards = [[] for _ in range(self.watch_threads)]
        for namespace in namespaces:
            self.watch_namespace(namespace)
        for index in range(self.watch_threads):
            self._spawn(functools.partial(self._pool_loop, index), f"k8s-watch-{index}")

    def _choose_scope(self) -> Literal["cluster", "namespaces"]:
        if self.scope != "auto":
            return self.scope
        try:
            allowed = self._source.can_watch_all_namespaces(SELECTOR)
        except (ClusterUnavailable, ClusterError) as exc:
            log.warning("could not tell whether runyard may watch every namespace: %s", exc.detail)
            allowed = False
        if not allowed:
            log.info(
                "watching Jobs namespace by namespace (%d threads): runyard may not list Jobs "
                "in every namespace (bind the ClusterRole runyard-watch for one watch)",
                self.watch_threads,
            )
        return "cluster" if allowed else "namespaces"

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()  # ends a read blocked on the watch
        self._queue.put(None)
        for thread in self._threads:
            thread.join(10)
        self._threads.clear()
        self._shards = []
        self._watched.clear()
        self._positions.clear()  # a new start lists everything again

    def watch_namespace(self, namespace: str) -> None:
        """Make sure ``namespace`` is watched (a new org's first run or CronJob). The cluster
        watch sees every namespace already; the pool gives it to its least busy thread."""
        if not self._threads or self._stopping.is_set() or self.scope == "cluster":
            return
        with self._lock:
            if namespace in self._watched or not self._shards:
                return
            self._watched.add(namespace)
            index = min(range(len(self._shards)), key=lambda i: len(self._shards[i]))
            self._shards[index].append(namespace)
            # A thread holding the watch of its only namespace now has two to visit.
            holding = self._streams.get(index) if len(self._shards[index]) == 2 else None
        if holding is not None:
            holding.close()

    def expect_deletion(self, namespace: str, job_name: str) -> None:
        """runyard is about to delete this Job (cancel) and records the run's end itself:
        its deletion must not make the run ``lost``."""
        self.dispatcher.expect_deletion((namespace, job_name))

    def resync(self) -> None:
        """List again now and reconcile (also runs every ``resync_seconds``)."""
        complete = True
        targets: list[str | None] = [None]
        if self.scope != "cluster":
            targets = list(self._wanted_namespaces())
        for namespace in targets:
            if namespace is not None:
                self.watch_namespace(namespace)
            try:
                self._list(namespace, initial=False)
            except (ClusterUnavailable, ClusterError) as exc:
                complete = False
                log.warning("resync of %s failed: %s", namespace or "every namespace", exc.detail)
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

    def _list(self, namespace: str | None, *, initial: bool) -> str:
        """List the Jobs into the queue, then what the list held (for runs whose Job is
        missing); returns the list's resourceVersion."""
        asked_at = self._clock()
        items, version = self._source.list_all_jobs(namespace, SELECTOR)
        keys: list[Key] = []
        for obj in items:
            meta = obj.get("metadata") or {}
            where = namespace if namespace is not None else str(meta.get("namespace") or "")
            self._queue.put(Seen(where, obj, deleted=False))
            keys.append((where, str(meta.get("name"))))
        self._queue.put(Listed(namespace, frozenset(keys), asked_at, initial))
        return version

    def _visit(self, namespace: str | None, slot: int, timeout: int, idle: float | None) -> None:
        """List if needed, then follow one watch until it ends; failures back off."""
        position = self._positions.setdefault(namespace, _Position())
        if position.retry_at > time.monotonic():
            return
        what = namespace or "every namespace"
        try:
            if not position.version:
                position.version = self._list(namespace, initial=position.initial)
                position.initial = False
            stream = self._source.watch_jobs(
                namespace, SELECTOR, position.version, timeout, idle_seconds=idle
            )
            with self._lock:
                self._streams[slot] = stream
            try:
                self._read_watch(namespace, stream, position)
            finally:
                with self._lock:
                    self._streams.pop(slot, None)
                stream.close()
            position.backoff = 0.5
            return
        except WatchExpired:
            log.info("the watch of Jobs in %s expired (410 Gone): listing again", what)
            position.version = ""
            return
        except (ClusterUnavailable, ClusterError) as exc:
            log.warning("watching Jobs in %s: %s; retrying", what, exc.detail)
        except Exception:
            log.exception("watching Jobs in %s failed; retrying", what)
        position.retry_at = time.monotonic() + position.backoff
        position.backoff = min(position.backoff * 2, 30.0)

    def _cluster_loop(self) -> None:
        while not self._stopping.is_set():
            self._visit(None, -1, WATCH_TIMEOUT_SECONDS, None)
            position = self._positions[None]
            self._stopping.wait(max(0.0, position.retry_at - time.monotonic()))

    def _pool_loop(self, index: int) -> None:
        """Visit this thread's namespaces in turn; hold the watch when it has only one."""
        while not self._stopping.is_set():
            with self._lock:
                namespaces = list(self._shards[index]) if index < len(self._shards) else []
            if not namespaces:
                self._stopping.wait(0.2)
                continue
            alone = len(namespaces) == 1
            for namespace in namespaces:
                if self._stopping.is_set():
                    return
                if alone:
                    self._visit(namespace, index, WATCH_TIMEOUT_SECONDS, None)
                else:
                    self._visit(namespace, index, VISIT_SECONDS, VISIT_IDLE_SECONDS)
            now = time.monotonic()
            waits = [self._positions[n].retry_at - now for n in namespaces if n in self._positions]
            if waits and min(waits) > 0:
                self._stopping.wait(min(min(waits), 1.0))  # every namespace is backing off

    def _read_watch(self, namespace: str | None, stream: RawStream, position: _Position) -> None:
        """Enqueue the stream's events, keeping ``position`` at the last resourceVersion
        (BOOKMARKs move it too), so a broken stream resumes where it was."""
        for event in json_lines(stream.chunks()):
            if self._stopping.is_set():
                return
            kind = event.get("type")
            obj = event.get("object") or {}
            meta = obj.get("metadata") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise WatchExpired(str(obj.get("message") or "410 Gone"))
                where = namespace or "every namespace"
                raise ClusterError(f"The watch of Jobs in {where} failed: {obj.get('message')}")
            version = meta.get("resourceVersion")
            if version:
                position.version = str(version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                where = namespace if namespace is not None else str(meta.get("namespace") or "")
                self._queue.put(Seen(where, obj, deleted=kind == "DELETED"))

    def _resync_loop(self) -> None:
        while not self._stopping.wait(self.resync_seconds):
            try:
                self.resync()
            except Exception:
                log.exception("resync failed")
