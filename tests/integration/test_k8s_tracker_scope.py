"""How the tracker watches: one watch of every namespace when runyard may list Jobs
cluster-wide, a bounded pool of threads sharing the org namespaces when it may not.
On the emulator (a real HTTP server, the real client)."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

import threading
from collections.abc import Callable

from app.container import Container
from app.executors.k8s.tracking.watch import KubernetesTracker
from tests.integration.test_k8s_env import Kube, emulator, make_emulator  # noqa: F401 - fixtures
from tests.integration.test_k8s_tracker_support import Tracked, tracked, tracked_app  # noqa: F401

CLUSTER_JOBS = r"^/apis/batch/v1/jobs(\?|$)"


def _watch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("k8s-watch")]


def _record_one_run(tracked: Tracked, name: str = "analytics") -> None:
    project = tracked.project(name=name)
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    tracked.fake.run_job(tracked.ns, body["job_name"], logs="all good\n")
    tracked.wait_status(body["job_run_id"], "success")
    assert "all good" in tracked.logs(body["job_run_id"])


def test_one_watch_of_every_namespace_when_allowed(tracked: Tracked) -> None:
    assert tracked.tracker.scope == "cluster"
    assert _watch_threads() == ["k8s-watch"]
    _record_one_run(tracked)
    watches = [r for r in tracked.fake.requests if r.is_watch]
    assert watches and all(r.path == "/apis/batch/v1/jobs" for r in watches), watches
    assert all(r.query["labelSelector"] == "app.kubernetes.io/managed-by=runyard" for r in watches)


def _refuse_cluster_wide(kube: Kube) -> None:
    assert kube.fake is not None
    kube.fake.fail_next("GET", CLUSTER_JOBS, status=403, times=1000, message="forbidden")


def _tracker_of(container: Container) -> KubernetesTracker:
    tracker = getattr(container.executor, "tracker", None)
    assert isinstance(tracker, KubernetesTracker)
    return tracker


def test_refused_cluster_wide_falls_back_to_namespaces(
    emulator: Kube, container_factory: Callable[..., Container]
) -> None:
    _refuse_cluster_wide(emulator)
    with tracked_app(emulator, container_factory) as tracked:
        assert tracked.tracker.scope == "namespaces"
        _record_one_run(tracked)
        watched = {r.path for r in tracked.fake.requests if r.is_watch and r.status != 403}
        assert watched and all("/namespaces/" in p for p in watched), watched


def test_many_org_namespaces_share_a_bounded_pool(
    emulator: Kube, container_factory: Callable[..., Container]
) -> None:
    """Twelve org namespaces, two threads: each thread visits six namespaces in turn, and a
    run in any of them is still recorded."""
    _refuse_cluster_wide(emulator)
    original = KubernetesTracker.__init__

    def two_threads(self: KubernetesTracker, *args: object, **kwargs: object) -> None:
        kwargs["watch_threads"] = 2
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    KubernetesTracker.__init__ = two_threads  # type: ignore[method-assign]
    try:
        with tracked_app(emulator, container_factory) as tracked:
            tracker = tracked.tracker
            assert tracker.scope == "namespaces" and tracker.watch_threads == 2
            for i in range(10):
                tracked.app.container.store.orgs.get_or_create(f"extra{i}")
            tracker.resync()  # picks up the new orgs' namespaces
            assert len(_watch_threads()) == 2
            assert sum(len(shard) for shard in tracker._shards) >= 12
            _record_one_run(tracked, "first")
            _record_one_run(tracked, "second")
    finally:
        KubernetesTracker.__init__ = original  # type: ignore[method-assign]
