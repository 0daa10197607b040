"""The fake cluster, exercised with the real ``kubernetes`` client over HTTP (nothing patched)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes import watch
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.rest import ApiException

from tests.harness.k8s import CronJobSkipped, FakeCluster, JobBehaviour, job_finished

NS = "org-acme"


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster() as fake:
        yield fake


@pytest.fixture
def api(cluster: FakeCluster) -> Iterator[ApiClient]:
    with cluster.api_client() as client:
        yield client


@pytest.fixture
def batch(api: ApiClient) -> BatchV1Api:
    return BatchV1Api(api)


@pytest.fixture
def core(api: ApiClient) -> CoreV1Api:
    return CoreV1Api(api)


_counter = iter(range(1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def job_body(name: str, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels or {"app.kubernetes.io/managed-by": "runyard"}},
        "spec": {
            "template": {
                "metadata": {"labels": labels or {"app.kubernetes.io/managed-by": "runyard"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "ghcr.io/acme/dbt:1.0", "args": ["dbt", "run"]}
                    ],
                },
            },
            **spec,
        },
    }


def cronjob_body(
    name: str, *, env: list[dict[str, str]] | None = None, **spec: Any
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "runyard", "runyard.dev/job-id": "job_1"}
    container: dict[str, Any] = {
        "name": "main",
        "image": "ghcr.io/acme/dbt:1.0",
        "args": ["dbt", "build"],
    }
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "schedule": "0 2 * * *",
            "timeZone": "Europe/Berlin",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"restartPolicy": "Never", "containers": [container]},
                    },
                },
            },
            **spec,
        },
    }


# ----------------------------------------------------------------------------------------------
# CRUD


def test_cronjob_crud_sets_server_metadata(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("cj")
    created = batch.create_namespaced_cron_job(NS, cronjob_body(name))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp is not None and meta.generation == 1
    assert int(meta.resource_version) == cluster.resource_version

    read = batch.read_namespaced_cron_job(name, NS)
    assert read.spec.schedule == "0 2 * * *"
    listed = batch.list_namespaced_cron_job(NS)
    assert int(listed.metadata.resource_version) >= int(meta.resource_version)
    assert name in [item.metadata.name for item in listed.items]

    with pytest.raises(ApiException) as exists:
        batch.create_namespaced_cron_job(NS, cronjob_body(name))
    assert exists.value.status == 409
    assert "AlreadyExists" in (exists.value.body or "")

    batch.delete_namespaced_cron_job(name, NS)
    with pytest.raises(ApiException) as missing:
        batch.read_namespaced_cron_job(name, NS)
    assert missing.value.status == 404
    status = json.loads(missing.value.body)
    assert status["kind"] == "Status" and status["reason"] == "NotFound"
    assert status["message"] == f'cronjobs.batch "{name}" not found'
    assert cluster.get("cronjobs", NS, name) is None


def test_replace_bumps_generation_and_checks_resource_version(
    cluster: FakeCluster, batch: BatchV1Api
) -> None:
    name = unique("cj")
    created = batch.create_namespaced_cron_job(NS, cronjob_body(name))
    body = cronjob_body(name, suspend=True)
    body["metadata"]["resourceVersion"] = created.metadata.resource_version
    replaced = batch.replace_namespaced_cron_job(name, NS, body)
    assert replaced.spec.suspend is True
    assert replaced.metadata.generation == 2
    assert replaced.metadata.uid == created.metadata.uid

    body["metadata"]["resourceVersion"] = created.metadata.resource_version  # stale now
    with pytest.raises(ApiException) as stale:
        batch.replace_namespaced_cron_job(name, NS, body)
    assert stale.value.status == 409

    # Writing the same object again is a no-op: no new resourceVersion, no event.
    body["metadata"]["resourceVersion"] = replaced.metadata.resource_version
    again = batch.replace_namespaced_cron_job(name, NS, body)
    assert again.metadata.resource_version == replaced.metadata.resource_version


def test_strategic_merge_patch_keeps_stale_list_entries(
    cluster: FakeCluster, batch: BatchV1Api
) -> None:
    name = unique("cj")
    old_env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    batch.create_namespaced_cron_job(NS, cronjob_body(name, env=old_env))
    new_body = cronjob_body(name, env=[{"name": "A", "value": "9"}])

    # The client's default for a dict body is a strategic merge patch: env merges by name.
    batch.patch_namespaced_cron_job(name, NS, new_body)
    stored = cluster.get("cronjobs", NS, name)
    assert stored is not None
    env = stored["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]
    assert stored["metadata"]["generation"] == 2

    # Other patch flavours are refused, not misapplied: runyard replaces, and tests edit by hand
    # with the client's default.
    with pytest.raises(ApiException) as json_patch:
        batch.patch_namespaced_cron_job(
            name, NS, [{"op": "replace", "path": "/spec", "value": new_body["spec"]}]
        )
    assert json_patch.value.status == 415
    assert "strategic merge patches only" in (json_patch.value.body or "")


def test_main_resource_ignores_status(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("job")
    batch.create_namespaced_job(NS, job_body(name))
    batch.patch_namespaced_job(
        name, NS, {"status": {"active": 5}, "metadata": {"labels": {"x": "y"}}}
    )
    stored = cluster.get("jobs", NS, name)
    assert (
        stored is not None and stored["status"] == {} and stored["metadata"]["labels"]["x"] == "y"
    )
    # Only the controllers the harness plays write status; the /status subresource is not served.
    with pytest.raises(ApiException) as status:
        batch.patch_namespaced_job_status(name, NS, {"status": {"active": 1}})
    assert status.value.status == 404


def test_job_gets_selector_and_labels_like_the_api_server(
    cluster: FakeCluster, batch: BatchV1Api
) -> None:
    name = unique("job")
    job = batch.create_namespaced_job(NS, job_body(name))
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    labels = job.spec.template.metadata.labels
    assert labels["job-name"] == name and labels["batch.kubernetes.io/job-name"] == name
    assert labels["controller-uid"] == uid


def test_validation_rejects_what_the_api_server_rejects(batch: BatchV1Api) -> None:
    with pytest.raises(ApiException) as too_long:
        batch.create_namespaced_cron_job(NS, cronjob_body("x" * 53))
    assert too_long.value.status == 422
    assert "must be no more than 52 characters" in (too_long.value.body or "")
    bad = job_body(unique("job"))
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as restart:
        batch.create_namespaced_job(NS, bad)
    assert restart.value.status == 422


def test_namespaces_missing_gives_404_without_auto_namespaces() -> None:
    with FakeCluster(auto_namespaces=False) as strict, strict.api_client() as client:
        batch = BatchV1Api(client)
        with pytest.raises(ApiException) as missing:
            batch.create_namespaced_job("nowhere", job_body("j"))
        assert missing.value.status == 404
        assert json.loads(missing.value.body)["message"] == 'namespaces "nowhere" not found'
        CoreV1Api(client).create_namespace({"metadata": {"name": "nowhere"}})
        batch.create_namespaced_job("nowhere", job_body("j"))
        assert strict.get("namespaces", None, "nowhere") is not None


def test_delete_propagation(cluster: FakeCluster, batch: BatchV1Api, core: CoreV1Api) -> None:
    orphaned, cascaded = unique("job"), unique("job")
    for name in (orphaned, cascaded):
        batch.create_namespaced_job(NS, job_body(name))
        cluster.run_job(NS, name)
    batch.delete_namespaced_job(orphaned, NS)  # batch/v1 default: orphan the pods
    pods = core.list_namespaced_pod(NS, label_selector=f"job-name={orphaned}").items
    assert len(pods) == 1 and not pods[0].metadata.owner_references
    batch.delete_namespaced_job(cascaded, NS, propagation_policy="Background")
    assert core.list_namespaced_pod(NS, label_selector=f"job-name={cascaded}").items == []


# ----------------------------------------------------------------------------------------------
# Selectors and pagination


def test_label_selectors(batch: BatchV1Api) -> None:
    ns = unique("sel")
    for name, env in (("a", "prod"), ("b", "dev"), ("c", None)):
        labels = {"app.kubernetes.io/managed-by": "runyard"}
        if env:
            labels["env"] = env
        batch.create_namespaced_job(ns, job_body(name, labels=labels))

    def names(**kwargs: str) -> list[str]:
        return sorted(j.metadata.name for j in batch.list_namespaced_job(ns, **kwargs).items)

    assert names(label_selector="env=prod") == ["a"]
    assert names(label_selector="env==prod") == ["a"]
    assert names(label_selector="env!=prod") == ["b", "c"]
    assert names(label_selector="env in (prod, dev)") == ["a", "b"]
    assert names(label_selector="env notin (prod)") == ["b", "c"]
    assert names(label_selector="env") == ["a", "b"]
    assert names(label_selector="!env") == ["c"]
    assert names(label_selector="app.kubernetes.io/managed-by=runyard,env in (dev)") == ["b"]
    # runyard uses no field selectors: the emulator refuses them rather than ignore them.
    with pytest.raises(ApiException) as bad:
        batch.list_namespaced_job(ns, field_selector="metadata.name=c")
    assert bad.value.status == 400 and "fieldSelector" in (bad.value.body or "")


def test_pagination(batch: BatchV1Api) -> None:
    ns = unique("page")
    for index in range(5):
        batch.create_namespaced_job(ns, job_body(f"j{index}"))
    first = batch.list_namespaced_job(ns, limit=2)
    assert [j.metadata.name for j in first.items] == ["j0", "j1"]
    assert first.metadata.remaining_item_count == 3
    seen = [j.metadata.name for j in first.items]
    token = first.metadata._continue
    while token:
        page = batch.list_namespaced_job(ns, limit=2, _continue=token)
        seen += [j.metadata.name for j in page.items]
        token = page.metadata._continue
    assert seen == [f"j{i}" for i in range(5)]


# ----------------------------------------------------------------------------------------------
# Watches


def collect(stream: Iterator[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    seen = []
    for event in stream:
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) >= count:
            break
    return seen


def test_watch_with_label_selector_and_resume(cluster: FakeCluster, batch: BatchV1Api) -> None:
    ns = unique("watch")
    batch.create_namespaced_job(ns, job_body("other", labels={"team": "b"}))
    listed = batch.list_namespaced_job(ns, label_selector="team=a")
    rv = listed.metadata.resource_version

    def act() -> None:
        batch.create_namespaced_job(ns, job_body("mine", labels={"team": "a"}))
        batch.create_namespaced_job(ns, job_body("noise", labels={"team": "b"}))
        cluster.run_job(ns, "mine")
        cluster.delete("jobs", ns, "mine")

    worker = threading.Thread(target=act)
    worker.start()
    events = collect(
        watch.Watch().stream(
            batch.list_namespaced_job,
            ns,
            label_selector="team=a",
            resource_version=rv,
            timeout_seconds=5,
        ),
        5,
    )
    worker.join()
    assert events[0] == ("ADDED", "mine")
    assert events[-1] == ("DELETED", "mine")
    assert {kind for kind, _ in events[1:-1]} == {"MODIFIED"}
    assert all(name == "mine" for _, name in events)

    # Resume from the list's resourceVersion: the same history is replayed.
    replay = collect(
        watch.Watch().stream(
            batch.list_namespaced_job,
            ns,
            label_selector="team=a",
            resource_version=rv,
            timeout_seconds=1,
        ),
        5,
    )
    assert replay == events


def test_watch_all_namespaces_and_timeout(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("job")
    batch.create_namespaced_job(unique("ns"), job_body(name))
    started = time.monotonic()
    seen = [
        event["object"].metadata.name
        for event in watch.Watch().stream(batch.list_job_for_all_namespaces, timeout_seconds=1)
    ]
    assert name in seen  # no resourceVersion: current objects come as ADDED first
    assert 0.9 <= time.monotonic() - started < 3
    assert cluster.requests[-1].query["watch"] == "True"
    # The server records a streamed response's status once it has finished writing it,
    # which can be just after the client has read the end of the stream.
    cluster.wait_for(lambda: cluster.requests[-1].status == 200, timeout=5)


def test_watch_bookmarks(cluster: FakeCluster, batch: BatchV1Api) -> None:
    with FakeCluster(bookmark_interval=0.1) as fast, fast.api_client() as client:
        rv = BatchV1Api(client).list_namespaced_job(NS).metadata.resource_version
        stream = watch.Watch().stream(
            BatchV1Api(client).list_namespaced_job,
            NS,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        )
        for event in stream:
            assert event["type"] == "BOOKMARK"
            assert event["raw_object"]["metadata"]["resourceVersion"] == rv
            break


def test_expired_watch_gets_410_and_relist_recovers(
    cluster: FakeCluster, batch: BatchV1Api, api: ApiClient
) -> None:
    ns = unique("gone")
    batch.create_namespaced_job(ns, job_body("a"))
    old_rv = batch.list_namespaced_job(ns).metadata.resource_version
    cluster.expire_watches()

    # The raw stream carries one ERROR event with a 410 Status, as the API server sends.
    response = batch.list_namespaced_job(
        ns, watch=True, resource_version=old_rv, _preload_content=False
    )
    lines = [line for line in response.read().decode().splitlines() if line]
    assert len(lines) == 1 and '"code":410' in lines[0] and '"type":"ERROR"' in lines[0]

    # kubernetes.watch.Watch retries once, then raises.
    with pytest.raises(ApiException) as gone:
        collect(watch.Watch().stream(batch.list_namespaced_job, ns, resource_version=old_rv), 1)
    assert gone.value.status == 410

    fresh = batch.list_namespaced_job(ns)
    batch.create_namespaced_job(ns, job_body("b"))
    events = collect(
        watch.Watch().stream(
            batch.list_namespaced_job,
            ns,
            resource_version=fresh.metadata.resource_version,
            timeout_seconds=2,
        ),
        1,
    )
    assert events == [("ADDED", "b")]


# ----------------------------------------------------------------------------------------------
# Logs


def test_logs_tail_and_container(cluster: FakeCluster, batch: BatchV1Api, core: CoreV1Api) -> None:
    name = unique("job")
    batch.create_namespaced_job(NS, job_body(name))
    pod = cluster.start_job(NS, name, logs="one\ntwo\nthree\n")
    assert core.read_namespaced_pod_log(pod, NS) == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log(pod, NS, tail_lines=2) == "two\nthree\n"
    assert core.read_namespaced_pod_log(pod, NS, container="main").startswith("one")
    with pytest.raises(ApiException) as wrong:
        core.read_namespaced_pod_log(pod, NS, container="sidecar")
    assert wrong.value.status == 400
    with pytest.raises(ApiException) as unserved:
        core.read_namespaced_pod_log(pod, NS, previous=True)
    assert unserved.value.status == 400 and "previous" in (unserved.value.body or "")

    # Logs written later are there on the next read; the pod's end keeps them.
    cluster.finish_job(NS, name, logs="four\n")
    raw = core.read_namespaced_pod_log(pod, NS, _preload_content=False)
    assert raw.data.decode() == "one\ntwo\nthree\nfour\n"


def test_pending_pod_has_no_logs_yet(
    cluster: FakeCluster, batch: BatchV1Api, core: CoreV1Api
) -> None:
    name = unique("job")
    batch.create_namespaced_job(NS, job_body(name))
    pod = cluster.start_job(NS, name, pending=True)
    with pytest.raises(ApiException) as waiting:
        core.read_namespaced_pod_log(pod, NS)
    assert waiting.value.status == 400 and "waiting to start" in (waiting.value.body or "")


# ----------------------------------------------------------------------------------------------
# The Job controller


def conditions(job: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in job["status"].get("conditions", [])]


def test_running_then_success(cluster: FakeCluster, batch: BatchV1Api, core: CoreV1Api) -> None:
    name = unique("job")
    batch.create_namespaced_job(NS, job_body(name))
    pod_name = cluster.start_job(NS, name)
    running = batch.read_namespaced_job(name, NS)
    assert running.status.active == 1 and running.status.start_time is not None
    pod = core.read_namespaced_pod(pod_name, NS)
    assert pod.status.phase == "Running"
    assert pod.metadata.labels["batch.kubernetes.io/job-name"] == name
    assert pod.metadata.labels["controller-uid"] == running.metadata.uid
    assert (
        pod.metadata.owner_references[0].kind == "Job"
        and pod.metadata.owner_references[0].controller
    )

    assert cluster.finish_job(NS, name, exit_code=0, logs="done\n") is True
    job = cluster.get("jobs", NS, name)
    assert job is not None
    assert conditions(job) == [
        ("SuccessCriteriaMet", "True", "CompletionsReached"),
        ("Complete", "True", "CompletionsReached"),
    ]
    assert (
        job["status"]["succeeded"] == 1
        and "active" not in job["status"]
        and "completionTime" in job["status"]
    )
    terminated = (
        core.read_namespaced_pod(pod_name, NS).status.container_statuses[0].state.terminated
    )
    assert terminated.exit_code == 0 and terminated.reason == "Completed"


def test_failure_with_retries_then_backoff_limit(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("job")
    batch.create_namespaced_job(NS, job_body(name, backoffLimit=1))
    cluster.run_job(NS, name, exit_code=3, logs="boom\n")
    job = cluster.get("jobs", NS, name)
    assert job is not None
    assert conditions(job) == [
        ("FailureTarget", "True", "BackoffLimitExceeded"),
        ("Failed", "True", "BackoffLimitExceeded"),
    ]
    assert job["status"]["failed"] == 2 and "completionTime" not in job["status"]
    pods = cluster.job_pods(NS, name)
    assert len(pods) == 2
    assert all(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3 for p in pods
    )
    assert all(p["status"]["phase"] == "Failed" for p in pods)


def test_pod_failure_policy_fails_at_once(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("job")
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 2]},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    batch.create_namespaced_job(NS, job_body(name, backoffLimit=3, podFailurePolicy=policy))
    cluster.run_job(NS, name, exit_code=2)
    job = cluster.get("jobs", NS, name)
    assert job is not None
    assert conditions(job) == [
        ("FailureTarget", "True", "PodFailurePolicy"),
        ("Failed", "True", "PodFailurePolicy"),
    ]
    pod = cluster.job_pods(NS, name)[0]["metadata"]["name"]
    assert job["status"]["conditions"][-1]["message"] == (
        f"Container main for pod {NS}/{pod} failed with exit code 2 "
        "matching FailJob rule at index 0"
    )


def test_active_deadline_is_enforced(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("job")
    batch.create_namespaced_job(NS, job_body(name, activeDeadlineSeconds=1))
    pod = cluster.start_job(NS, name, logs="slow\n")
    job = cluster.wait_for(
        lambda: (j := cluster.get("jobs", NS, name)) and job_finished(j) and j, timeout=3
    )
    assert conditions(job) == [
        ("FailureTarget", "True", "DeadlineExceeded"),
        ("Failed", "True", "DeadlineExceeded"),
    ]
    assert cluster.get("pods", NS, pod) is None  # the controller deletes the running pod
    forced = unique("job")
    batch.create_namespaced_job(NS, job_body(forced))
    cluster.run_job(NS, forced, reason="DeadlineExceeded")
    forced_job = cluster.get("jobs", NS, forced)
    assert forced_job is not None and conditions(forced_job)[-1] == (
        "Failed",
        "True",
        "DeadlineExceeded",
    )


def test_auto_complete_behaviour() -> None:
    with (
        FakeCluster(auto_complete=JobBehaviour(delay=0.02, logs="auto\n")) as fake,
        fake.api_client() as client,
    ):
        batch = BatchV1Api(client)
        batch.create_namespaced_job(NS, job_body("good", backoffLimit=0))
        batch.create_namespaced_job(NS, job_body("manual", backoffLimit=0, suspend=True))
        fake.wait_for(lambda: job_finished(fake.get("jobs", NS, "good") or {}))
        assert job_finished(fake.get("jobs", NS, "good") or {}) == "Complete"
        assert job_finished(fake.get("jobs", NS, "manual") or {}) is None  # suspended: left alone
        pod = fake.job_pods(NS, "good")[0]["metadata"]["name"]
        assert CoreV1Api(client).read_namespaced_pod_log(pod, NS) == "auto\n"


# ----------------------------------------------------------------------------------------------
# The CronJob controller


def test_fire_cronjob(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("cj")
    cronjob = batch.create_namespaced_cron_job(NS, cronjob_body(name))
    scheduled = datetime(2026, 4, 28, 0, 0, tzinfo=UTC)
    job_name = cluster.fire_cronjob(NS, name, scheduled)
    assert job_name == f"{name}-{int(scheduled.timestamp()) // 60}"
    job = batch.read_namespaced_job(job_name, NS)
    assert (
        job.metadata.annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        == "2026-04-28T02:00:00+02:00"
    )
    assert job.metadata.labels["runyard.dev/job-id"] == "job_1"
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "CronJob",
        name,
        cronjob.metadata.uid,
        True,
    )
    status = batch.read_namespaced_cron_job(name, NS).status
    assert [ref.name for ref in status.active] == [job_name]
    assert status.last_schedule_time == scheduled

    with pytest.raises(CronJobSkipped):  # concurrencyPolicy Forbid with an active Job
        cluster.fire_cronjob(NS, name, datetime(2026, 4, 29, tzinfo=UTC))
    cluster.run_job(NS, job_name)
    status = batch.read_namespaced_cron_job(name, NS).status
    assert status.active is None and status.last_successful_time is not None

    # Deleting the CronJob takes its Jobs along (background cascade).
    batch.delete_namespaced_cron_job(name, NS)
    assert cluster.get("jobs", NS, job_name) is None


def test_history_limit_and_ttl(cluster: FakeCluster, batch: BatchV1Api) -> None:
    name = unique("cj")
    batch.create_namespaced_cron_job(NS, cronjob_body(name, failedJobsHistoryLimit=1))
    fired = []
    for day in (1, 2):
        job_name = cluster.fire_cronjob(NS, name, datetime(2026, 5, day, tzinfo=UTC))
        cluster.run_job(NS, job_name, exit_code=1)
        fired.append(job_name)
    assert (
        cluster.get("jobs", NS, fired[0]) is None and cluster.get("jobs", NS, fired[1]) is not None
    )

    ttl_job = unique("job")
    batch.create_namespaced_job(NS, job_body(ttl_job, ttlSecondsAfterFinished=300))
    cluster.run_job(NS, ttl_job)
    assert cluster.run_ttl_controller(at=datetime.now(UTC)) == []
    assert cluster.run_ttl_controller() == [f"{NS}/{ttl_job}"]


# ----------------------------------------------------------------------------------------------
# Outages, injected faults, accounting, kubeconfig


def test_set_down_refuses_connections(cluster: FakeCluster, core: CoreV1Api) -> None:
    core.list_namespace()
    port = cluster.port
    cluster.set_down(True)
    try:
        with pytest.raises(urllib3.exceptions.MaxRetryError) as refused:
            core.list_namespace()
        assert isinstance(refused.value.reason, urllib3.exceptions.NewConnectionError)
        assert "Connection refused" in str(refused.value.reason)
    finally:
        cluster.set_down(False)
    assert cluster.port == port
    assert core.list_namespace().items

    cluster.set_down(True, mode="503")
    try:
        with pytest.raises(ApiException) as unavailable:
            core.list_namespace()
        assert unavailable.value.status == 503
    finally:
        cluster.set_down(False)


def test_fail_next(cluster: FakeCluster, batch: BatchV1Api) -> None:
    ns = unique("faults")
    cluster.fail_next("POST", rf"/namespaces/{ns}/jobs$", status=500)
    with pytest.raises(ApiException) as failed:
        batch.create_namespaced_job(ns, job_body("a"))
    assert failed.value.status == 500
    batch.create_namespaced_job(ns, job_body("a"))  # only the next one failed

    cluster.fail_next("GET", rf"/namespaces/{ns}/jobs/a$", status=418)
    with pytest.raises(ApiException) as teapot:
        batch.read_namespaced_job("a", ns)
    assert teapot.value.status == 418
    assert batch.read_namespaced_job("a", ns).metadata.name == "a"


def test_request_accounting(cluster: FakeCluster, batch: BatchV1Api) -> None:
    ns = unique("count")
    cluster.reset_requests()
    batch.create_namespaced_job(ns, job_body("a"))
    batch.read_namespaced_job("a", ns)
    batch.patch_namespaced_job("a", ns, {"metadata": {"labels": {"x": "1"}}})
    batch.list_namespaced_job(ns, label_selector="x=1")
    batch.delete_namespaced_job("a", ns)
    assert [(r.method, r.status) for r in cluster.requests] == [
        ("POST", 201),
        ("GET", 200),
        ("PATCH", 200),
        ("GET", 200),
        ("DELETE", 200),
    ]
    assert cluster.requests[3].query == {"labelSelector": "x=1"}
    assert cluster.writes() == 3
    cluster.reset_requests()
    assert cluster.requests == [] and cluster.writes() == 0


def test_kubeconfig(cluster: FakeCluster, tmp_path: Path) -> None:
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    client = kubernetes.config.new_client_from_config(config_file=str(path))
    assert "default" in [n.metadata.name for n in CoreV1Api(client).list_namespace().items]


async def test_usable_from_async_tests() -> None:
    """The cluster runs its own loop on its own thread: an async test calls it through
    ``asyncio.to_thread`` and its own loop stays free meanwhile."""
    with FakeCluster() as fake, fake.api_client() as client:
        batch = BatchV1Api(client)
        await asyncio.to_thread(batch.create_namespaced_job, NS, job_body("a"))
        await asyncio.to_thread(fake.run_job, NS, "a", duration=0.05, logs="x\n")
        job = await asyncio.to_thread(batch.read_namespaced_job, "a", NS)
        assert job.status.succeeded == 1


def test_single_json_log_line_is_mangled_by_the_client(
    cluster: FakeCluster, batch: BatchV1Api, core: CoreV1Api
) -> None:
    """Not an emulator quirk: kubernetes 35's read_namespaced_pod_log json-decodes the text/plain
    body, so a tail of one JSON line (dbt --log-format json) comes back as a Python dict repr.
    Read logs with ``_preload_content=False`` to get the bytes."""
    name = unique("job")
    batch.create_namespaced_job(NS, job_body(name))
    pod = cluster.start_job(NS, name, logs='{"info": {"msg": "a"}}\n{"info": {"level": "error"}}\n')
    assert core.read_namespaced_pod_log(pod, NS, tail_lines=1) == "{'info': {'level': 'error'}}"
    raw = core.read_namespaced_pod_log(pod, NS, tail_lines=1, _preload_content=False)
    assert raw.data.decode() == '{"info": {"level": "error"}}\n'


def test_server_defaults_are_opt_in(batch: BatchV1Api) -> None:
    name = unique("cj")
    plain = batch.create_namespaced_cron_job(NS, cronjob_body(name))
    assert plain.spec.successful_jobs_history_limit is None
    with FakeCluster(server_defaults=True) as fake, fake.api_client() as client:
        defaulted = BatchV1Api(client).create_namespaced_cron_job(NS, cronjob_body(name))
        assert defaulted.spec.successful_jobs_history_limit == 3
        container = defaulted.spec.job_template.spec.template.spec.containers[0]
        assert container.image_pull_policy == "IfNotPresent"
        assert container.termination_message_path == "/dev/termination-log"


def test_namespace_deletion_takes_its_contents(
    cluster: FakeCluster, batch: BatchV1Api, core: CoreV1Api
) -> None:
    ns = unique("del")
    batch.create_namespaced_job(ns, job_body("done"))
    cluster.run_job(ns, "done")
    # runyard deletes in the background; foreground deletion is refused, not half-served.
    with pytest.raises(ApiException) as foreground:
        batch.delete_namespaced_job("done", ns, propagation_policy="Foreground")
    assert foreground.value.status == 400
    batch.create_namespaced_job(ns, job_body("left"))
    core.delete_namespace(ns)
    assert cluster.get("namespaces", None, ns) is None
    assert cluster.list("jobs", ns) == [] and cluster.list("pods", ns) == []


def test_fake_cluster_in_a_child_process() -> None:
    from tests.harness.k8s_server import FakeClusterProcess

    with FakeClusterProcess(auto_complete_delay=0.0) as fake, fake.api_client() as client:
        batch = BatchV1Api(client)
        batch.create_namespaced_job(NS, job_body("a"))
        deadline = time.monotonic() + 5
        while batch.read_namespaced_job("a", NS).status.succeeded != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stats = fake.request_stats()
        assert stats["writes"] == 1 and stats["total"] >= 2
        fake.reset_requests()
        assert fake.request_stats()["total"] == 0
