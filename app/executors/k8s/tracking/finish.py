"""Recording the end of Kubernetes runs: pod logs first, then the terminal status.

The tracker hands over batches of runs whose Job reached a terminal state (or vanished).
``read_batch`` (on the pipeline's thread pool, ``k8s_pipeline``) lists the pods of all the
batch's Jobs in one request (``controller-uid in (...)``), reads every container's log of
every attempt, and works out each run's end; ``record`` (on the pipeline's one writer thread)
stores the log (``RunTracker.log``, at most RUNYARD_LOG_CAP_BYTES: head and tail around a
marker) and then the end (``RunTracker.finished``), so that notifications and the API see
the logs with the status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from app.errors import ClusterError, ClusterUnavailable
from app.executors.k8s.labels import CONTROLLER_UID_LABEL, JOB_NAME_LABEL, MAIN_CONTAINER
from app.executors.k8s.status import (
    Attempt,
    JobView,
    attempts_of,
    lost_outcome,
    outcome_of,
)
from app.executors.k8s.tracking.steps import (
    finish_steps,
    read_steps,
    step_results,
    steps_error,
)
from app.models import RunRecord, RunStep
from app.ports import Outcome, RunEvents
from app.store import Store
from app.types import Obj

log = logging.getLogger("runyard.k8s_tracker")

SELECTOR_NAMES_MAX = 50  # Jobs per pod list: keeps the selector (and the URL) short


class RawStream(Protocol):
    """A streamed response body (``kubernetes.RawStream``)."""

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class PodSource(Protocol):
    """The gateway's pod calls (``kubernetes.KubeGateway``)."""

    def list_pods(self, namespace: str, selector: str) -> list[Obj]: ...

    def pod_log_chunks(self, namespace: str, pod: str, container: str) -> RawStream | None: ...


class Finish(msgspec.Struct, kw_only=True):
    """A run to record as ended: from its terminal Job (``view``), or ``lost``."""

    namespace: str
    name: str
    run_id: str
    view: JobView | None
    lost: bool = False
    tries: int = 0


class Ending(msgspec.Struct, kw_only=True):
    """How a run ended, ready to be recorded."""

    item: Finish
    pending: bool  # never seen running: record its start too
    text: str
    outcome: Outcome
    # A run of steps (docs/steps.md): the step records read from the pod's log, and the
    # log cut at each step's start (empty: stored in one piece).
    steps: list[RunStep] | None = None
    pieces: list[tuple[int | None, str]] = msgspec.field(default_factory=list)


