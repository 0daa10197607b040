"""The notification outbox: written with the run's status change, delivered by workers.

Writing: the tracker calls ``_on_started`` / ``_on_finished`` inside the transaction that
changes a run's status, so a run is never recorded as finished without its notifications
(nor notified without being finished). Each row gets its delivery id there.

Delivering: one dispatcher thread claims due rows (with a lease, see app/store/outbox.py)
and hands them to a pool of sender threads. At most ``per_host`` requests go to one host
at a time, and a host that answered 429 gets nothing until its Retry-After has passed: a
slow, dead or throttling receiver holds up its own notifications and no others. Each
request has a timeout, so a hanging receiver occupies ``per_host`` threads at most.
After a crash, rows that were never claimed are due at once; rows claimed by the dead
process become due when their lease ends.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from app.errors import Conflict, NotFound
from app.ids import new_id, utcnow
from app.models import JobConfig, Project, RunRecord, WebhookEvent
from app.notify.channels import RunView, event_for
from app.notify.deliver import Deliverer, RetryPolicy
from app.notify.messages import Alert
from app.notify.outbound import OutboundPolicy
from app.notify.registry import Registry, build_registry
from app.notify.result import SendResult
from app.settings import Settings
from app.store import Store
from app.store.outbox import Attempt, AttemptRecord, Claimed, NewNotification, Notification
from app.tracker import RunTracker

log = logging.getLogger("runyard.notify")

POLL_SECONDS = 0.5  # the longest sleep: new rows wake the dispatcher, retries are timed
CANDIDATES_PER_SLOT = 4  # rows read per free sender thread when choosing what to claim


class NotificationOutbox:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        policy: OutboundPolicy,
        *,
        retry_policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        channels: Registry | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self.retry_policy = retry_policy or RetryPolicy()  # replaceable: tests shorten it
        self.timeout = settings.notify_timeout_seconds
        self.workers = max(1, settings.notify_workers)
        self.per_host = max(1, settings.notify_per_host)
        # A claim outlives any request it covers (timeouts are per connect/read/write, so
        # allow several), yet ends soon enough that a crash delays delivery by about a minute.
        self.lease = timedelta(seconds=self.timeout * 3 + 30)
        self.poll_seconds = POLL_SECONDS
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.channels = channels or build_registry(settings, policy)
        self._deliverer = Deliverer(store, self.channels, public_url=settings.public_url)
        self._lock = threading.Lock()
        self._inflight: Counter[str] = Counter()
        self._paused: dict[str, float] = {}  # host -> monotonic time its Retry-After ends
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not secrecy

    # --- writing (inside the tracker's transaction) -------------------------------------

    def attach(self, tracker: RunTracker) -> None:
        tracker.on_started_tx.append(self._on_started)
        tracker.on_finished_tx.append(self._on_finished)
        tracker.on_finished.append(lambda _record: self.wake())  # after the commit

    def _on_started(self, record: RunRecord) -> None:
        self.enqueue(record, "started")
        self.wake()  # a start has no after-commit hook; the poll catches it if this is early

    def _on_finished(self, record: RunRecord) -> None:
        event = event_for(record.status)
        if event is not None:
            self.enqueue(record, event)

    def enqueue(self, record: RunRecord, event: WebhookEvent) -> list[str]:
        """Write the notifications ``event`` calls for; returns their delivery ids."""
        try:
            rows = self._rows(record, event)
        except Exception:
            # A bug in planning must not undo the status change it hangs off; database
            # errors (in add, below) do propagate: then nothing of the change is kept.
            log.exception("could not plan the run's notifications", extra={"run_id": record.id})
            return []
        if rows:
            self._store.outbox.add(rows, self._clock())
            log.info(
                "notifications queued",
                extra={"run_id": record.id, "event": event, "count": len(rows)},
            )
        return [r.id for r in rows]

    def _rows(self, record: RunRecord, event: WebhookEvent) -> list[NewNotification]:
        run = RunView(self._store, record, self._settings.public_url)
        rows = []
        for channel, planned in self.channels.plan(record.snapshot.job, event, run.project):
            delivery_id = new_id("ntf", 20)
            stored = channel.stored(planned, run, delivery_id)
            rows.append(
                NewNotification(
                    id=delivery_id,
                    org_id=record.org_id,
                    run_id=record.id,
                    job_id=record.job_id,
                    kind=planned.kind,
                    event=event,
                    target=planned.target,
                    host=planned.host,
                    payload=stored.payload,
                    secret=stored.secret,
                )
            )
        return rows

    def enqueue_alert(
        self, alert: Alert, job: JobConfig, *, org_id: str, project: Project | None
    ) -> list[str]:
        """Write the notifications of a silence alert (app/services/silence.py), planned
        from the job's configuration as it is now; their delivery ids. Call it inside the
        transaction that records the alert as sent, so it is written once."""
        record = self._store.runs.record(alert.run.id) if alert.run else None
        view = RunView(
            self._store, record, self._settings.public_url, job_id=alert.job.id, alert=alert
        )
        rows = []
        for channel, planned in self.channels.plan(job, alert.event, project):
            delivery_id = new_id("ntf", 20)
            stored = channel.stored(planned, view, delivery_id)
            rows.append(
                NewNotification(
                    id=delivery_id,
                    org_id=org_id,
                    run_id=record.id if record else None,
                    job_id=alert.job.id,
                    kind=planned.kind,
                    event=alert.event,
                    target=planned.target,
                    host=planned.host,
                    payload=stored.payload,
                    secret=stored.secret,
                )
            )
        if rows:
            self._store.outbox.add(rows, self._clock())
            log.info(
                "silence alert queued",
                extra={"job_id": alert.job.id, "event": alert.event, "count": len(rows)},
            )
        return [r.id for r in rows]

    # --- reading and retrying (the API) -------------------------------------------------

    def for_run(self, run_id: str) -> tuple[list[Notification], dict[str, list[Attempt]]]:
        notifications = self._store.outbox.for_run(run_id)
        return notifications, self._store.outbox.attempts([n.id for n in notifications])

    def retry(self, run_id: str, notification_id: str) -> Notification:
        """Queue a permanently failed notification again (callers check the run's org)."""
        found = self._store.outbox.get(run_id, notification_id)
        if found is None:
            raise NotFound(f"No notification {notification_id!r} for run {run_id!r}.")
        if not self._store.outbox.retry(notification_id, self._clock()):
            raise Conflict(
                f"Notification {notification_id} is {found.state}; only a failed notification "
                "can be retried (pending ones are retried automatically)."
            )
        self.wake()
        again = self._store.outbox.get(run_id, notification_id)
        assert again is not None
        return again

    # --- delivering ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="runyard-notify")
        self._thread = threading.Thread(
            target=self._dispatch_loop, name="runyard-notify-dispatch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming; requests in flight finish (each within its timeout)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.channels.close()

    def wake(self) -> None:
        self._wake.set()

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self._dispatch_once()
            except Exception:
                log.exception("the notification dispatcher hit an error; retrying")
                claimed = 0
                self._stopping.wait(1.0)
            if not claimed:
                self._wake.wait(self._pause())
                self._wake.clear()

    def _pause(self) -> float:
        """How long to sleep: until the next retry is due, at most ``poll_seconds``. A row
        that is due but was not claimed waits for a busy host; finishing requests wake the
        dispatcher then, so that is no reason to spin."""
        try:
            due = self._store.outbox.next_due()
        except Exception:
            return self.poll_seconds
        if due is None:
            return self.poll_seconds
        wait = (due - self._clock()).total_seconds()
        return self.poll_seconds if wait <= 0 else min(wait, self.poll_seconds)

    def _host_paused(self, host: str) -> bool:
        with self._lock:
            until = self._paused.get(host)
            if until is None:
                return False
            if until > time.monotonic():
                return True
            del self._paused[host]
            return False

    def _busy_hosts(self) -> tuple[int, set[str]]:
        with self._lock:
            free = self.workers - sum(self._inflight.values())
            busy = {h for h, n in self._inflight.items() if n >= self.per_host}
            paused = list(self._paused)
        return free, busy | {h for h in paused if self._host_paused(h)}

    def _dispatch_once(self) -> int:
        """Start a sender for each due row, as far as free threads and the per-host limit
        allow. A sender then keeps claiming its host's next due row itself (see _send), so
        the dispatcher is only needed to start work on a host, not for every row."""
        free, busy = self._busy_hosts()
        if free <= 0:
            return 0
        now = self._clock()
        room: Counter[str] = Counter()
        chosen: list[str] = []
        for notification_id, host in self._store.outbox.due(
            now, limit=free * CANDIDATES_PER_SLOT, skip_hosts=busy
        ):
            with self._lock:
                used = self._inflight[host] + room[host]
            if used < self.per_host and len(chosen) < free:
                room[host] += 1
                chosen.append(notification_id)
        if not chosen:
            return 0
        claimed = self._store.outbox.claim(
            chosen, owner=self._owner, now=now, lease_until=now + self.lease
        )
        pool = self._pool
        assert pool is not None
        for row in claimed:
            with self._lock:
                self._inflight[row.host] += 1
            pool.submit(self._send, row)
        return len(claimed)

    def _send(self, first: Claimed) -> None:
        """Deliver ``first``, then the host's next due rows while there are any, each
        claimed in the transaction that records the previous attempt: a busy host's
        pipeline stays full without a round trip through the dispatcher per row."""
        host = first.host
        row: Claimed | None = first
        try:
            while row is not None:
                attempt = self._attempt(row)
                more = not self._stopping.is_set() and not self._host_paused(host)
                if more:
                    row = self._store.outbox.finish_and_claim_next(
                        row,
                        attempt,
                        owner=self._owner,
                        lease_until=attempt.finished_at + self.lease,
                    )
                else:
                    self._store.outbox.finish_attempt(row, attempt, owner=self._owner)
                    row = None
        except Exception:
            log.exception("a notification sender stopped", extra={"host": host})
        finally:
            with self._lock:
                self._inflight[host] -= 1
                if self._inflight[host] <= 0:
                    del self._inflight[host]
            self._wake.set()

    def _attempt(self, row: Claimed) -> AttemptRecord:
        """Send once; what happened and when to try again (the caller records it)."""
        started = self._clock()
        try:
            sent = self._deliverer.deliver(row)
        except Exception as exc:
            log.exception("notification delivery crashed", extra={"notification_id": row.id})
            sent = SendResult(outcome="retry", error=f"internal error: {type(exc).__name__}")
        now = self._clock()
        outcome, error, next_due = sent.outcome, sent.error, None
        policy = self.retry_policy
        if outcome == "retry":
            throttled = row.throttled + (1 if sent.throttled else 0)
            failures = row.attempts - row.budget_start - throttled
            if sent.throttled and sent.retry_after is not None:
                wait = sent.retry_after
                with self._lock:  # the whole host waits, not just this notification
                    self._paused[row.host] = time.monotonic() + wait
            else:
                wait = policy.delay(max(1, failures), self._rng)
            if failures >= policy.max_attempts or throttled > policy.max_throttled:
                outcome = "failed"
                error = f"gave up after {row.attempts} attempts; the last: {error}"
            else:
                next_due = now + timedelta(seconds=wait)
        level = logging.INFO if outcome != "failed" else logging.WARNING
        log.log(
            level,
            "notification %s",
            outcome,
            extra={
                "notification_id": row.id,
                "run_id": row.run_id,
                "kind": row.kind,
                "attempt": row.attempts,
                "status_code": sent.status_code,
                "error": error,
            },
        )
        return AttemptRecord(
            started_at=started,
            finished_at=now,
            outcome=outcome,
            status_code=sent.status_code,
            error=error,
            next_due=next_due,
            throttled=sent.throttled,
        )
