"""Alerts from REAL dbt runs: examples/dbt_demo run by the local executor through the API,
delivered to local receivers through the real slack_sdk and httpx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from tests.conftest import ContainerFactory
from tests.integration.test_notify_support import (
    Receiver,
    receiver,
    slack_api,
    verify_signature,
)

pytestmark = pytest.mark.slow
H = dict[str, str]
SECRET = "whsec-dbt-0123456789"
TERMINAL = {"success", "failed", "timed_out", "cancelled", "lost"}


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with receiver(slack_api) as server:
        yield server


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as server:
        yield server


@pytest.fixture
def container(container_factory: ContainerFactory, slack: Receiver) -> Container:
    return container_factory(
        slack_token="xoxb-dbt",
        slack_base_url=slack.url("/api/"),
        public_url="http://runyard.test",
        webhook_allowed_hosts=("127.0.0.1",),
    )


def _run_job(
    client: TestClient[Any], headers: H, project_dir: Path, command: str, **job: Any
) -> dict[str, Any]:
    project = client.post(
        "/api/v1/projects",
        json={"name": "analytics", "kind": "dbt", "path": str(project_dir)},
        headers=headers,
    ).json()
    body = {"name": "nightly", "command": command, "schedule": None} | job
    created = client.post(f"/api/v1/projects/{project['id']}/jobs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    url = f"/api/v1/projects/{project['id']}/jobs/{created.json()['id']}/trigger"
    run_id = client.post(url, headers=headers).json()["job_run_id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] in TERMINAL:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish")


def _notifications(client: TestClient[Any], headers: H, run_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        found: list[dict[str, Any]] = client.get(
            f"/api/v1/runs/{run_id}/notifications", headers=headers
        ).json()["notifications"]
        if found and all(n["state"] in ("delivered", "failed") for n in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_failed_dbt_build_alerts_slack_and_webhook_naming_the_broken_model(
    client: TestClient[Any],
    admin_headers: H,
    dbt_project_dir: Path,
    slack: Receiver,
    hook: Receiver,
) -> None:
    run = _run_job(
        client,
        admin_headers,
        dbt_project_dir,
        "dbt build",
        slack_alerts_enabled=True,
        slack_channel="#data-alerts",
        webhook_enabled=True,
        webhook_url=hook.url("/dbt"),
        webhook_secret=SECRET,
    )
    assert run["status"] == "failed"
    found = _notifications(client, admin_headers, run["id"])
    assert [(n["kind"], n["state"], n["attempts"]) for n in found] == [
        ("slack", "delivered", 1),
        ("webhook", "delivered", 1),
    ]

    [message] = slack.requests
    sent = message.json()
    assert sent["channel"] == "#data-alerts"
    assert "model broken_orders" in sent["text"]
    assert "Could not convert string 'abc' to INT32" in sent["text"]
    blocks = str(sent["blocks"])
    assert "model broken_orders" in blocks and "Conversion Error" in blocks
    assert "test assert_customers_spend_at_least_10" in blocks
    assert "Last lines of the log" in blocks
    assert f"http://runyard.test/ui/runs/{run['id']}" in blocks  # the run's page (docs/ui.md)
    assert sent["metadata"]["event_payload"]["delivery_id"] == found[0]["delivery_id"]

    [request] = hook.requests
    assert verify_signature(request.headers["x-runyard-signature"], request.body, SECRET)
    assert request.headers["x-runyard-delivery"] == found[1]["delivery_id"]
    body = request.json()
    assert body["event"] == "failure" and body["run"]["id"] == run["id"]
    failed = {n["unique_id"]: n for n in body["failed_nodes"]}
    broken = failed["model.dbt_demo.broken_orders"]
    assert broken["status"] == "error" and "Conversion Error" in broken["message"]
    assert any(uid.startswith("test.dbt_demo.assert_customers") for uid in failed)


def test_successful_dbt_build_alerts_slack_only_when_asked(
    client: TestClient[Any],
    admin_headers: H,
    dbt_project_dir: Path,
    slack: Receiver,
    hook: Receiver,
) -> None:
    run = _run_job(
        client,
        admin_headers,
        dbt_project_dir,
        "dbt build --exclude tag:broken",
        slack_alerts_enabled=True,
        slack_alert_on_success=True,
        slack_channel="#data",
        webhook_enabled=True,
        webhook_url=hook.url(),
    )
    assert run["status"] == "success"
    found = _notifications(client, admin_headers, run["id"])
    assert [(n["kind"], n["event"], n["state"]) for n in found] == [
        ("slack", "success", "delivered"),
        ("webhook", "success", "delivered"),
    ]
    assert "analytics / nightly succeeded" in slack.requests[0].json()["text"]
    assert hook.requests[0].json()["failed_nodes"] == []
