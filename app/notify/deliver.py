"""One delivery attempt of one claimed notification, and the retry schedule.

The row's channel (looked up by its kind in the registry) renders and sends it; whatever
it answers, secret values are blanked out of the error before it is stored, shown or
logged: the row's secret, the job's header values and every channel's credentials.
"""

from __future__ import annotations

import random

import msgspec

from app.models import ALERT_EVENTS
from app.notify import result
from app.notify.channels import RunView
from app.notify.registry import Registry
from app.notify.result import SendResult
from app.store import Store
from app.store.outbox import Claimed


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential back-off with jitter. The defaults make 8 attempts over about 21 minutes
    (10 s, 20 s, 40 s ... 640 s between them, each +/- 20 %): at least 17 minutes even with
    the shortest jitter, long enough to ride out a receiver's deploy or a short outage."""

    max_attempts: int = 8
    base_seconds: float = 10.0
    factor: float = 2.0
    cap_seconds: float = 1800.0
    jitter: float = 0.2
    # 429 answers do not use up max_attempts (the receiver is up, just busy), up to this many.
    max_throttled: int = 50

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        raw = min(self.cap_seconds, self.base_seconds * self.factor ** max(0, failures - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, raw * spread)


class Deliverer:
    def __init__(self, store: Store, channels: Registry, *, public_url: str | None) -> None:
        self._store = store
        self._channels = channels
        self._public_url = public_url

    def deliver(self, row: Claimed) -> SendResult:
        # A silence alert about a slot without a run has no run_id (app/services/silence.py).
        record = self._store.runs.record(row.run_id) if row.run_id else None
        if record is None and row.event not in ALERT_EVENTS:  # pragma: no cover
            return result.failed("the run no longer exists")  # rows go with their run
        channel = self._channels.get(row.kind)
        if channel is None:  # written by a runyard that had this channel
            known = ", ".join(info.kind for info in self._channels.describe())
            return result.failed(f"no {row.kind!r} channel in this runyard (it has: {known})")
        run = RunView(
            self._store,
            record,
            self._public_url,
            job_id=row.job_id,
            about_job=row.event in ALERT_EVENTS,
        )
        sent = channel.deliver(row, run)
        headers = run.webhook_headers
        secrets = [row.secret, *headers.values(), *self._channels.secrets(run, row.kind)]
        return result.redact(sent, secrets)
