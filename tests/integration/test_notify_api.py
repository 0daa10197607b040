"""GET /api/v1/runs/{run_id}/notifications and POST .../{notification_id}/retry over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.models import RunRecord
from tests.conftest import ContainerFactory
from tests.integration.api_helpers import assert_problem
from tests.integration.test_notify_support import (
    FAST_RETRIES,
    Receiver,
    always,
    finish,
    make_job,
    make_project,
    make_run,
    receiver,
    wait_settled,
)

H = dict[str, str]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(always(404, b"no such hook")) as server:
        yield server


@pytest.fixture
def container(container_factory: ContainerFactory) -> Container:
    """The shared fixtures' container, allowed to reach this test's receiver."""
    built = container_factory(webhook_allowed_hosts=("127.0.0.1",), notify_timeout_seconds=1.0)
    built.notifications.retry_policy = FAST_RETRIES
    return built


@pytest.fixture
def failed_run(container: Container, hook: Receiver, admin_headers: H) -> RunRecord:
    """A run of org acme whose webhook failed for good (404); Slack is not configured."""
    project = make_project(container)
    job = make_job(
        container, project, slack_alerts_enabled=True, webhook_enabled=True, webhook_url=hook.url()
    )
    run = make_run(container, project, job)
    finish(container, run, "failed", exit_code=1)
    wait_settled(container, run.id, 2)
    return run


def _url(run: RunRecord) -> str:
    return f"/api/v1/runs/{run.id}/notifications"


def test_list_shows_attempts_status_and_error(
    client: TestClient[Any], viewer_headers: H, failed_run: RunRecord
) -> None:
    response = client.get(_url(failed_run), headers=viewer_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 2
    slack, webhook = body["notifications"]
    assert (slack["kind"], webhook["kind"]) == ("slack", "webhook")
    assert webhook["id"].startswith("ntf_") and webhook["delivery_id"] == webhook["id"]
    assert webhook["run_id"] == failed_run.id and webhook["event"] == "failure"
    assert webhook["target"].startswith("http://127.0.0.1:")
    assert webhook["state"] == "failed" and webhook["attempts"] == 1
    assert webhook["last_status_code"] == 404 and "no such hook" in webhook["last_error"]
    assert webhook["next_attempt_at"] is None and webhook["delivered_at"] is None
    [attempt] = webhook["history"]
    assert attempt["attempt"] == 1 and attempt["outcome"] == "failed"
    assert attempt["status_code"] == 404 and attempt["duration_ms"] >= 0
    assert "RUNYARD_SLACK_TOKEN" in slack["last_error"]
    assert "secret" not in response.text


def test_other_orgs_get_404(
    client: TestClient[Any], other_org_headers: H, failed_run: RunRecord, container: Container
) -> None:
    assert_problem(client.get(_url(failed_run), headers=other_org_headers), 404)
    webhook = container.store.outbox.for_run(failed_run.id)[1]
    response = client.post(f"{_url(failed_run)}/{webhook.id}/retry", headers=other_org_headers)
    assert_problem(response, 404)
    assert container.store.outbox.get(failed_run.id, webhook.id) == webhook


def test_unknown_run_is_404(client: TestClient[Any], admin_headers: H) -> None:
    assert_problem(client.get("/api/v1/runs/run_nope/notifications", headers=admin_headers), 404)


def test_viewers_cannot_retry(
    client: TestClient[Any], viewer_headers: H, failed_run: RunRecord, container: Container
) -> None:
    webhook = container.store.outbox.for_run(failed_run.id)[1]
    response = client.post(f"{_url(failed_run)}/{webhook.id}/retry", headers=viewer_headers)
    assert_problem(response, 403)
    assert container.store.outbox.get(failed_run.id, webhook.id) == webhook


def test_admin_retries_a_failed_notification(
    client: TestClient[Any],
    admin_headers: H,
    failed_run: RunRecord,
    container: Container,
    hook: Receiver,
) -> None:
    webhook = container.store.outbox.for_run(failed_run.id)[1]
    hook.respond = always(200)  # the receiver was fixed
    response = client.post(f"{_url(failed_run)}/{webhook.id}/retry", headers=admin_headers)
    assert response.status_code == 202, response.text
    assert response.json()["state"] in ("pending", "delivering", "delivered")
    wait_settled(container, failed_run.id, 2)
    again = client.get(_url(failed_run), headers=admin_headers).json()["notifications"][1]
    assert again["state"] == "delivered" and again["attempts"] == 2
    assert [a["outcome"] for a in again["history"]] == ["failed", "delivered"]
    # Same delivery id both times: the receiver can tell it is the same notification.
    assert {r.headers["x-runyard-delivery"] for r in hook.requests} == {webhook.id}
    # Only failed notifications can be retried.
    response = client.post(f"{_url(failed_run)}/{webhook.id}/retry", headers=admin_headers)
    assert_problem(response, 409)
    response = client.post(f"{_url(failed_run)}/ntf_unknown/retry", headers=admin_headers)
    assert_problem(response, 404)
