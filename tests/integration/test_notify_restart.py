"""Nothing is lost when runyard dies: a process records a run's end (and so its outbox
rows) and is SIGKILLed before, or while, delivering; a new Container on the same database
delivers, and a receiver that drops duplicates by delivery id processes each once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.container import Container
from app.settings import Settings
from tests.conftest import ContainerFactory
from tests.integration.test_notify_support import (
    Received,
    Receiver,
    Reply,
    receiver,
    slack_api,
    wait_settled,
)

REPO = Path(__file__).resolve().parents[2]

# The doomed process: records a failed run with Slack and a webhook, then either dies at
# once ("before": no worker ever ran) or starts delivering and waits to be killed.
CHILD = """
import os, signal, sys, time
from datetime import timedelta
from app.container import Container
from app.settings import Settings
from tests.integration.test_notify_support import finish, make_job, make_project, make_run

database, slack_url, hook_url, mode = sys.argv[1:5]
settings = Settings(
    database=database, executor="local",
    slack_token="xoxb-restart", slack_base_url=slack_url,
    webhook_allowed_hosts=("127.0.0.1",), notify_timeout_seconds=30.0,
)
container = Container(settings)
container.notifications.lease = timedelta(seconds=2)
if mode == "during":
    container.start()
project = make_project(container)
job = make_job(
    container, project, slack_alerts_enabled=True, slack_channel="#alerts",
    webhook_enabled=True, webhook_url=hook_url,
)
run = make_run(container, project, job)
finish(container, run, "failed", exit_code=1, error="model broken_orders failed")
print(run.id, flush=True)
if mode == "before":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(60)
"""


class Deduplicating:
    """A receiver's logic: process each delivery id once, acknowledge repeats."""

    def __init__(self, delivery_id: Callable[[Received], str], answer: Callable[..., Reply]):
        self.processed: list[str] = []
        self.duplicates = 0
        self.hang_first = False
        self._delivery_id = delivery_id
        self._answer = answer
        self._lock = threading.Lock()

    def __call__(self, server: Receiver, request: Received) -> Reply:
        if self.hang_first and len(server.requests) == 1:
            return Reply(hang=True)
        key = self._delivery_id(request)
        with self._lock:
            if key in self.processed:
                self.duplicates += 1
            else:
                self.processed.append(key)
        return self._answer(server, request)


@pytest.fixture
def slack_side() -> Iterator[tuple[Receiver, Deduplicating]]:
    logic = Deduplicating(lambda r: r.json()["metadata"]["event_payload"]["delivery_id"], slack_api)
    with receiver(logic) as server:
        yield server, logic


@pytest.fixture
def hook_side() -> Iterator[tuple[Receiver, Deduplicating]]:
    logic = Deduplicating(lambda r: r.headers["x-runyard-delivery"], lambda *_: Reply())
    with receiver(logic) as server:
        yield server, logic


def _doomed(
    settings: Settings, slack: Receiver, hook: Receiver, mode: str
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, settings.database, slack.url("/api/"), hook.url(), mode],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _restarted(container_factory: ContainerFactory, slack: Receiver) -> Container:
    return container_factory(
        slack_token="xoxb-restart",
        slack_base_url=slack.url("/api/"),
        webhook_allowed_hosts=("127.0.0.1",),
        notify_timeout_seconds=2.0,
    )


def test_killed_before_delivering_then_restarted_delivers_once(
    settings_factory: Callable[..., Settings],
    container_factory: ContainerFactory,
    slack_side: tuple[Receiver, Deduplicating],
    hook_side: tuple[Receiver, Deduplicating],
) -> None:
    (slack, slack_logic), (hook, hook_logic) = slack_side, hook_side
    child = _doomed(settings_factory(), slack, hook, "before")
    out, _ = child.communicate(timeout=120)
    assert child.returncode == -9  # SIGKILL: no clean shutdown ran
    run_id = out.split()[0]
    assert slack.requests == [] and hook.requests == []  # killed before any delivery

    container = _restarted(container_factory, slack)
    record = container.store.runs.record(run_id)
    assert record is not None and record.status == "failed"
    found = wait_settled(container, run_id, 2)
    assert [n.state for n in found] == ["delivered", "delivered"]
    assert slack_logic.processed == [found[0].id] and hook_logic.processed == [found[1].id]
    assert slack_logic.duplicates == hook_logic.duplicates == 0


def test_killed_while_delivering_then_restarted_delivers_once(
    settings_factory: Callable[..., Settings],
    container_factory: ContainerFactory,
    slack_side: tuple[Receiver, Deduplicating],
    hook_side: tuple[Receiver, Deduplicating],
) -> None:
    (slack, slack_logic), (hook, hook_logic) = slack_side, hook_side
    hook_logic.hang_first = True  # the child's webhook request never gets its answer
    child = _doomed(settings_factory(), slack, hook, "during")
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().split()[0]
        hook.wait_for(1, timeout=30)
        slack.wait_for(1, timeout=30)
    finally:
        child.kill()
        child.wait(timeout=30)
    container = _restarted(container_factory, slack)
    # The webhook row is still claimed by the dead process; its lease (2 s) runs out,
    # then the new container delivers it again with the same delivery id.
    found = wait_settled(container, run_id, 2, timeout=30)
    assert [n.state for n in found] == ["delivered", "delivered"]
    webhook = found[1]
    assert webhook.attempts == 2
    assert [r.headers["x-runyard-delivery"] for r in hook.requests] == [webhook.id] * 2
    assert hook_logic.processed == [webhook.id]
    assert slack_logic.processed == [found[0].id] and slack_logic.duplicates == 0
