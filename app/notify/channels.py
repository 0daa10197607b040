"""What a notification channel is: the protocol each channel implements, keyed by its kind.

A channel decides which notifications a run calls for (``plan``, a pure function of the
run's frozen job configuration and its project), what a notification's row keeps for
sending (``stored``, when the row is written in the transaction that ends the run), how
one delivery is sent (``deliver``, from a worker thread), and which values must never
show in a recorded error (``secrets``). ``info`` describes it for listings and metrics.

The outbox and the deliverer only ever go through this protocol and the registry
(app/notify/registry.py): nothing outside a channel's module knows what its kind means.
"""

from __future__ import annotations

from functools import cached_property
from typing import Protocol

import msgspec

from app.models import Job, JobConfig, Project, RunRecord, RunStatus, WebhookEvent
from app.notify.messages import Alert
from app.notify.result import SendResult
from app.store import Store
from app.store.outbox import Claimed

_EVENT_OF_STATUS: dict[str, WebhookEvent] = {
    "success": "success",
    "failed": "failure",
    "timed_out": "failure",
    "lost": "failure",
    "cancelled": "cancelled",
}


def event_for(status: RunStatus) -> WebhookEvent | None:
    """The event a terminal status reports; None for the active statuses."""
    return _EVENT_OF_STATUS.get(status)


class ChannelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """How a channel describes itself.

    ``kind`` is stored on each of its notifications, shown as ``kind`` in the API's
    notification listing and as the ``channel`` label of the ``runyard_notifications``
    metric; ``target`` says what a notification's ``target`` holds for this channel.
    """

    kind: str
    title: str
    target: str


class Planned(msgspec.Struct, frozen=True, kw_only=True):
    """One notification to write to the outbox.

    ``target`` is what the channel sends to (a Slack channel, a URL; None when nothing
    names one: the delivery then fails with a message saying where to set it).
    ``host`` groups deliveries for the per-host concurrency limit.
    """

    kind: str
    event: WebhookEvent
    target: str | None
    host: str


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """What a notification's row keeps for sending, beside its plan: a body encoded once
    (every retry sends the same bytes) and a secret copied from the job (sealed at rest,
    cleared once delivered)."""

    payload: bytes | None = None
    secret: str | None = None


class RunView:
    """The run a notification is about, as channels read it. The project, the job row and
    the log are read from the store when a channel first asks, once per view.

    A silence alert (``alert`` set, app/services/silence.py) is about a job: ``record`` is
    the run it names, or None for a missed slot that has no run. Its notifications keep
    their rendered message on the row and use the job's current webhook headers."""

    def __init__(
        self,
        store: Store,
        record: RunRecord | None,
        public_url: str | None,
        *,
        job_id: str | None = None,
        alert: Alert | None = None,
        about_job: bool = False,
    ) -> None:
        self._store = store
        self.record = record
        self.public_url = public_url
        self.alert = alert  # while an alert's notifications are written
        self.about_job = about_job or alert is not None  # an alert's, written or sent
        self.job_id = record.job_id if record is not None else (job_id or "")

    @cached_property
    def _job(self) -> Job | None:
        return self._store.jobs.get_any(self.job_id)

    @cached_property
    def project(self) -> Project | None:
        project_id = self.record.project_id if self.record is not None else None
        if project_id is None and self._job is not None:
            project_id = self._job.project_id
        return self._store.projects.get_any(project_id) if project_id else None

    @cached_property
    def job_webhook_secret(self) -> str | None:
        """The job's webhook secret: the run's snapshot never holds it, the job row does."""
        return self._job.webhook_secret if self._job else None

    @property
    def webhook_headers(self) -> dict[str, str]:
        """The headers a webhook request carries: the run's frozen ones, or for an alert
        the job's as configured now (an alert is about the job)."""
        if not self.about_job or self._job is None:
            return self.record.snapshot.job.webhook_headers if self.record is not None else {}
        return self._job.webhook_headers

    def log_text(self) -> str:
        return self._store.runs.read_log(self.record.id) if self.record is not None else ""


class Channel(Protocol):
    @property
    def info(self) -> ChannelInfo: ...

    def plan(self, job: JobConfig, event: WebhookEvent, project: Project | None) -> list[Planned]:
        """The notifications of this channel one event of a run calls for (usually none
        or one). Pure: the run's frozen job configuration, its project, the settings."""
        ...

    def stored(self, planned: Planned, run: RunView, delivery_id: str) -> Stored:
        """What the row keeps for sending; runs inside the transaction that changes the
        run's status, so it should be quick."""
        ...

    def deliver(self, row: Claimed, run: RunView) -> SendResult:
        """One attempt; never raises for a failure the receiver or the network caused."""
        ...

    def secrets(self, run: RunView | None) -> list[str | None]:
        """Values to blank out of every recorded error: the channel's credentials, and,
        given the run being delivered by this channel, the secrets of its configuration
        the delivery used."""
        ...

    def close(self) -> None: ...
