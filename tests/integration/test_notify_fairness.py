"""Fair delivery: one org's burst of failures does not hold back another org's alert.

Real HTTP (the Slack stand-in of test_notify_support), runs finished through the tracker.
Ordering, not timing: the Slack receiver holds its first answers until the other org's run
has failed, so the burst is queued (and partly claimed) before the lone alert exists, on
any machine however slow. First come, first served would send the lone alert last.
"""

from __future__ import annotations

import threading

from app.container import Container
from app.ids import new_id, utcnow
from app.models import Project
from tests.conftest import ContainerFactory
from tests.integration.test_notify_support import (
    Received,
    Receiver,
    Reply,
    finish,
    make_job,
    make_run,
    notifying_container,
    receiver,
    slack_api,
)

BURST = 300
TAIL = 100  # the lone alert must arrive before at least this many of the burst's alerts


def _project(container: Container, org_slug: str) -> Project:
    org = container.store.orgs.get_or_create(org_slug)
    now = utcnow()
    project = Project(
        id=new_id("proj"),
        org_id=org.id,
        org_slug=org.slug,
        name="analytics",
        kind="dbt",
        created_at=now,
        updated_at=now,
    )
    container.store.projects.save(project)
    return project


def test_one_orgs_burst_does_not_hold_back_another_orgs_alert(
    container_factory: ContainerFactory,
) -> None:
    gate = threading.Event()

    def held_slack(target: Receiver, request: Received) -> Reply:
        gate.wait(30)
        return slack_api(target, request)

    with receiver(held_slack) as slack:
        container = notifying_container(container_factory, slack)
        noisy, quiet = _project(container, "noisy"), _project(container, "quiet")
        noisy_job = make_job(container, noisy, slack_alerts_enabled=True, slack_channel="#noisy")
        quiet_job = make_job(container, quiet, slack_alerts_enabled=True, slack_channel="#quiet")
        for _ in range(BURST):
            finish(container, make_run(container, noisy, noisy_job), "failed", error="boom")
        slack.wait_for(1)  # the burst's delivery has begun (and is held)
        finish(container, make_run(container, quiet, quiet_job), "failed", error="boom")
        gate.set()
        received = slack.wait_for(BURST + 1, timeout=60)

    channels = [r.json()["channel"] for r in received]
    assert channels.count("#noisy") == BURST and channels.count("#quiet") == 1
    after = len(channels) - 1 - channels.index("#quiet")
    assert after >= TAIL, f"the quiet org's alert came {after} alerts before the burst's end"
    states = container.store.outbox.counts()
    assert states.get("delivered") == BURST + 1, states
