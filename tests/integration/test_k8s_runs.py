"""One-off runs as Kubernetes Jobs (trigger, cancel, live logs) and the live jobs API
(``/api/v1/jobs``: filters, label selectors, one Job, its logs, other orgs)."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.executors.k8s.render import labels as runyard_labels
from tests.harness.k8s import FakeCluster
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    App,
    Kube,
    app,
    emulator,
    emulator_app,
    kube,
    make_emulator,
)

Obj = dict[str, Any]


def trigger(app: App, project_id: str, job_id: str, **body: Any) -> Obj:
    response = app.client.post(
        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json=body or None, headers=app.admin
    )
    assert response.status_code == 201, response.text
    result: Obj = response.json()
    return result


def fake_of(kube: Kube) -> FakeCluster:
    assert kube.fake is not None
    return kube.fake


def test_trigger_creates_a_job_labelled_with_its_run(app: App, kube: Kube) -> None:
    project = app.project()
    job = app.job(project["id"], schedule=None, retries=1, timeout_seconds=900)
    body = trigger(app, project["id"], job["id"])
    assert set(body) == {"job_run_id", "job_name", "status", "message"}
    assert body["status"] == "pending" and body["job_name"].startswith("analytics-nightly-")

    run = app.client.get(f"/api/v1/runs/{body['job_run_id']}", headers=app.admin).json()
    assert run["status"] == "pending" and run["executor"] == "kubernetes"
    assert run["namespace"] == kube.ns() and run["job_name"] == body["job_name"]

    created = kube.job(body["job_name"])
    assert created is not None
    assert created["metadata"]["labels"]["runyard.dev/run-id"] == body["job_run_id"]
    assert created["metadata"]["labels"]["runyard.dev/job-id"] == job["id"]
    pod_labels = created["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["runyard.dev/run-id"] == body["job_run_id"]
    assert created["spec"]["backoffLimit"] == 1
    assert created["spec"]["activeDeadlineSeconds"] == 900


def test_trigger_with_an_override_runs_that_command(emulator_app: App, emulator: Kube) -> None:
    project = emulator_app.project()
    job = emulator_app.job(project["id"])
    body = trigger(emulator_app, project["id"], job["id"], command_override="dbt test -s orders")
    main = (emulator.job(body["job_name"]) or {})["spec"]["template"]["spec"]["containers"][0]
    assert main["command"] == ["dbt"] and main["args"] == ["test", "-s", "orders"]


def test_cancel_deletes_the_job_and_its_pods(emulator_app: App, emulator: Kube) -> None:
    fake = fake_of(emulator)
    project = emulator_app.project()
    job = emulator_app.job(project["id"])
    body = trigger(emulator_app, project["id"], job["id"])
    fake.start_job(emulator.ns(), body["job_name"], logs="running\n")
    response = emulator_app.client.post(
        f"/api/v1/runs/{body['job_run_id']}/cancel", headers=emulator_app.admin
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert emulator.job(body["job_name"]) is None
    assert fake.list("pods", emulator.ns()) == []


def test_run_logs_are_read_from_the_pod_while_it_runs(emulator_app: App, emulator: Kube) -> None:
    project = emulator_app.project()
    job = emulator_app.job(project["id"])
    body = trigger(emulator_app, project["id"], job["id"])
    url = f"/api/v1/runs/{body['job_run_id']}/logs"
    assert emulator_app.client.get(url, headers=emulator_app.admin).text == ""  # no pod yet
    fake_of(emulator).start_job(emulator.ns(), body["job_name"], logs="Running with dbt=1.11\n")
    assert emulator_app.client.get(url, headers=emulator_app.admin).text == (
        "Running with dbt=1.11\n"
    )


def test_trigger_while_the_cluster_is_down_is_503_and_the_run_failed(
    emulator_app: App, emulator: Kube
) -> None:
    project = emulator_app.project()
    job = emulator_app.job(project["id"])
    fake_of(emulator).set_down(True)
    response = emulator_app.client.post(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger", headers=emulator_app.admin
    )
    assert response.status_code == 503, response.text
    problem = response.json()
    assert "could not be reached" in problem["detail"] and "Traceback" not in response.text
    runs = emulator_app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs", headers=emulator_app.admin
    ).json()["runs"]
    assert runs[0]["status"] == "failed" and "could not start" in runs[0]["error"]


# --- the live jobs API -----------------------------------------------------------------------


def test_live_jobs_list_and_filters(emulator_app: App, emulator: Kube) -> None:
    fake, ns = fake_of(emulator), emulator.ns()
    analytics = emulator_app.project()
    marketing = emulator_app.project(name="marketing")
    jobs = {
        name: emulator_app.job(analytics["id"], name=name, concurrency_policy="Allow")
        for name in ("ok", "broken", "busy")
    }
    other = emulator_app.job(marketing["id"], name="nightly")
    names = {
        n: trigger(emulator_app, analytics["id"], j["id"])["job_name"] for n, j in jobs.items()
    }
    queued = trigger(emulator_app, marketing["id"], other["id"])
    fake.run_job(ns, names["ok"], exit_code=0, logs="done\n")
    fake.run_job(ns, names["broken"], exit_code=1, logs="Database Error\n")
    fake.start_job(ns, names["busy"], logs="working\n")
    # A scheduled Job: made by the CronJob controller from a runyard CronJob.
    emulator_app.deploy(marketing["id"])
    scheduled = fake.fire_cronjob(ns, "marketing-nightly", datetime(2026, 4, 28, 2, tzinfo=UTC))
    # A Job runyard did not create is never shown.
    foreign = {
        "metadata": {"name": "someone-elses"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "x", "image": "busybox"}],
                }
            }
        },
    }
    emulator.create_job(foreign)

    def listing(query: str = "") -> Obj:
        response = emulator_app.client.get(f"/api/v1/jobs{query}", headers=emulator_app.viewer)
        assert response.status_code == 200, response.text
        result: Obj = response.json()
        return result

    emulator.reset_requests()
    everything = listing()
    assert everything["total"] == 5
    by_id = {j["id"]: j for j in everything["jobs"]}
    assert "someone-elses" not in by_id
    assert by_id[names["ok"]]["status"] == "succeeded"
    assert by_id[names["ok"]]["completion_time"] is not None
    assert by_id[names["broken"]]["status"] == "failed"
    assert by_id[names["broken"]]["reason"] == "PodFailurePolicy"  # exit 1: no retry
    assert by_id[names["busy"]]["status"] == "running"
    assert by_id[queued["job_name"]]["status"] == "pending"
    assert by_id[names["ok"]]["project"] == "analytics"
    assert by_id[names["ok"]]["run_id"] and by_id[names["ok"]]["job_id"] == jobs["ok"]["id"]
    assert by_id[scheduled]["scheduled"] is True and by_id[scheduled]["cronjob"] == (
        "marketing-nightly"
    )
    assert by_id[scheduled]["project"] == "marketing" and by_id[scheduled]["run_id"] is None
    assert by_id[scheduled]["scheduled_time"] == "2026-04-28T02:00:00Z"
    list_requests = [r for r in fake.requests if r.path == f"/apis/batch/v1/namespaces/{ns}/jobs"]
    assert len(list_requests) == 1
    assert list_requests[0].query["labelSelector"] == "app.kubernetes.io/managed-by=runyard"

    assert [j["id"] for j in listing("?status=running")["jobs"]] == [names["busy"]]
    assert listing("?status=failed")["total"] == 1
    marketing_only = listing("?project=marketing")
    assert {j["id"] for j in marketing_only["jobs"]} == {queued["job_name"], scheduled}
    assert fake.requests[-1].query["labelSelector"] == (
        f"app.kubernetes.io/managed-by=runyard,runyard.dev/project-id={marketing['id']}"
    )
    assert listing("?project=nope") == {"jobs": [], "total": 0}
    limited = listing("?limit=2")
    assert len(limited["jobs"]) == 2 and limited["total"] == 5
    bad = emulator_app.client.get("/api/v1/jobs?status=done", headers=emulator_app.viewer)
    assert bad.status_code == 422


def test_live_job_detail_and_logs_with_tail(emulator_app: App, emulator: Kube) -> None:
    fake, ns = fake_of(emulator), emulator.ns()
    project = emulator_app.project()
    job = emulator_app.job(project["id"])
    name = trigger(emulator_app, project["id"], job["id"])["job_name"]
    fake.run_job(ns, name, exit_code=0, logs="".join(f"line {i}\n" for i in range(1, 201)))

    detail = emulator_app.client.get(f"/api/v1/jobs/{name}", headers=emulator_app.viewer).json()
    assert detail["status"] == "succeeded"
    assert [c["type"] for c in detail["conditions"] if c["status"] == "True"][-1] == "Complete"
    assert detail["pods"][0]["containers"][0]["exit_code"] == 0

    logs = emulator_app.client.get(f"/api/v1/jobs/{name}/logs?tail=3", headers=emulator_app.viewer)
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    assert logs.text == "line 198\nline 199\nline 200\n"
    default = emulator_app.client.get(f"/api/v1/jobs/{name}/logs", headers=emulator_app.viewer)
    assert default.text.splitlines()[0] == "line 101" and len(default.text.splitlines()) == 100
    assert fake.requests[-1].query.get("tailLines") == "100"


def test_logs_of_retried_pods_come_one_after_the_other(emulator_app: App, emulator: Kube) -> None:
    fake, ns = fake_of(emulator), emulator.ns()
    project = emulator_app.project()
    job = emulator_app.job(project["id"], retries=1)
    name = trigger(emulator_app, project["id"], job["id"])["job_name"]
    fake.run_job(ns, name, exit_code=3, logs="attempt\n")  # 3: not a no-retry exit code
    text = emulator_app.client.get(f"/api/v1/jobs/{name}/logs", headers=emulator_app.admin).text
    assert text.count("attempt\n") == 2 and text.count("==> ") == 2


def test_another_orgs_job_is_404(app: App, kube: Kube) -> None:
    project = app.project()
    job = app.job(project["id"])
    name = trigger(app, project["id"], job["id"])["job_name"]
    for path in (f"/api/v1/jobs/{name}", f"/api/v1/jobs/{name}/logs"):
        assert app.client.get(path, headers=app.other).status_code == 404
        assert app.client.get(path, headers=app.viewer).status_code == 200
    assert app.client.get("/api/v1/jobs", headers=app.other).json() == {"jobs": [], "total": 0}


def test_a_job_without_runyards_label_is_404(emulator_app: App, emulator: Kube) -> None:
    body: Obj = {
        "metadata": {"name": "hand-made", "labels": runyard_labels("acme", "p", "j")},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "x", "image": "busybox"}],
                }
            }
        },
    }
    body["metadata"]["labels"].pop("app.kubernetes.io/managed-by")
    emulator.create_job(body)
    response = emulator_app.client.get("/api/v1/jobs/hand-made", headers=emulator_app.admin)
    assert response.status_code == 404


def test_live_api_with_the_local_executor_is_409(
    client: Any, admin_headers: dict[str, str]
) -> None:
    for path in ("/api/v1/jobs", "/api/v1/jobs/x", "/api/v1/jobs/x/logs"):
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 409, response.text
        assert response.json()["type"].endswith("/kubernetes-only")
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "/api/v1/runs" in response.json()["detail"]
