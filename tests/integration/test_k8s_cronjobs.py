"""CronJobs through the API: create, update, suspend, rename, delete, deploy and undeploy
(idempotent: a second deploy makes no writes), and the manifest endpoint.

Runs on the emulator, and on a real cluster for the ``cluster``-marked parameter."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.container import Container
from app.executors.k8s.sync import up_to_date
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    IMAGE,
    App,
    Kube,
    app,
    build_app,
    emulator,
    emulator_app,
    kube,
    make_emulator,
)

Obj = dict[str, Any]
RUNYARD_LABELS = ("app.kubernetes.io/managed-by", "runyard.dev/org", "runyard.dev/project-id")


def env_of(cronjob: Obj) -> dict[str, str | None]:
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def container_of(cronjob: Obj) -> Obj:
    main: Obj = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return main


def test_job_of_a_deployed_project_gets_its_cronjob(app: App, kube: Kube) -> None:
    project = app.project()
    app.deploy(project["id"])
    job = app.job(project["id"], environment={"THREADS": "4"}, timezone="Europe/Berlin")
    assert job["sync_state"] == "in_sync" and job["sync_error"] is None

    cronjob = kube.cronjob("analytics-nightly")
    assert cronjob is not None
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 2 * * *" and spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid" and spec["suspend"] is False
    labels = cronjob["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "runyard"
    assert labels["runyard.dev/org"] == "acme"
    assert labels["runyard.dev/project-id"] == project["id"]
    assert labels["runyard.dev/job-id"] == job["id"]
    # Scheduled Jobs are recognisable: the jobTemplate and its pods carry the labels too.
    template = spec["jobTemplate"]
    assert all(template["metadata"]["labels"][k] == labels[k] for k in RUNYARD_LABELS)
    assert template["spec"]["template"]["metadata"]["labels"]["runyard.dev/job-id"] == job["id"]
    main = container_of(cronjob)
    assert main["command"] == ["dbt"] and main["args"] == ["build"]
    assert main["image"] == IMAGE
    assert env_of(cronjob)["THREADS"] == "4"


def test_job_of_an_undeployed_project_has_no_cronjob(app: App, kube: Kube) -> None:
    project = app.project()
    job = app.job(project["id"])
    assert job["sync_state"] == "not_deployed"
    assert kube.cronjobs() == []


def test_update_replaces_the_cronjob_and_drops_a_removed_env_var(app: App, kube: Kube) -> None:
    project = app.project()
    app.deploy(project["id"])
    job = app.job(project["id"], environment={"KEEP": "1", "DROP": "2"})
    assert {"KEEP", "DROP"} <= set(env_of(kube.cronjob("analytics-nightly") or {}))

    response = app.update_job(
        project["id"],
        job["id"],
        environment={"KEEP": "1"},
        schedule="30 4 * * 1-5",
        command="dbt run --select tag:daily",
        resources={"requests": {"cpu": "250m"}},
        timeout_seconds=600,
        retries=2,
        concurrency_policy="Replace",
    )
    assert response.status_code == 200, response.text
    assert response.json()["sync_state"] == "in_sync"

    cronjob = kube.cronjob("analytics-nightly")
    assert cronjob is not None
    env = env_of(cronjob)
    assert "KEEP" in env and "DROP" not in env  # a merge patch would have kept it
    assert cronjob["spec"]["schedule"] == "30 4 * * 1-5"
    assert cronjob["spec"]["concurrencyPolicy"] == "Replace"
    job_spec = cronjob["spec"]["jobTemplate"]["spec"]
    assert job_spec["activeDeadlineSeconds"] == 600 and job_spec["backoffLimit"] == 2
    main = container_of(cronjob)
    assert main["args"] == ["run", "--select", "tag:daily"]
    assert main["resources"] == {"requests": {"cpu": "250m"}}


def test_disable_suspends_and_enable_resumes(app: App, kube: Kube) -> None:
    project = app.project()
    app.deploy(project["id"])
    job = app.job(project["id"])
    assert app.update_job(project["id"], job["id"], enabled=False).status_code == 200
    assert (kube.cronjob("analytics-nightly") or {})["spec"]["suspend"] is True
    assert app.update_job(project["id"], job["id"], enabled=True).status_code == 200
    assert (kube.cronjob("analytics-nightly") or {})["spec"]["suspend"] is False


def test_rename_moves_the_cronjob_and_delete_removes_it(app: App, kube: Kube) -> None:
    project = app.project()
    app.deploy(project["id"])
    job = app.job(project["id"])
    assert app.update_job(project["id"], job["id"], name="hourly").status_code == 200
    assert [c["metadata"]["name"] for c in kube.cronjobs()] == ["analytics-hourly"]

    response = app.client.delete(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}", headers=app.admin
    )
    assert response.status_code == 204
    assert kube.cronjobs() == []


def test_removing_the_schedule_removes_the_cronjob(app: App, kube: Kube) -> None:
    project = app.project()
    app.deploy(project["id"])
    job = app.job(project["id"])
    response = app.update_job(project["id"], job["id"], schedule=None)
    assert response.status_code == 200 and response.json()["sync_state"] == "in_sync"
    assert kube.cronjobs() == []


def test_deploy_twice_writes_nothing_the_second_time(app: App, kube: Kube) -> None:
    project = app.project(environment={"WAREHOUSE": "prod"}, resources={"limits": {"cpu": "1"}})
    for name in ("a", "b", "c"):
        app.job(project["id"], name=name, resources={"requests": {"memory": "512Mi"}})
    app.job(project["id"], name="on-demand", schedule=None)

    first = app.deploy(project["id"])["cronjobs"]
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0)
    versions = {c["metadata"]["name"]: c["metadata"]["resourceVersion"] for c in kube.cronjobs()}
    assert sorted(versions) == ["analytics-a", "analytics-b", "analytics-c"]

    kube.reset_requests()
    second = app.deploy(project["id"])["cronjobs"]
    assert (second["created"], second["updated"], second["deleted"]) == (0, 0, 0)
    assert second["unchanged"] == 3 and second["failed"] == 0
    after = {c["metadata"]["name"]: c["metadata"]["resourceVersion"] for c in kube.cronjobs()}
    assert after == versions
    if kube.fake is not None:
        assert kube.writes() == 0
        lists = [r for r in kube.fake.requests if r.path.endswith("/cronjobs")]
        assert len(lists) == 2  # runyard's one LIST, and the test's own
        assert lists[0].query["labelSelector"] == (
            f"app.kubernetes.io/managed-by=runyard,runyard.dev/project-id={project['id']}"
        )


@pytest.fixture
def defaulting(
    make_emulator: Callable[..., Kube], container_factory: Callable[..., Container]
) -> Iterator[tuple[App, Kube]]:
    """The emulator filling in the API server's defaults, as a real cluster does."""
    kube = make_emulator(server_defaults=True)
    running = build_app(kube, container_factory)
    yield next(running), kube
    running.close()


