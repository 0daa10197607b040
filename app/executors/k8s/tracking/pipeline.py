"""The tracker's pipeline for finished runs: a small thread pool reads their logs, one
writer thread records them, and each batch goes back to the dispatcher (``k8s_dispatch``).

Batches: finished runs wait until a worker is free, so a burst goes 50 Jobs to a pod list
while a lone run goes at once. One writer: SQLite takes one writer at a time, and writers in
parallel would only wait on its lock (its busy handler sleeps in steps of milliseconds),
while the pool reads the next logs meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import msgspec

from app.executors.k8s.tracking.finish import Ending, Finish, Finisher

log = logging.getLogger("runyard.k8s_tracker")

BATCH_JOBS = 50  # finished Jobs per pod list (keeps the label selector short)


class Completed(msgspec.Struct):
    """A batch of finished runs back from the pipeline, and those to try again."""

    items: list[Finish]
    retry: list[Finish]
    read: bool = False  # only news that the batch's logs are read: its reader is free


class Pipeline:
    """Called from the dispatching thread only, except where it says otherwise."""

    def __init__(
        self, finisher: Finisher, workers: int, completed: Callable[[Completed], None]
    ) -> None:
        self._finisher = finisher
        self._workers = workers
        self._completed = completed  # thread-safe: puts on the dispatcher's queue
        self._pool: ThreadPoolExecutor | None = None
        self._writer: threading.Thread | None = None
        self._writes: queue.Queue[tuple[list[Ending], list[Finish], list[Finish]] | None]
        self._writes = queue.Queue()
        self._pending: dict[str, list[Finish]] = {}  # finished runs waiting for a worker
        self._batches = 0  # handed out and not back yet
        self._reading = 0  # of those, still being read
        self._lock = threading.Lock()
        self._in_flight = 0  # the same, as the writer sees it (any thread may read it)

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="k8s-finish")
        self._writer = threading.Thread(target=self._write_loop, name="k8s-record", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._writes.put(None)
        if self._writer is not None:
            self._writer.join(30)

    def busy(self) -> bool:
        """Any run waiting or being read or recorded (any thread)."""
        with self._lock:
            return bool(self._in_flight or self._pending)

    def submit(self, finishing: list[Finish]) -> None:
        """Queue finished runs and hand out what free workers can take; call it on every
        pass of the dispatcher, so runs waiting for a worker get one as soon as it is free."""
        for item in finishing:
            self._pending.setdefault(item.namespace, []).append(item)
        # A reader is free again as soon as it has read its batch, while the writer records
        # it; at most as many batches again wait for the writer (their logs are in memory).
        while self._pending and self._reading < self._workers and self._batches < 2 * self._workers:
            namespace = max(self._pending, key=lambda ns: len(self._pending[ns]))
            waiting = self._pending[namespace]
            share = -(-sum(len(v) for v in self._pending.values()) // self._workers)
            batch = waiting[: max(1, min(BATCH_JOBS, share))]
            rest = waiting[len(batch) :]
            if rest:
                self._pending[namespace] = rest
            else:
                del self._pending[namespace]
            self._read(namespace, batch)

    def returned(self, batch: Completed) -> None:
        """A Completed batch reached the dispatcher: read (its reader is free again), or
        also recorded."""
        if batch.read:
            self._reading -= 1
        else:
            self._batches -= 1

    def _read(self, namespace: str, items: list[Finish]) -> None:
        assert self._pool is not None
        self._batches += 1
        self._reading += 1
        with self._lock:
            self._in_flight += 1
        try:
            future = self._pool.submit(self._finisher.read_batch, namespace, items)
        except RuntimeError:  # shutting down
            self._batches -= 1
            self._reading -= 1
            with self._lock:
                self._in_flight -= 1
            return

        def done(result: Future[tuple[list[Ending], list[Finish]]]) -> None:
            try:
                endings, retry = result.result()
            except Exception:
                log.exception("reading the logs of finished runs failed")
                endings, retry = [], list(items)
            self._writes.put((endings, retry, items))
            self._completed(Completed([], [], read=True))

        future.add_done_callback(done)

    def _write_loop(self) -> None:
        while (work := self._writes.get()) is not None:
            endings, retry, items = work
            for ending in endings:
                try:
                    self._finisher.record(ending)
                except Exception:
                    log.exception("recording a finished run failed")
                    retry.append(ending.item)
            self._completed(Completed(items, retry))
            with self._lock:
                self._in_flight -= 1
