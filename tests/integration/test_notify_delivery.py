"""Delivery to real local HTTP servers through the real slack_sdk and httpx: what is sent,
to whom, for which events. Runs are driven through the tracker, the way an executor reports
them (test_notify_dbt.py runs real dbt; test_notify_retries.py covers failing receivers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.container import Container
from app.models import JobConfig, NodeSummary
from tests.conftest import ContainerFactory
from tests.integration.test_notify_support import (
    Receiver,
    always,
    finish,
    make_job,
    make_project,
    make_run,
    notifying_container,
    receiver,
    slack_api,
    verify_signature,
    wait_settled,
)

SECRET = "whsec-0123456789abcdef"
BROKEN = NodeSummary(
    unique_id="model.dbt_demo.broken_orders",
    name="broken_orders",
    resource_type="model",
    status="error",
    message=(
        "Runtime Error in model broken_orders (models/broken/broken_orders.sql)\n"
        "  Conversion Error: Could not convert string 'abc' to INT32"
    ),
)


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with receiver(slack_api) as server:
        yield server


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as server:
        yield server


@pytest.fixture
def notifying(container_factory: ContainerFactory, slack: Receiver) -> Container:
    return notifying_container(container_factory, slack)


def _job(**fields: Any) -> dict[str, Any]:
    return {"slack_alerts_enabled": True, "slack_channel": "#data-alerts"} | fields


def test_failure_alert_names_the_model_and_error(notifying: Container, slack: Receiver) -> None:
    project = make_project(notifying)
    run = make_run(notifying, project, make_job(notifying, project, **_job()))
    finish(
        notifying,
        run,
        "failed",
        exit_code=1,
        error="model broken_orders failed",
        results=[BROKEN],
        log="12:00:01  1 of 5 START sql table model main.broken_orders\nDone. ERROR=1\n",
    )
    [notification] = wait_settled(notifying, run.id, 1)
    assert notification.state == "delivered" and notification.attempts == 1
    [request] = slack.requests
    assert request.path == "/api/chat.postMessage"
    assert request.headers["authorization"] == "Bearer xoxb-test-token"
    sent = request.json()
    assert sent["channel"] == "#data-alerts"
    assert "broken_orders" in sent["text"] and "Conversion Error" in sent["text"]
    everything = str(sent["blocks"])
    assert "model broken_orders" in everything and "Could not convert" in everything
    assert "Done. ERROR=1" in everything  # the log tail
    assert f"https://runyard.example.com/ui/runs/{run.id}" in everything
    assert sent["metadata"]["event_payload"]["delivery_id"] == notification.id
    assert notification.id in everything


def test_success_alert_only_when_asked(notifying: Container, slack: Receiver) -> None:
    project = make_project(notifying)
    quiet = make_run(notifying, project, make_job(notifying, project, **_job(name="quiet")))
    asked = make_run(
        notifying,
        project,
        make_job(notifying, project, **_job(name="loud", slack_alert_on_success=True)),
    )
    finish(notifying, quiet, "success", exit_code=0)
    finish(notifying, asked, "success", exit_code=0)
    assert notifying.store.outbox.for_run(quiet.id) == []
    [delivered] = wait_settled(notifying, asked.id, 1)
    assert delivered.event == "success" and delivered.state == "delivered"
    [request] = slack.wait_for(1)
    assert "loud succeeded" in request.json()["text"]


def test_cancelled_and_started_reach_webhooks_but_not_slack(
    notifying: Container, slack: Receiver, hook: Receiver
) -> None:
    project = make_project(notifying)
    job = make_job(
        notifying,
        project,
        **_job(
            webhook_enabled=True,
            webhook_url=hook.url(),
            webhook_events=["started", "success", "failure", "cancelled"],
        ),
    )
    run = make_run(notifying, project, job)
    finish(notifying, run, "cancelled", error="cancelled by a user")
    found = wait_settled(notifying, run.id, 2)
    assert sorted((n.kind, n.event) for n in found) == [
        ("webhook", "cancelled"),
        ("webhook", "started"),
    ]
    assert {r.headers["x-runyard-event"] for r in hook.wait_for(2)} == {"started", "cancelled"}
    assert slack.requests == []


def test_webhook_events_filter(notifying: Container, hook: Receiver) -> None:
    project = make_project(notifying)
    job = make_job(
        notifying,
        project,
        webhook_enabled=True,
        webhook_url=hook.url(),
        webhook_events=["failure"],
    )
    ok, bad = make_run(notifying, project, job), make_run(notifying, project, job)
    finish(notifying, ok, "success")
    finish(notifying, bad, "timed_out", error="deadline exceeded")
    assert notifying.store.outbox.for_run(ok.id) == []
    [notification] = wait_settled(notifying, bad.id, 1)
    assert notification.event == "failure"
    assert hook.wait_for(1)[0].json()["run"]["status"] == "timed_out"


def test_channel_resolution_job_then_project_then_default(
    notifying: Container, slack: Receiver
) -> None:
    with_channel = make_project(notifying, name="a", slack_channel="#project-channel")
    without = make_project(notifying, name="b")
    runs = [
        make_run(notifying, with_channel, make_job(notifying, with_channel, **_job())),
        make_run(
            notifying, with_channel, make_job(notifying, with_channel, **_job(slack_channel=None))
        ),
        make_run(notifying, without, make_job(notifying, without, **_job(slack_channel=None))),
    ]
    for run in runs:
        finish(notifying, run, "lost", error="the Kubernetes Job vanished")
    for run in runs:
        wait_settled(notifying, run.id, 1)
    channels = sorted(r.json()["channel"] for r in slack.wait_for(3))
    assert channels == ["#data-alerts", "#project-channel", "#runyard-default"]


def test_incoming_webhook_is_used_without_a_bot_token(
    container_factory: ContainerFactory, slack: Receiver
) -> None:
    container = container_factory(webhook_allowed_hosts=("127.0.0.1",))
    with receiver(always(200, b"ok")) as incoming:
        project = make_project(container, slack_webhook_url=incoming.url("/services/T/B/X"))
        run = make_run(container, project, make_job(container, project, **_job()))
        finish(container, run, "failed", results=[BROKEN], exit_code=1)
        [notification] = wait_settled(container, run.id, 1)
        assert notification.state == "delivered"
        [request] = incoming.requests
        assert request.path == "/services/T/B/X"
        assert "broken_orders" in request.json()["text"]
        assert "blocks" in request.json()


def test_slack_not_configured_fails_with_a_clear_error(
    container_factory: ContainerFactory,
) -> None:
    container = container_factory()
    project = make_project(container)
    run = make_run(container, project, make_job(container, project, **_job()))
    finish(container, run, "failed", exit_code=1)
    [notification] = wait_settled(container, run.id, 1)
    assert notification.state == "failed" and notification.attempts == 1
    assert "RUNYARD_SLACK_TOKEN" in (notification.last_error or "")


def test_webhook_body_headers_and_signature(notifying: Container, hook: Receiver) -> None:
    project = make_project(notifying)
    job = make_job(
        notifying,
        project,
        secret=SECRET,
        name="nightly",
        webhook_enabled=True,
        webhook_url=hook.url("/runyard?team=data"),
        webhook_headers={"Authorization": "Bearer receiver-token", "X-Team": "data"},
    )
    run = make_run(notifying, project, job)
    finish(notifying, run, "failed", exit_code=1, error="1 model failed", results=[BROKEN])
    [notification] = wait_settled(notifying, run.id, 1)
    [request] = hook.requests
    assert request.path == "/runyard?team=data"
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("runyard/")
    assert headers["x-runyard-event"] == "failure"
    assert headers["x-runyard-delivery"] == notification.id
    assert headers["authorization"] == "Bearer receiver-token" and headers["x-team"] == "data"
    assert headers["host"] == f"127.0.0.1:{hook.port}"
    assert verify_signature(headers["x-runyard-signature"], request.body, SECRET)
    assert not verify_signature(headers["x-runyard-signature"], request.body, SECRET[:-1] + "X")
    body = request.json()
    assert set(body) == {
        "event",
        "delivery_id",
        "occurred_at",
        "project",
        "job",
        "run",
        "failed_nodes",
        "run_url",
        "failed_step",
    }
    assert body["failed_step"] is None  # a run of one command (docs/steps.md)
    assert body["event"] == "failure" and body["delivery_id"] == notification.id
    assert body["project"] == {"id": project.id, "name": "analytics", "kind": "dbt"}
    assert body["job"] == {"id": job.id, "name": "nightly"}
    assert body["run"]["id"] == run.id and body["run"]["status"] == "failed"
    assert body["run"]["is_failed"] is True and body["run"]["exit_code"] == 1
    assert body["occurred_at"] == body["run"]["end_time"]
    assert body["failed_nodes"] == [
        {
            "unique_id": "model.dbt_demo.broken_orders",
            "name": "broken_orders",
            "resource_type": "model",
            "status": "error",
            "message": BROKEN.message,
            "step": None,
        }
    ]
    assert body["run_url"] == f"https://runyard.example.com/ui/runs/{run.id}"


def test_no_signature_without_a_secret(notifying: Container, hook: Receiver) -> None:
    project = make_project(notifying)
    job = make_job(notifying, project, webhook_enabled=True, webhook_url=hook.url())
    run = make_run(notifying, project, job)
    finish(notifying, run, "success")
    wait_settled(notifying, run.id, 1)
    assert "x-runyard-signature" not in hook.wait_for(1)[0].headers


def test_slack_message_respects_limits_however_long_the_error(
    notifying: Container, slack: Receiver
) -> None:
    nodes = [
        NodeSummary(
            unique_id=f"model.p.m{i}",
            name=f"m{i}",
            resource_type="model",
            status="error",
            message="Database Error <&>\n" + "x" * 20_000,
        )
        for i in range(80)
    ]
    project = make_project(notifying, name="p" * 300)
    run = make_run(notifying, project, JobConfig(**_job(name="j" * 300, command="dbt build")))
    finish(notifying, run, "failed", exit_code=1, results=nodes, log="line\n" * 100_000)
    [notification] = wait_settled(notifying, run.id, 1)
    assert notification.state == "delivered"
    sent = slack.wait_for(1)[0].json()
    blocks = sent["blocks"]
    assert len(blocks) <= 50 and len(sent["text"]) <= 3000
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    total = 0
    for block in blocks:
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
                total += len(block["text"]["text"])
            fields = block.get("fields", [])
            assert len(fields) <= 10 and all(len(f["text"]) <= 2000 for f in fields)
            total += sum(len(f["text"]) for f in fields)
    assert total <= 12_000
    assert "&lt;&amp;&gt;" in str(blocks) and "<&>" not in str(blocks)
    assert "more failed" in str(blocks)