def test_deploy_is_idempotent_against_server_defaults(defaulting: tuple[App, Kube]) -> None:
    """The API server fills defaults (imagePullPolicy, dnsPolicy, ...): no write for those."""
    app, kube = defaulting
    project = app.project(
        template_overrides={
            "volumes": [{"name": "creds", "secret": {"secretName": "dbt-creds"}}],
            "volume_mounts": [{"name": "creds", "mountPath": "/secrets", "readOnly": True}],
        }
    )
    app.job(project["id"])
    app.deploy(project["id"])
    live = kube.cronjob("analytics-nightly") or {}
    assert container_of(live)["imagePullPolicy"] == "IfNotPresent"  # the server's, not ours
    kube.reset_requests()
    assert app.deploy(project["id"])["cronjobs"]["unchanged"] == 1
    assert kube.writes() == 0


def test_project_change_redeploys_every_cronjob(app: App, kube: Kube) -> None:
    project = app.project()
    app.job(project["id"], name="a")
    app.job(project["id"], name="b")
    app.deploy(project["id"])
    response = app.client.put(
        f"/api/v1/projects/{project['id']}",
        json={
            "image": "ghcr.io/acme/analytics:2.0",
            "template_overrides": {"node_selector": {"pool": "batch"}},
        },
        headers=app.admin,
    )
    assert response.status_code == 200, response.text
    for cronjob in kube.cronjobs():
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == "ghcr.io/acme/analytics:2.0"
        assert pod["nodeSelector"] == {"pool": "batch"}


def test_undeploy_removes_the_cronjobs_and_marks_jobs(app: App, kube: Kube) -> None:
    project = app.project()
    job = app.job(project["id"])
    app.deploy(project["id"])
    response = app.client.post(f"/api/v1/projects/{project['id']}/undeploy", headers=app.admin)
    assert response.status_code == 200, response.text
    assert response.json()["cronjobs"]["deleted"] == 1
    assert kube.cronjobs() == []
    assert app.read_job(project["id"], job["id"])["sync_state"] == "not_deployed"
    again = app.client.post(f"/api/v1/projects/{project['id']}/undeploy", headers=app.admin)
    assert again.json()["cronjobs"]["deleted"] == 0


