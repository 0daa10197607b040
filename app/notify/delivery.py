"""Delivering the outbox: fair across orgs, bounded per host, batched in the database.

Three kinds of thread share the work (``NotificationOutbox`` builds and starts them):

- one dispatcher claims due rows host by host (``OutboxRepo.claim_fair``: orgs in turn,
  each org's oldest row first) into that host's *lane*, and starts senders;
- a pool of ``workers`` senders: each takes rows from one lane, at most ``per_host`` senders
  per lane, and sends them one after another while the lane has any;
- one recorder writes the attempts, many per transaction (``OutboxRepo.finish_many``).

Fairness. A lane keeps one queue per org and takes the orgs in turn, so another org's alert
waits for at most one row of each org ahead of it, whatever their backlog; and a lane holds
only about half a second of its host's work (from the host's measured latency), so an alert
written after a burst is claimed within that time, in the next claim's first round.

Isolation. A host that hangs holds ``per_host`` senders for a request timeout each, and a
small lane (its latency makes it so): other hosts keep their senders and their pace. A host
that answered 429 is paused until its Retry-After: its lane's unsent rows go back to the
database (``release``), due when the pause ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from app.store import Store
from app.store.outbox import AttemptRecord, Claimed

log = logging.getLogger("runyard.notify")

BUFFER_SECONDS = 0.25  # work a lane holds: what its senders send in this long
MAX_BUFFER = 512  # rows one lane holds at most
INITIAL_LATENCY = 0.05  # assumed for a host never sent to yet
MIN_PASS_SECONDS = 0.02  # between dispatcher passes: a burst of wake-ups is one pass
RECORD_BATCH = 1000  # attempts per transaction at most

# What one attempt gives: the record to store, and how long its host must now wait (a
# 429 with Retry-After) or None.
Attempted = tuple[AttemptRecord, float | None]


class Lane:
    """One host's claimed rows, waiting for a sender: a queue per org, taken in turn.
    Guarded by the delivery's lock."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.orgs: OrderedDict[str, deque[Claimed]] = OrderedDict()
        self.buffered = 0
        self.senders = 0
        self.latency = INITIAL_LATENCY  # seconds per request, moving average
        self.paused_until = 0.0  # time.monotonic()

    def capacity(self, per_host: int) -> int:
        """Rows to hold: about BUFFER_SECONDS of work at the host's pace; a slow or hanging
        host gets few, so none waits in memory anywhere near its lease."""
        pace = per_host / max(self.latency, 1e-4)
        return int(min(MAX_BUFFER, max(2 * per_host, pace * BUFFER_SECONDS)))

    def push(self, rows: list[Claimed]) -> None:
        for row in rows:
            self.orgs.setdefault(row.org_id, deque()).append(row)
        self.buffered += len(rows)

    def pop(self) -> Claimed | None:
        """The next org's oldest row; that org then goes to the back of the turn."""
        if not self.orgs:
            return None
        org, waiting = next(iter(self.orgs.items()))
        row = waiting.popleft()
        if waiting:
            self.orgs.move_to_end(org)
        else:
            del self.orgs[org]
        self.buffered -= 1
        return row

    def take_all(self) -> list[Claimed]:
        rows = [row for waiting in self.orgs.values() for row in waiting]
        self.orgs.clear()
        self.buffered = 0
        return rows

    def paused(self, now: float) -> bool:
        return self.paused_until > now


