"""Retries, back-off, Retry-After, timeouts and per-host limits, against real local HTTP
servers: a slow, dead or throttling receiver delays its own notifications and no others."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.container import Container
from tests.conftest import ContainerFactory
from tests.integration.test_notify_support import (
    FAST_RETRIES,
    Receiver,
    Reply,
    always,
    finish,
    make_job,
    make_project,
    make_run,
    notifying_container,
    receiver,
    scripted,
    slack_api,
    wait_settled,
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


def test_server_errors_are_retried_then_delivered_once(notifying: Container) -> None:
    failing = scripted(Reply(status=500), Reply(status=503), Reply(status=502), Reply(status=200))
    with receiver(failing) as flaky:
        project = make_project(notifying)
        job = make_job(notifying, project, webhook_enabled=True, webhook_url=flaky.url())
        run = make_run(notifying, project, job)
        finish(notifying, run, "failed", exit_code=1)
        [notification] = wait_settled(notifying, run.id, 1)
        time.sleep(0.3)  # nothing more arrives after the success
        assert [r.headers["x-runyard-delivery"] for r in flaky.requests] == [notification.id] * 4
    assert notification.state == "delivered" and notification.attempts == 4
    assert notification.last_status_code == 200 and notification.last_error is None
    history = notifying.store.outbox.attempts([notification.id])[notification.id]
    assert [(a.status_code, a.outcome) for a in history] == [
        (500, "retry"),
        (503, "retry"),
        (502, "retry"),
        (200, "delivered"),
    ]
    assert "HTTP 500" in (history[0].error or "")
    gaps = [b.at - a.at for a, b in zip(flaky.requests, flaky.requests[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[2] > gaps[0]  # exponential back-off


def test_gives_up_after_max_attempts(notifying: Container) -> None:
    with receiver(always(500, b"down")) as down:
        project = make_project(notifying)
        job = make_job(notifying, project, webhook_enabled=True, webhook_url=down.url())
        run = make_run(notifying, project, job)
        finish(notifying, run, "failed", exit_code=1)
        [notification] = wait_settled(notifying, run.id, 1)
    assert notification.state == "failed" and notification.attempts == 5
    assert len(down.requests) == 5
    assert (notification.last_error or "").startswith("gave up after 5 attempts")


def test_client_errors_are_permanent(notifying: Container) -> None:
    with receiver(always(410, b"gone")) as gone:
        project = make_project(notifying)
        job = make_job(notifying, project, webhook_enabled=True, webhook_url=gone.url())
        run = make_run(notifying, project, job)
        finish(notifying, run, "failed", exit_code=1)
        [notification] = wait_settled(notifying, run.id, 1)
    assert notification.state == "failed" and notification.attempts == 1
    assert notification.last_status_code == 410 and "gone" in (notification.last_error or "")


def test_slack_429_retry_after_is_honoured(container_factory: ContainerFactory) -> None:
    limited = Reply(
        status=429,
        body=b'{"ok": false, "error": "ratelimited"}',
        headers={"Retry-After": "1", "Content-Type": "application/json"},
    )

    def respond(server: Receiver, request: Any) -> Reply:
        return limited if len(server.requests) == 1 else slack_api(server, request)

    with receiver(respond) as slack:
        container = container_factory(slack_token="xoxb-t", slack_base_url=slack.url("/api/"))
        container.notifications.retry_policy = FAST_RETRIES
        project = make_project(container)
        run = make_run(container, project, make_job(container, project, **_job()))
        finish(container, run, "failed", exit_code=1)
        [notification] = wait_settled(container, run.id, 1)
        first, second = slack.requests
    assert notification.state == "delivered" and notification.attempts == 2
    assert second.at - first.at >= 0.95  # Retry-After: 1, not the 50 ms back-off
    history = container.store.outbox.attempts([notification.id])[notification.id]
    assert [a.status_code for a in history] == [429, 200]


def test_webhook_429_does_not_use_up_the_retry_budget(notifying: Container) -> None:
    throttled = Reply(status=429, headers={"Retry-After": "0"})
    with receiver(scripted(*([throttled] * 6), Reply(status=204))) as busy:
        project = make_project(notifying)
        job = make_job(notifying, project, webhook_enabled=True, webhook_url=busy.url())
        run = make_run(notifying, project, job)
        finish(notifying, run, "failed", exit_code=1)
        [notification] = wait_settled(notifying, run.id, 1)
    # Six 429s and the success: more attempts than max_attempts (5), still delivered.
    assert notification.state == "delivered" and notification.attempts == 7


def test_hanging_endpoint_times_out_and_holds_up_nobody(
    notifying: Container, hook: Receiver, slack: Receiver
) -> None:
    with receiver(lambda _s, _r: Reply(hang=True)) as hanging:
        project = make_project(notifying)
        stuck_job = make_job(
            notifying, project, name="stuck", webhook_enabled=True, webhook_url=hanging.url()
        )
        stuck = [make_run(notifying, project, stuck_job) for _ in range(6)]
        for run in stuck:
            finish(notifying, run, "failed", exit_code=1)
        time.sleep(0.2)  # the hanging host now holds its share of the senders
        healthy = make_job(
            notifying, project, **_job(name="ok", webhook_enabled=True, webhook_url=hook.url())
        )
        started = time.monotonic()
        runs = [make_run(notifying, project, healthy) for _ in range(10)]
        for run in runs:
            finish(notifying, run, "failed", exit_code=1)
        hook.wait_for(10, timeout=5)
        slack.wait_for(10, timeout=5)
        elapsed = time.monotonic() - started
        assert elapsed < 0.9  # well inside the 1 s timeout the hanging requests wait for
        # At most per_host (4) requests were ever open to the hanging host at once.
        assert len(hanging.requests) <= notifying.notifications.per_host
        first = hanging.wait_for(1)[0].headers["x-runyard-delivery"]
        record = next(
            n for run in stuck for n in notifying.store.outbox.for_run(run.id) if n.id == first
        )
        deadline = time.monotonic() + 5
        while record.attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            record = notifying.store.outbox.get(record.run_id or "", record.id) or record
        history = notifying.store.outbox.attempts([record.id])[record.id]
        assert history[0].outcome == "retry" and "timed out" in (history[0].error or "")
        assert 900 <= history[0].duration_ms < 3000


def test_per_host_concurrency_is_bounded(notifying: Container) -> None:
    open_now, most = 0, 0
    lock = threading.Lock()

    def slow(_server: Receiver, _request: Any) -> Reply:
        nonlocal open_now, most
        with lock:
            open_now += 1
            most = max(most, open_now)
        time.sleep(0.1)
        with lock:
            open_now -= 1
        return Reply(status=200)

    with receiver(slow) as target:
        project = make_project(notifying)
        job = make_job(notifying, project, webhook_enabled=True, webhook_url=target.url())
        runs = [make_run(notifying, project, job) for _ in range(12)]
        for run in runs:
            finish(notifying, run, "failed", exit_code=1)
        for run in runs:
            wait_settled(notifying, run.id, 1)
    assert most == notifying.notifications.per_host
