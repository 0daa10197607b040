"""Which notifications a run calls for: each channel's plan, through the registry
(app/notify/registry.py), with the event of each status (app/notify/channels.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.models import JobConfig, Project, RunStatus, WebhookEvent
from app.notify.channels import Planned, event_for
from app.notify.http import host_key
from app.notify.outbound import OutboundPolicy
from app.notify.registry import build_registry
from app.notify.slack import SLACK_HOST
from app.settings import Settings


def _job(**fields: Any) -> JobConfig:
    return JobConfig(name="nightly", command="dbt build", **fields)


def _project(slack_channel: str | None) -> Project:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Project(
        id="proj_1",
        org_id="org_1",
        org_slug="acme",
        name="analytics",
        kind="dbt",
        created_at=now,
        updated_at=now,
        slack_channel=slack_channel,
    )


def plan(
    job: JobConfig,
    event: WebhookEvent,
    *,
    project_channel: str | None,
    default_channel: str | None,
) -> list[Planned]:
    settings = Settings(slack_default_channel=default_channel)
    registry = build_registry(settings, OutboundPolicy())
    try:
        planned = registry.plan(job, event, _project(project_channel))
    finally:
        registry.close()
    assert all(channel.info.kind == p.kind for channel, p in planned)
    return [p for _, p in planned]


def _kinds(job: JobConfig, event: WebhookEvent, **defaults: Any) -> list[tuple[str, str | None]]:
    values = {"project_channel": None, "default_channel": None} | defaults
    return [(p.kind, p.target) for p in plan(job, event, **values)]


@pytest.mark.parametrize(
    ("status", "event"),
    [
        ("success", "success"),
        ("failed", "failure"),
        ("timed_out", "failure"),
        ("lost", "failure"),
        ("cancelled", "cancelled"),
        ("running", None),
        ("pending", None),
    ],
)
def test_event_of_each_status(status: RunStatus, event: str | None) -> None:
    assert event_for(status) == event


def test_slack_is_off_unless_enabled() -> None:
    assert _kinds(_job(slack_channel="#a"), "failure") == []


def test_slack_alerts_failures_by_default_and_successes_only_when_asked() -> None:
    job = _job(slack_alerts_enabled=True, slack_channel="#a")
    assert _kinds(job, "failure") == [("slack", "#a")]
    assert _kinds(job, "success") == []
    loud = _job(slack_alerts_enabled=True, slack_channel="#a", slack_alert_on_success=True)
    assert _kinds(loud, "success") == [("slack", "#a")]


@pytest.mark.parametrize("event", ["started", "cancelled"])
def test_slack_never_for_starts_or_cancellations(event: WebhookEvent) -> None:
    loud = _job(slack_alerts_enabled=True, slack_channel="#a", slack_alert_on_success=True)
    assert _kinds(loud, event) == []


def test_channel_falls_back_to_project_then_default() -> None:
    job = _job(slack_alerts_enabled=True)
    assert _kinds(job, "failure", project_channel="#p", default_channel="#d") == [("slack", "#p")]
    assert _kinds(job, "failure", default_channel="#d") == [("slack", "#d")]
    # Nothing names a channel: still planned, so the failure to deliver is visible.
    assert _kinds(job, "failure") == [("slack", None)]


def test_webhooks_follow_enabled_url_and_events() -> None:
    url = "https://hooks.example.com/runyard"
    every: list[WebhookEvent] = ["started", "success", "failure", "cancelled"]
    assert _kinds(_job(webhook_url=url), "failure") == []  # not enabled
    assert _kinds(_job(webhook_enabled=True), "failure") == []  # no URL
    default = _job(webhook_enabled=True, webhook_url=url)
    assert [e for e in every if _kinds(default, e)] == ["success", "failure"]
    everything = _job(webhook_enabled=True, webhook_url=url, webhook_events=every)
    assert [e for e in every if _kinds(everything, e)] == every
    assert _kinds(everything, "started") == [("webhook", url)]


def test_slack_first_then_webhook_with_their_hosts() -> None:
    job = _job(
        slack_alerts_enabled=True,
        slack_channel="#a",
        webhook_enabled=True,
        webhook_url="https://Hooks.Example.com/x",
    )
    planned = plan(job, "failure", project_channel=None, default_channel=None)
    assert [(p.kind, p.host) for p in planned] == [
        ("slack", SLACK_HOST),
        ("webhook", "hooks.example.com:443"),
    ]


def test_host_key() -> None:
    assert host_key("http://a.example:8080/x") == "a.example:8080"
    assert host_key("http://a.example/x") == "a.example:80"
    assert host_key("https://[::1]/x") == "::1:443"
    assert host_key("http://a.example:99999/x") == "a.example:0"