class Delivery:
    def __init__(
        self,
        store: Store,
        attempt: Callable[[Claimed], Attempted],
        *,
        owner: str,
        workers: int,
        per_host: int,
        lease: timedelta,
        clock: Callable[[], datetime],
        poll_seconds: float,
    ) -> None:
        self._store = store
        self._attempt = attempt
        self._owner = owner
        self.workers = workers
        self.per_host = per_host
        self.lease = lease
        self._clock = clock
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._lanes: dict[str, Lane] = {}
        self._senders = 0
        self._held: set[str] = set()  # claimed here and not yet recorded or released
        self._results: queue.Queue[tuple[Claimed, AttemptRecord] | None] = queue.Queue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="runyard-notify")
        for target, name in (
            (self._dispatch_loop, "runyard-notify-dispatch"),
            (self._record_loop, "runyard-notify-record"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop claiming and sending; requests in flight finish (each within its timeout),
        rows claimed and not sent go back to the database, every attempt is recorded."""
        self._stopping.set()
        self._wake.set()
        dispatcher, recorder = self._threads
        dispatcher.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            unsent = [row for lane in self._lanes.values() for row in lane.take_all()]
        self._release(unsent, self._clock())
        self._results.put(None)
        recorder.join()
        self._threads.clear()

    def wake(self) -> None:
        self._wake.set()

    # --- claiming -----------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._dispatch_once()
            except Exception:
                log.exception("the notification dispatcher hit an error; retrying")
                self._stopping.wait(1.0)
            self._wake.wait(self._pause())
            self._wake.clear()
            self._stopping.wait(MIN_PASS_SECONDS)

    def _pause(self) -> float:
        """Until the next row is due (a retry, a lease ending), at most ``poll_seconds``.
        New rows, a lane running low and a sender ending all wake the dispatcher."""
        try:
            due = self._store.outbox.next_due()
        except Exception:
            return self.poll_seconds
        if due is None:
            return self.poll_seconds
        wait = (due - self._clock()).total_seconds()
        return self.poll_seconds if wait <= 0 else min(wait, self.poll_seconds)

    def _dispatch_once(self) -> None:
        now = self._clock()
        moment = time.monotonic()
        for host in self._store.outbox.due_hosts(now):
            with self._lock:
                lane = self._lanes.get(host) or self._lanes.setdefault(host, Lane(host))
                if lane.paused(moment):
                    continue
                capacity = lane.capacity(self.per_host)
                room = capacity - lane.buffered if lane.buffered * 2 < capacity else 0
            if room <= 0:
                continue
            claimed = self._store.outbox.claim_fair(
                host, limit=room, owner=self._owner, now=now, lease_until=now + self.lease
            )
            with self._lock:
                # A row whose lease ended while it waited here is not taken twice.
                fresh = [row for row in claimed if row.id not in self._held]
                self._held.update(row.id for row in fresh)
                lane.push(fresh)
        self._start_senders(moment)

    def _start_senders(self, moment: float) -> None:
        pool = self._pool
        assert pool is not None
        with self._lock:
            for host, lane in list(self._lanes.items()):
                if not lane.buffered and not lane.senders and not lane.paused(moment):
                    del self._lanes[host]  # idle: its latency is forgotten, which is fine
                    continue
                while (
                    lane.buffered > lane.senders
                    and lane.senders < self.per_host
                    and self._senders < self.workers
                    and not lane.paused(moment)
                ):
                    lane.senders += 1
                    self._senders += 1
                    pool.submit(self._send, lane)

    # --- sending ------------------------------------------------------------------------

    def _send(self, lane: Lane) -> None:
        """Send the lane's rows, orgs in turn, until it is empty, paused or delivery stops."""
        try:
            while not self._stopping.is_set():
                with self._lock:
                    row = None if lane.paused(time.monotonic()) else lane.pop()
                    low = lane.buffered * 2 < lane.capacity(self.per_host)
                if row is None:
                    return
                if low:
                    self._wake.set()
                started = time.monotonic()
                attempt, pause = self._attempt(row)
                took = time.monotonic() - started
                self._results.put((row, attempt))
                with self._lock:
                    lane.latency = 0.8 * lane.latency + 0.2 * took
                    unsent: list[Claimed] = []
                    if pause is not None:
                        lane.paused_until = max(lane.paused_until, time.monotonic() + pause)
                        unsent = lane.take_all()
                if unsent:
                    self._release(unsent, self._clock() + timedelta(seconds=pause or 0))
        except Exception:
            log.exception("a notification sender stopped", extra={"host": lane.host})
        finally:
            with self._lock:
                lane.senders -= 1
                self._senders -= 1
            self._wake.set()

    def _release(self, rows: list[Claimed], due_at: datetime) -> None:
        if not rows:
            return
        try:
            self._store.outbox.release([r.id for r in rows], owner=self._owner, due_at=due_at)
        except Exception:
            # They stay claimed until their lease ends, then any worker takes them.
            log.exception("could not give back unsent notifications")
        with self._lock:
            self._held.difference_update(r.id for r in rows)

    # --- recording ----------------------------------------------------------------------

    def _record_loop(self) -> None:
        done = False
        while not done:
            first = self._results.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < RECORD_BATCH:
                try:
                    item = self._results.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                batch.append(item)
            try:
                self._store.outbox.finish_many(batch, owner=self._owner)
            except Exception:
                # The rows stay claimed until their lease ends; then they are sent again
                # (receivers drop the duplicate by its delivery id).
                log.exception("could not record %d notification attempts", len(batch))
            with self._lock:
                self._held.difference_update(row.id for row, _ in batch)
            if any(attempt.outcome == "retry" for _, attempt in batch):
                self._wake.set()
