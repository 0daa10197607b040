"""The channel registry: a channel added to CHANNELS is planned, written to the outbox (no
database constraint on its kind), delivered and listed by the API like the built-in ones,
with nothing else changed; a row whose channel is gone fails with a clear error; the
registry refuses kinds that would clash or make bad labels."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.ids import new_id, utcnow
from app.models import JobConfig, Project, WebhookEvent
from app.notify import registry, result
from app.notify.channels import Channel, ChannelInfo, Planned, RunView, Stored
from app.notify.outbound import OutboundPolicy
from app.notify.registry import Registry, build_registry
from app.notify.result import SendResult
from app.settings import Settings
from app.store.outbox import Claimed, NewNotification
from tests.conftest import ContainerFactory
from tests.integration.test_notify_support import (
    finish,
    make_job,
    make_project,
    make_run,
    wait_settled,
)

H = dict[str, str]


class Pager:
    """A channel as a new module would write it: pages someone about every failure."""

    def __init__(self, kind: str = "pager") -> None:
        self.info = ChannelInfo(kind=kind, title="Pager", target="the project's name")
        self.sent: list[tuple[Claimed, str, str]] = []
        self.closed = False

    def plan(self, job: JobConfig, event: WebhookEvent, project: Project | None) -> list[Planned]:
        if event != "failure" or project is None:
            return []
        return [Planned(kind=self.info.kind, event=event, target=project.name, host="pager")]

    def stored(self, planned: Planned, run: RunView, delivery_id: str) -> Stored:
        assert run.record is not None  # plans failures only: a run's event
        return Stored(payload=f"{run.record.id}:{delivery_id}".encode(), secret="pager-s3cret")

    def deliver(self, row: Claimed, run: RunView) -> SendResult:
        assert run.record is not None
        self.sent.append((row, run.record.id, run.log_text()))
        return result.failed("pager answered: bad key pager-s3cret and pager-token-123")

    def secrets(self, run: RunView | None) -> list[str | None]:
        return ["pager-token-123"]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def pager(monkeypatch: pytest.MonkeyPatch) -> Pager:
    made = Pager()

    def build(_settings: Settings, _policy: OutboundPolicy) -> Channel:
        return made

    monkeypatch.setattr(registry, "CHANNELS", (*registry.CHANNELS, build))  # the one line
    return made


@pytest.fixture
def container(pager: Pager, container_factory: ContainerFactory) -> Container:
    """The shared fixtures' container (client, tokens), built with the pager registered."""
    return container_factory()


def test_a_registered_channel_is_planned_delivered_and_listed(
    pager: Pager, container: Container, client: TestClient[Any], viewer_headers: H
) -> None:
    project = make_project(container, name="billing")
    run = make_run(container, project, make_job(container, project))
    finish(container, run, "failed", exit_code=1, log="boom\n")
    [notification] = wait_settled(container, run.id, 1)

    assert (notification.kind, notification.target, notification.host) == (
        "pager",
        "billing",
        "pager",
    )
    [(row, run_id, log)] = pager.sent
    assert row.id == notification.id and run_id == run.id and log == "boom\n"
    assert row.payload == f"{run.id}:{notification.id}".encode() and row.secret == "pager-s3cret"
    # The row's secret and the channel's credentials never reach the recorded error.
    assert notification.last_error == "pager answered: bad key [redacted] and [redacted]"
    assert [i.kind for i in container.notifications.channels.describe()] == [
        "slack",
        "webhook",
        "pager",
    ]

    response = client.get(f"/api/v1/runs/{run.id}/notifications", headers=viewer_headers)
    assert response.status_code == 200, response.text
    [listed] = response.json()["notifications"]
    assert (listed["kind"], listed["target"], listed["state"]) == ("pager", "billing", "failed")
    container.notifications.stop()
    assert pager.closed


def test_a_row_whose_channel_is_gone_fails_with_a_clear_error(
    container_factory: ContainerFactory,
) -> None:
    container = container_factory()  # without the pager
    project = make_project(container)
    run = make_run(container, project, make_job(container, project))
    container.store.outbox.add(
        [
            NewNotification(
                id=new_id("ntf", 20),
                org_id=run.org_id,
                run_id=run.id,
                job_id=run.job_id,
                kind="fax",
                event="failure",
                target="+1 555",
                host="fax",
            )
        ],
        utcnow(),
    )
    container.notifications.wake()
    [notification] = wait_settled(container, run.id, 1)
    assert notification.state == "failed" and notification.attempts == 1
    assert notification.last_error == "no 'fax' channel in this runyard (it has: slack, webhook)"


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        (["pager", "pager"], "two channels of kind 'pager'"),
        (["Pager"], "use 1 to 32 of a-z"),
        (["pager kind"], "use 1 to 32 of a-z"),
        ([""], "use 1 to 32 of a-z"),
    ],
)
def test_the_registry_refuses_clashing_or_unfit_kinds(kinds: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Registry([Pager(kind) for kind in kinds])


def test_a_channel_must_plan_its_own_kind() -> None:
    class Liar(Pager):
        def plan(self, *args: Any) -> list[Planned]:
            return [Planned(kind="webhook", event="failure", target="x", host="x")]

    job = JobConfig(name="j", command="dbt build")
    with pytest.raises(ValueError, match="planned a 'webhook'"):
        Registry([Liar()]).plan(job, "failure", None)


def test_slack_then_webhook_by_default() -> None:
    built = build_registry(Settings(), OutboundPolicy())
    assert [(i.kind, i.title) for i in built.describe()] == [
        ("slack", "Slack"),
        ("webhook", "Webhook"),
    ]
    built.close()
