"""One delivery attempt of one claimed notification, and the retry schedule.

Building the Slack message happens here, at send time, from the run record (immutable once
the run ended) and its stored log, so the transaction that ends a run stays small. The
webhook body was encoded when the row was written and is sent as stored.
"""

from __future__ import annotations

import random

import msgspec

from app.models import RunRecord
from app.notify import result
from app.notify.messages import slack_message
from app.notify.result import SendResult
from app.notify.slack import SlackSender
from app.notify.webhook import WebhookSender
from app.store import Store
from app.store.outbox import Claimed

NO_CHANNEL = (
    "no Slack channel: set the job's slack_channel, the project's slack_channel or "
    "RUNYARD_SLACK_DEFAULT_CHANNEL"
)
NO_SLACK = (
    "Slack is not configured: set RUNYARD_SLACK_TOKEN (a bot token with the chat:write "
    "scope) or the project's slack_webhook_url"
)


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
    def __init__(
        self,
        store: Store,
        *,
        slack: SlackSender,
        webhook: WebhookSender,
        public_url: str | None,
        slack_token: str | None,
    ) -> None:
        self._store = store
        self._slack = slack
        self._webhook = webhook
        self._public_url = public_url
        self._slack_token = slack_token

    def deliver(self, row: Claimed) -> SendResult:
        record = self._store.runs.record(row.run_id)
        if record is None:  # pragma: no cover - rows are deleted with their run
            return result.failed("the run no longer exists")
        headers = record.snapshot.job.webhook_headers
        secrets = [row.secret, self._slack_token, *headers.values()]
        if row.kind == "webhook":
            return result.redact(self._send_webhook(row, headers), secrets)
        project = self._store.projects.get_any(record.project_id)
        webhook_url = project.slack_webhook_url if project else None
        sent = self._send_slack(row, record, webhook_url)
        return result.redact(sent, [*secrets, webhook_url])

    def _send_webhook(self, row: Claimed, headers: dict[str, str]) -> SendResult:
        if not row.target or row.payload is None:
            return result.failed("the notification has no webhook URL or body")
        return self._webhook.send(
            row.target,
            row.payload,
            event=row.event,
            delivery_id=row.id,
            job_headers=headers,
            secret=row.secret,
        )

    def _send_slack(self, row: Claimed, record: RunRecord, webhook_url: str | None) -> SendResult:
        # The transport is chosen now, not when the row was written, so a retry after the
        # operator fixed the configuration uses the fixed one.
        if self._slack.has_token:
            webhook_url = None
            if not row.target:
                return result.failed(NO_CHANNEL)
        elif not webhook_url:
            return result.failed(NO_SLACK)
        message = slack_message(
            record,
            row.event,
            row.id,
            self._store.runs.read_log(row.run_id),
            self._public_url,
        )
        if webhook_url:
            return self._slack.post_incoming(webhook_url, message)
        assert row.target is not None
        return self._slack.post_message(row.target, message)
