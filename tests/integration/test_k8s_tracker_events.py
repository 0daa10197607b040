"""The tracker under awkward event streams: the same events again, older states after newer
ones, resyncs racing the watch and each other, a watch expired (410 Gone) while Jobs
changed, the API server away, and Jobs in another org's namespace."""

# ruff: noqa: F811 - the fixtures imported from the support module are test parameters here
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.container import Container
from app.executors.k8s.tracking.dispatch import Seen
from tests.integration.test_k8s_env import Kube, emulator, make_emulator  # noqa: F401
from tests.integration.test_k8s_tracker_support import (  # noqa: F401 - fixtures
    Obj,
    Tracked,
    tracked,
    tracked_app,
)

SLOT = datetime(2026, 4, 28, 2, 0, tzinfo=UTC)


def _replay(tracked: Tracked, *objects: Obj, deleted: bool = False) -> None:
    """Feed Job states to the tracker as if the watch delivered them (again)."""
    for obj in objects:
        tracked.tracker.dispatcher.queue.put(Seen(tracked.ns, obj, deleted=deleted))
    tracked.settle()


def _log_rows(tracked: Tracked, run_id: str) -> int:
    value = tracked.app.container.store.database.scalar(
        "SELECT count(*) FROM run_log_chunks WHERE run_id = ?", (run_id,)
    )
    return int(value)


def test_repeated_and_out_of_order_events_change_nothing(tracked: Tracked) -> None:
    started: list[str] = []
    finished: list[str] = []
    tracker = tracked.app.container.tracker
    tracker.on_started.append(lambda r: started.append(r.id))
    tracker.on_finished.append(lambda r: finished.append(r.id))
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    run_id, name = body["job_run_id"], body["job_name"]
    created = tracked.kube.job(name)
    tracked.fake.start_job(tracked.ns, name, logs="one\n")
    tracked.wait_status(run_id, "running")
    running = tracked.kube.job(name)
    assert created is not None and running is not None
    _replay(tracked, running, running, created)  # the same MODIFIED twice, then an older one
    assert tracked.run(run_id)["status"] == "running"

    tracked.fake.finish_job(tracked.ns, name, logs="two\n")
    done = tracked.wait_status(run_id, "success")
    complete = tracked.kube.job(name)
    assert complete is not None
    _replay(tracked, complete, complete, running, created, complete)
    tracked.tracker.resync()
    tracked.settle()
    assert tracked.run(run_id) == done
    assert tracked.logs(run_id) == "one\ntwo\n" and _log_rows(tracked, run_id) == 1
    assert started == [run_id] and finished == [run_id]


def test_a_restarted_tracker_replays_everything_and_changes_nothing(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None, concurrency_policy="Allow")
    bodies = [tracked.trigger(project["id"], job["id"]) for _ in range(3)]
    for body in bodies:
        tracked.fake.run_job(tracked.ns, body["job_name"], logs=f"{body['job_run_id']}\n")
    before = [tracked.wait_status(b["job_run_id"], "success") for b in bodies]
    tracked.tracker.stop()
    tracked.fake.reset_requests()
    tracked.tracker.start()  # lists everything again, as after a restart
    assert tracked.tracker.synced.wait(10)
    tracked.settle()
    lists = [r for r in tracked.fake.requests if r.path.endswith("/jobs") and not r.is_watch]
    assert lists, "a started tracker lists every namespace"
    assert [tracked.run(b["job_run_id"]) for b in bodies] == before
    assert all(_log_rows(tracked, b["job_run_id"]) == 1 for b in bodies)


