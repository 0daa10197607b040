"""Fixtures and helpers for the run tracker's tests (test_k8s_tracker*.py): runyard with the
Kubernetes executor on the emulator (a real HTTP server, the real client) and its tracker
started, plus ways to wait for a run's state through the API."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.container import Container
from app.executors.k8s.tracking.watch import KubernetesTracker
from tests.harness.k8s import FakeCluster
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    App,
    Kube,
    build_app,
    emulator,
    make_emulator,
)

Obj = dict[str, Any]
FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"
DBT_BROKEN = (FIXTURES / "dbt_run_broken.txt").read_text()
DBT_OK = (FIXTURES / "dbt_build_all.txt").read_text()


@dataclass
class Tracked:
    """runyard (API client, container), the emulator, and the tracker."""

    app: App
    kube: Kube
    fake: FakeCluster
    tracker: KubernetesTracker

    @property
    def ns(self) -> str:
        return self.kube.ns()

    def project(self, **fields: Any) -> Obj:
        return self.app.project(**fields)

    def job(self, project_id: str, **fields: Any) -> Obj:
        return self.app.job(project_id, **fields)

    def trigger(self, project_id: str, job_id: str) -> Obj:
        response = self.app.client.post(
            f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", headers=self.app.admin
        )
        assert response.status_code == 201, response.text
        result: Obj = response.json()
        return result

    def run(self, run_id: str) -> Obj:
        response = self.app.client.get(f"/api/v1/runs/{run_id}", headers=self.app.admin)
        assert response.status_code == 200, response.text
        result: Obj = response.json()
        return result

    def logs(self, run_id: str) -> str:
        response = self.app.client.get(f"/api/v1/runs/{run_id}/logs", headers=self.app.admin)
        assert response.status_code == 200, response.text
        return response.text

    def runs_of(self, project_id: str, job_id: str) -> list[Obj]:
        response = self.app.client.get(
            f"/api/v1/projects/{project_id}/jobs/{job_id}/runs?limit=200", headers=self.app.admin
        )
        assert response.status_code == 200, response.text
        runs: list[Obj] = response.json()["runs"]
        return runs

    def wait_status(self, run_id: str, *statuses: str, timeout: float = 10.0) -> Obj:
        """Poll the run through the API until its status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} is {run['status']}, not {statuses}")
            time.sleep(0.02)

    def settle(self) -> None:
        assert self.tracker.settle(15), "the tracker did not settle"


def start_tracker(
    container: Container, *, resync_seconds: float = 3600.0, launch_grace_seconds: float = 60.0
) -> KubernetesTracker:
    """The executor's tracker, started (no periodic resync unless a test asks for one)."""
    executor = container.executor
    tracker = getattr(executor, "tracker", None)
    assert isinstance(tracker, KubernetesTracker)
    tracker.resync_seconds = resync_seconds
    tracker.dispatcher.launch_grace = timedelta(seconds=launch_grace_seconds)
    executor.start()
    assert tracker.synced.wait(10), "the tracker's first lists did not finish"
    return tracker


@contextmanager
def tracked_app(
    kube: Kube, container_factory: Callable[..., Container], **options: Any
) -> Iterator[Tracked]:
    apps = build_app(kube, container_factory)
    app = next(apps)
    assert kube.fake is not None
    try:
        tracker = start_tracker(app.container, **options)
        yield Tracked(app, kube, kube.fake, tracker)
    finally:
        apps.close()  # the container_factory fixture stops the container, and the tracker


@pytest.fixture
def tracked(emulator: Kube, container_factory: Callable[..., Container]) -> Iterator[Tracked]:
    with tracked_app(emulator, container_factory) as result:
        yield result


def finished_pods(fake: FakeCluster, namespace: str, name: str) -> list[Obj]:
    return fake.job_pods(namespace, name)