def test_deleting_a_deployed_project_removes_its_cronjobs(app: App, kube: Kube) -> None:
    project = app.project()
    app.job(project["id"])
    app.deploy(project["id"])
    response = app.client.delete(
        f"/api/v1/projects/{project['id']}?cascade=true", headers=app.admin
    )
    assert response.status_code == 204
    assert kube.cronjobs() == []


def test_a_cronjob_runyard_does_not_own_is_not_taken_over(app: App, kube: Kube) -> None:
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "analytics-nightly"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "x", "image": "busybox"}],
                        }
                    }
                }
            },
        },
    }
    kube.create_cronjob(foreign)
    project = app.project()
    job = app.job(project["id"])
    report = app.deploy(project["id"])["cronjobs"]
    assert report["failed"] == 1 and "already exists" in report["errors"][0]
    read = app.read_job(project["id"], job["id"])
    assert read["sync_state"] == "pending" and "already exists" in read["sync_error"]
    assert (kube.cronjob("analytics-nightly") or {})["spec"]["schedule"] == "* * * * *"


def test_manifest_is_what_gets_applied(app: App, kube: Kube) -> None:
    project = app.project()
    job = app.job(project["id"], enabled=False)
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/manifest"
    manifest = app.client.get(url, headers=app.viewer).json()
    assert kube.cronjob("analytics-nightly") is None  # a dry run: nothing applied
    assert manifest["metadata"]["namespace"] == kube.ns()
    assert manifest["spec"]["suspend"] is True
    app.deploy(project["id"])
    assert up_to_date(manifest, kube.cronjob("analytics-nightly") or {})
    yaml_text = app.client.get(url + "?format=yaml", headers=app.viewer)
    assert yaml_text.headers["content-type"].startswith("application/yaml")
    assert "kind: CronJob" in yaml_text.text


def test_manifest_of_an_unscheduled_job_is_409(emulator_app: App) -> None:
    project = emulator_app.project()
    job = emulator_app.job(project["id"], schedule=None)
    response = emulator_app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/manifest", headers=emulator_app.admin
    )
    assert response.status_code == 409 and "trigger" in response.json()["detail"]


def test_manifest_of_another_orgs_job_is_404(emulator_app: App) -> None:
    project = emulator_app.project()
    job = emulator_app.job(project["id"])
    response = emulator_app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/manifest", headers=emulator_app.other
    )
    assert response.status_code == 404


def test_manifest_works_with_the_local_executor(client: Any, admin_headers: dict[str, str]) -> None:
    """Rendering needs no cluster: a laptop runyard shows what production would apply."""
    project = client.post(
        "/api/v1/projects",
        json={"name": "analytics", "kind": "dbt", "image": IMAGE},
        headers=admin_headers,
    ).json()
    job = client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "nightly", "command": "dbt build", "schedule": "0 2 * * *"},
        headers=admin_headers,
    ).json()
    response = client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/manifest", headers=admin_headers
    )
    assert response.status_code == 200, response.text
    manifest = response.json()
    assert manifest["kind"] == "CronJob" and manifest["metadata"]["name"] == "analytics-nightly"
    assert manifest["metadata"]["namespace"] == "org-acme"


def test_a_name_shared_by_two_projects_is_not_taken_over(app: App, kube: Kube) -> None:
    """Project "a-b" with job "c" and project "a" with job "b-c" both want CronJob "a-b-c"."""
    first = app.project(name="a-b")
    app.job(first["id"], name="c")
    app.deploy(first["id"])
    second = app.project(name="a")
    job = app.job(second["id"], name="b-c", schedule="*/5 * * * *")
    report = app.deploy(second["id"])["cronjobs"]
    assert report["failed"] == 1 and "does not belong to this project" in report["errors"][0]
    assert app.read_job(second["id"], job["id"])["sync_state"] == "pending"
    live = kube.cronjob("a-b-c") or {}
    assert live["metadata"]["labels"]["runyard.dev/project-id"] == first["id"]
    assert live["spec"]["schedule"] == "0 2 * * *"
    response = app.update_job(second["id"], job["id"], schedule="*/10 * * * *")
    assert response.json()["sync_state"] == "pending"
    assert (kube.cronjob("a-b-c") or {})["spec"]["schedule"] == "0 2 * * *"