def test_racing_resyncs_record_one_run_per_scheduled_job(tracked: Tracked) -> None:
    project = tracked.project()
    tracked.app.deploy(project["id"])
    job = tracked.job(project["id"], concurrency_policy="Allow")
    names = [
        tracked.fake.fire_cronjob(tracked.ns, "analytics-nightly", SLOT + timedelta(hours=i))
        for i in range(20)
    ]
    threads = [threading.Thread(target=tracked.tracker.resync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for name in names:  # the ADDED events again, on top of the watch and the resyncs
        _replay(tracked, tracked.kube.job(name) or {})
    for thread in threads:
        thread.join()
    tracked.settle()
    runs = tracked.runs_of(project["id"], job["id"])
    assert sorted(r["job_name"] for r in runs) == sorted(names)
    assert {r["triggered_by"] for r in runs} == {"scheduled"}
    assert sorted(r["scheduled_for"] for r in runs) == [
        (SLOT + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(20)
    ]


def test_a_watch_expired_while_jobs_changed_misses_nothing(
    emulator: Kube, container_factory: Callable[..., Container]
) -> None:
    with tracked_app(emulator, container_factory, launch_grace_seconds=0) as tracked:
        fake, ns = tracked.fake, tracked.ns
        project = tracked.project()
        tracked.app.deploy(project["id"])
        job = tracked.job(project["id"], concurrency_policy="Allow")
        bodies = [tracked.trigger(project["id"], job["id"]) for _ in range(4)]
        for body in bodies:
            fake.start_job(ns, body["job_name"])
        for body in bodies:
            tracked.wait_status(body["job_run_id"], "running")
        fake.set_down(True)  # the watch breaks; meanwhile the cluster goes on
        fake.run_job(ns, bodies[0]["job_name"], logs="finished while unwatched\n")
        fake.run_job(ns, bodies[1]["job_name"], exit_code=2, logs="Encountered an error:\n")
        fake.delete("job", ns, bodies[2]["job_name"])
        scheduled = fake.fire_cronjob(ns, "analytics-nightly", SLOT)
        fake.expire_watches()  # and the history it would resume from is gone
        fake.reset_requests()
        fake.set_down(False)
        assert tracked.wait_status(bodies[0]["job_run_id"], "success")
        assert tracked.logs(bodies[0]["job_run_id"]) == "finished while unwatched\n"
        assert tracked.wait_status(bodies[1]["job_run_id"], "failed")["exit_code"] == 2
        assert "no longer exists" in tracked.wait_status(bodies[2]["job_run_id"], "lost")["error"]
        assert tracked.run(bodies[3]["job_run_id"])["status"] == "running"
        runs = tracked.runs_of(project["id"], job["id"])
        assert [r["triggered_by"] for r in runs if r["job_name"] == scheduled] == ["scheduled"]
        watches = [r for r in fake.requests if r.is_watch]
        assert any(r.status == 200 for r in watches)
        lists = [r for r in fake.requests if r.path.endswith("/jobs") and not r.is_watch]
        assert lists, "a 410 makes the tracker list again"
        # Back to normal: the last run is followed by the new watch.
        fake.run_job(ns, bodies[3]["job_name"])
        tracked.wait_status(bodies[3]["job_run_id"], "success")


def test_no_job_is_polled_one_by_one(tracked: Tracked) -> None:
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None, concurrency_policy="Allow")
    # Ten at once, none queued (the default cap is 8; the queue is not started here).
    assert tracked.app.container.store.orgs.set_max_concurrent_runs("acme", 10)
    bodies = [tracked.trigger(project["id"], job["id"]) for _ in range(10)]
    tracked.fake.reset_requests()
    for body in bodies:
        tracked.fake.run_job(tracked.ns, body["job_name"], wait=False, logs="x\n")
    for body in bodies:
        tracked.wait_status(body["job_run_id"], "success")
    paths = [r.path for r in tracked.fake.requests if not r.is_watch]
    assert not [p for p in paths if "/jobs/" in p], paths  # no GET of a single Job
    assert len([p for p in paths if p.endswith("/log")]) == 10
    assert len([p for p in paths if p.endswith("/pods")]) <= 10


@pytest.fixture
def two_orgs(emulator: Kube, container_factory: Callable[..., Container]) -> Iterator[Tracked]:
    with tracked_app(emulator, container_factory) as result:
        yield result


def test_another_orgs_namespace_cannot_claim_a_job_or_run(two_orgs: Tracked) -> None:
    tracked = two_orgs
    fake = tracked.fake
    project = tracked.project()
    tracked.app.deploy(project["id"])
    job = tracked.job(project["id"])
    body = tracked.trigger(project["id"], job["id"])
    other_ns = tracked.kube.ns("globex")
    # globex's namespace holds a Job carrying acme's labels: a scheduled-looking one ...
    acme_cronjob = tracked.kube.cronjob("analytics-nightly")
    assert acme_cronjob is not None
    template = acme_cronjob["spec"]["jobTemplate"]
    # Its Jobs run at once: runyard would never resume another org's Job.
    template = {**template, "spec": {**template["spec"], "suspend": False}}
    fake.create(
        "cronjob",
        {
            "metadata": {"name": "analytics-nightly", "labels": template["metadata"]["labels"]},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": template},
        },
        namespace=other_ns,
    )
    spoof = fake.fire_cronjob(other_ns, "analytics-nightly", SLOT)
    fake.run_job(other_ns, spoof)
    # ... and one named like acme's run, with its run id.
    one_off = tracked.kube.job(body["job_name"])
    assert one_off is not None
    copy = {"metadata": {"name": body["job_name"], "labels": one_off["metadata"]["labels"]}}
    copy["spec"] = {"template": one_off["spec"]["template"]}
    for key in ("batch.kubernetes.io/controller-uid", "controller-uid"):
        copy["metadata"]["labels"].pop(key, None)
        copy["spec"]["template"]["metadata"]["labels"].pop(key, None)
    fake.create("job", copy, namespace=other_ns)
    fake.run_job(other_ns, body["job_name"], exit_code=1)
    time.sleep(0.3)
    tracked.tracker.resync()
    tracked.settle()
    runs = tracked.runs_of(project["id"], job["id"])
    assert [r["id"] for r in runs] == [body["job_run_id"]]
    assert runs[0]["status"] == "pending" and runs[0]["namespace"] == tracked.ns


def test_the_tracker_needs_nothing_beyond_the_roles(tracked: Tracked) -> None:
    """deploy/rbac.yaml binds runyard per org namespace, and deploy/cluster-watch.yaml lets
    it list and watch Jobs everywhere: every request the tracker makes is allowed by one of
    them, and the only cluster-wide ones are that list and watch."""
    from tests.integration.test_k8s_rbac import verb_and_resource
    from tests.unit.test_k8s_deploy import NEEDED, WATCH_NEEDED

    assert tracked.tracker.scope == "cluster"  # the emulator refuses nothing
    fake = tracked.fake
    fake.reset_requests()
    fake.expire_watches()  # the watch starts again: list, then watch
    project = tracked.project()
    job = tracked.job(project["id"], schedule=None)
    body = tracked.trigger(project["id"], job["id"])
    fake.run_job(tracked.ns, body["job_name"], logs="ok\n")
    tracked.wait_status(body["job_run_id"], "success")
    tracked.tracker.resync()
    tracked.settle()
    used: dict[tuple[str, str], set[str]] = {}
    everywhere: dict[tuple[str, str], set[str]] = {}
    for record in fake.requests:
        verb, group, resource, namespace = verb_and_resource(
            record.method, record.path, record.is_watch
        )
        assert namespace in (None, tracked.ns, tracked.kube.ns("globex")), record
        (everywhere if namespace is None else used).setdefault((group, resource), set()).add(verb)
    for key, verbs in used.items():
        assert verbs <= NEEDED.get(key, set()), (key, verbs)
    assert everywhere == WATCH_NEEDED
    assert "watch" not in used.get(("batch", "jobs"), set())  # no watch per namespace
    assert used[("", "pods")] >= {"list"} and used[("", "pods/log")] == {"get"}
