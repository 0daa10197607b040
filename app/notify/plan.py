"""Which notifications a run calls for: pure functions of the run's frozen job configuration,
its project's defaults and the operator's settings.

Slack is for people, so it stays quiet unless something needs attention: failures (failed,
timed_out, lost) when ``slack_alerts_enabled``, successes only with ``slack_alert_on_success``.
A cancelled run is never a Slack alert (someone, or a newer run under concurrency_policy
Replace, stopped it on purpose) and neither is a start. Webhooks are for machines: they get
exactly the events listed in ``webhook_events``, cancelled and started included.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec

from app.models import JobConfig, RunStatus, WebhookEvent
from app.store.outbox import NotificationKind

# Every Slack delivery shares this concurrency key: the Web API and incoming webhooks are
# both Slack's servers, and its rate limits apply across them.
SLACK_HOST = "slack"

_EVENT_OF_STATUS: dict[str, WebhookEvent] = {
    "success": "success",
    "failed": "failure",
    "timed_out": "failure",
    "lost": "failure",
    "cancelled": "cancelled",
}


class Planned(msgspec.Struct, frozen=True, kw_only=True):
    """One notification to write to the outbox.

    ``target`` is the Slack channel (None when nothing names one: the delivery then fails
    with a message saying where to set it, unless the project's incoming webhook is used)
    or the webhook URL. ``host`` groups deliveries for the per-host concurrency limit.
    """

    kind: NotificationKind
    event: WebhookEvent
    target: str | None
    host: str


def event_for(status: RunStatus) -> WebhookEvent | None:
    """The event a terminal status reports; None for the active statuses."""
    return _EVENT_OF_STATUS.get(status)


def slack_wanted(job: JobConfig, event: WebhookEvent) -> bool:
    if not job.slack_alerts_enabled:
        return False
    if event == "failure":
        return True
    return event == "success" and job.slack_alert_on_success


def slack_channel(
    job: JobConfig, project_channel: str | None, default_channel: str | None
) -> str | None:
    """The job's channel, else the project's, else the operator's default."""
    return job.slack_channel or project_channel or default_channel or None


def webhook_wanted(job: JobConfig, event: WebhookEvent) -> bool:
    return bool(job.webhook_enabled and job.webhook_url and event in job.webhook_events)


def host_key(url: str) -> str:
    """``host:port`` of a URL, the unit of the per-host concurrency limit."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0  # refused at send time with a clear message; any key will do here
    return f"{host}:{port}"


def plan(
    job: JobConfig,
    event: WebhookEvent,
    *,
    project_channel: str | None,
    default_channel: str | None,
) -> list[Planned]:
    """The notifications one event of a run calls for, Slack first."""
    planned: list[Planned] = []
    if slack_wanted(job, event):
        channel = slack_channel(job, project_channel, default_channel)
        planned.append(Planned(kind="slack", event=event, target=channel, host=SLACK_HOST))
    if webhook_wanted(job, event):
        assert job.webhook_url is not None  # webhook_wanted checked it
        planned.append(
            Planned(
                kind="webhook", event=event, target=job.webhook_url, host=host_key(job.webhook_url)
            )
        )
    return planned
