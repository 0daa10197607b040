"""A notification retry is in the audit trail, with who asked; a refused one is not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
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


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(always(404, b"no such hook")) as server:
        yield server


@pytest.fixture
def container(container_factory: ContainerFactory) -> Container:
    built = container_factory(webhook_allowed_hosts=("127.0.0.1",), notify_timeout_seconds=1.0)
    built.notifications.retry_policy = FAST_RETRIES
    return built


def test_a_notification_retry_is_recorded(
    client: TestClient[Any], container: Container, hook: Receiver
) -> None:
    project = make_project(container)
    job = make_job(container, project, webhook_enabled=True, webhook_url=hook.url())
    run = make_run(container, project, job)
    finish(container, run, "failed", exit_code=1)
    wait_settled(container, run.id, 1)
    [webhook] = [n for n in container.store.outbox.for_run(run.id) if n.kind == "webhook"]
    token, info = container.tokens.create("acme", "admin", "on-call")
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "req-retry-7"}
    url = f"/api/v1/runs/{run.id}/notifications/{webhook.id}/retry"
    hook.respond = always(200)
    assert client.post(url, headers=headers).status_code == 202
    # A second retry is refused (it is no longer failed): nothing more is recorded.
    wait_settled(container, run.id, 1)
    assert_problem(client.post(url, headers=headers), 409)
    events = client.get("/api/v1/audit", params={"actor": "on-call"}, headers=headers).json()
    [entry] = events["items"]
    assert (entry["action"], entry["object_id"]) == ("notification.retry", webhook.id)
    assert (entry["actor_token_id"], entry["request_id"]) == (info.id, "req-retry-7")
    assert entry["project_id"] == project.id
    assert entry["diff"]["state"][0] == "failed"