class Finisher:
    def __init__(
        self,
        store: Store,
        source: PodSource,
        events: RunEvents,
        log_cap_bytes: int,
        clock: Callable[[], datetime],
        write_lock: threading.Lock,
    ) -> None:
        self._store = store
        self._source = source
        self._events = events
        self._cap = max(1024, log_cap_bytes)
        self._clock = clock
        self._write_lock = write_lock

    def read_batch(
        self, namespace: str, items: Sequence[Finish]
    ) -> tuple[list[Ending], list[Finish]]:
        """How every run of the batch (one namespace) ended, with its log: HTTP and parsing,
        no writes (``record`` writes, on one thread). Also returns the runs to try again
        later because the cluster could not be read."""
        try:
            pods = self._pods(namespace, items)
        except (ClusterUnavailable, ClusterError) as exc:
            log.warning("could not list the pods of finished runs: %s", exc.detail)
            return [], list(items)
        endings, retry = [], []
        for item in items:
            try:
                ending = self._ending(item, pods.get(item.view.uid if item.view else item.name, []))
            except (ClusterUnavailable, ClusterError) as exc:
                log.warning(
                    "could not read the logs of a finished run: %s",
                    exc.detail,
                    extra={"run_id": item.run_id},
                )
                retry.append(item)
                continue
            if ending is not None:
                endings.append(ending)
        return endings, retry

    def record(self, ending: Ending) -> None:
        """Store the log, then the end: notifications and the API see both at once."""
        run_id, view = ending.item.run_id, ending.item.view
        with self._write_lock:
            # Stored once: a pass that died between the log and the status (a crash) left
            # the log; the retry must not append it twice.
            if ending.text and not self._store.runs.has_log(run_id):
                if ending.steps is not None and ending.pieces:
                    for index, piece in ending.pieces:
                        if index is not None:  # where the step's part of the log starts
                            ending.steps[index].log_seq = self._store.runs.next_log_seq(run_id)
                        self._events.log(run_id, piece)
                else:
                    self._events.log(run_id, ending.text)
            if ending.steps is not None:
                self._store.runs.set_steps(run_id, ending.steps, self._clock())
            if ending.pending and view is not None and view.start_time:
                self._events.started(run_id, view.start_time)
            self._events.finished(run_id, ending.outcome)

    def _pods(self, namespace: str, items: Iterable[Finish]) -> dict[str, list[Obj]]:
        """The pods of the batch's Jobs, by Job uid (by name for a vanished Job, whose uid is
        unknown): one list for all of them, not one per Job."""
        uids = sorted({i.view.uid for i in items if i.view is not None and i.view.uid})
        found: dict[str, list[Obj]] = {}
        for start in range(0, len(uids), SELECTOR_NAMES_MAX):
            part = uids[start : start + SELECTOR_NAMES_MAX]
            selector = f"{CONTROLLER_UID_LABEL} in ({','.join(part)})"
            for pod in self._source.list_pods(namespace, selector):
                uid = ((pod.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_UID_LABEL)
                found.setdefault(str(uid), []).append(pod)
        for item in items:
            if item.view is None or not item.view.uid:
                selector = f"{JOB_NAME_LABEL}={item.name}"
                found[item.name] = self._source.list_pods(namespace, selector)
        return found

    def _ending(self, item: Finish, pods: list[Obj]) -> Ending | None:
        record = self._store.runs.record(item.run_id)
        if record is None or record.is_terminal:
            return None  # cancelled meanwhile, or recorded by an earlier pass
        attempts = attempts_of(pods)
        streams = self._read_logs(item.namespace, attempts)
        text = assemble_log(streams, len(attempts), self._cap)
        now = self._clock()
        if item.lost or item.view is None or not item.view.terminal:
            outcome = lost_outcome(item.view, item.namespace, item.name, now=now)
        else:
            last = _last_main_log(streams, attempts)
            outcome = outcome_of(item.view, attempts, last, record.snapshot.project_kind, now=now)
        ending = Ending(item=item, pending=record.status == "pending", text=text, outcome=outcome)
        if record.snapshot.steps:
            _with_steps(ending, record, _last_main_log(streams, attempts))
        return ending

    def _read_logs(self, namespace: str, attempts: Sequence[Attempt]) -> list[LogStream]:
        streams = []
        for attempt in attempts:
            for container in attempt.containers:
                stream = self._source.pod_log_chunks(namespace, attempt.pod, container)
                if stream is None:
                    continue  # never started, or the pod is already gone
                kept = HeadTail(self._cap)
                try:
                    for chunk in stream.chunks():
                        kept.feed(chunk)
                finally:
                    stream.close()
                text = kept.text()
                if text:  # an empty stream (the launcher's init container) adds no header
                    streams.append(LogStream(attempt.pod, container, text))
        return streams


def _with_steps(ending: Ending, record: RunRecord, last_log: str) -> None:
    """The step records of a run of steps, from the markers its launcher wrote in the
    last attempt's log; its results per step, and an error naming the failed step."""
    plans, kind = record.snapshot.steps, record.snapshot.project_kind
    read = read_steps(last_log, plans)
    outcome = ending.outcome
    finish_steps(read, outcome.status)
    results = step_results(read, plans, kind)
    error = outcome.error
    if outcome.status == "failed":
        error = steps_error(read, results, kind) or error
    elif outcome.status != "success":
        stopped = next((s for s in read.steps if s.status == outcome.status), None)
        if stopped is not None:
            where = f"during step {stopped.index + 1} of {len(plans)}: {stopped.name}"
            error = f"{error or outcome.status} ({where})"
    ending.outcome = msgspec.structs.replace(
        outcome, results=results or outcome.results, error=error
    )
    ending.steps = read.steps
    if ending.text == last_log:  # one attempt, one container: its pieces are the log
        ending.pieces = read.pieces


# --- the stored log: every attempt and container, at most the cap -------------------------


def dropped_marker(count: int) -> str:
    # The same words as the store's marker (app/store/runs.py read_log).
    return (
        f"[runyard: {count} bytes of log were dropped here to keep this run's log under its "
        "size limit]\n"
    )


class HeadTail:
    """Keeps the first and the last ``limit // 2`` bytes of a stream fed in chunks, so a
    huge pod log is read in one request without being held in memory."""

    def __init__(self, limit: int) -> None:
        self._half = max(1, limit // 2)
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._half - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > 2 * self._half:  # trim now and then, not on every chunk
                del self._tail[: len(self._tail) - self._half]

    def text(self) -> str:
        tail = bytes(self._tail[-self._half :]) if self._tail else b""
        dropped = self.total - len(self._head) - len(tail)
        if dropped <= 0:
            return (bytes(self._head) + tail).decode("utf-8", "replace")
        return _joined(bytes(self._head), tail, dropped)


def _joined(head: bytes, tail: bytes, dropped: int) -> str:
    """Head and tail cut at line ends (partial lines count as dropped) around a marker."""
    cut = head.rfind(b"\n") + 1
    if cut > 0:
        dropped += len(head) - cut
        head = head[:cut]
    start = tail.find(b"\n") + 1
    if 0 < start < len(tail):
        dropped += start
        tail = tail[start:]
    text = head.decode("utf-8", "replace")
    if text and not text.endswith("\n"):
        text += "\n"
    return text + dropped_marker(dropped) + tail.decode("utf-8", "replace")


class LogStream(msgspec.Struct, frozen=True):
    pod: str
    container: str
    text: str


def assemble_log(streams: Sequence[LogStream], attempts: int, cap: int) -> str:
    """One text for the run: a single stream as it is; several (retries, init or sidecar
    containers) each under a ``==> attempt i of n: pod/container <==`` header, oldest
    first. Longer than ``cap`` bytes: head and tail around a marker."""
    if not streams:
        return ""
    if len(streams) == 1 and attempts <= 1:
        text = streams[0].text
    else:
        pods: list[str] = []
        parts = []
        for stream in streams:
            if stream.pod not in pods:
                pods.append(stream.pod)
            number = pods.index(stream.pod) + 1
            header = f"==> attempt {number} of {max(attempts, len(pods))}: "
            parts.append(f"{header}{stream.pod}/{stream.container} <==\n")
            parts.append(stream.text)
            if stream.text and not stream.text.endswith("\n"):
                parts.append("\n")
        text = "".join(parts)
    data = text.encode()
    if len(data) <= cap:
        return text
    marker_room = len(dropped_marker(len(data)).encode())
    half = max(0, (cap - marker_room) // 2)
    return _joined(data[:half], data[len(data) - half :], len(data) - 2 * half)


def _last_main_log(streams: Sequence[LogStream], attempts: Sequence[Attempt]) -> str:
    """The log of the last attempt's main container: what dbt or SQLMesh printed the last
    time it ran, which says how the run ended."""
    if not attempts:
        return ""
    pod = attempts[-1].pod
    mine = [s for s in streams if s.pod == pod]
    main = next((s for s in mine if s.container == MAIN_CONTAINER), None)
    return (main or (mine[-1] if mine else LogStream("", "", ""))).text
