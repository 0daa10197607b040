"""Drift repair and failures: the cluster down and back, hand deletes and hand edits undone,
leftovers removed, the reconcile loop and `runyard reconcile`, and the API server's refusals
reported as problems that say what the cluster answered."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.cli import main as cli_main
from app.container import Container
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
NAME = "analytics-nightly"


def fake_of(kube: Kube) -> FakeCluster:
    assert kube.fake is not None
    return kube.fake


def deployed_job(app: App, **fields: Any) -> tuple[Obj, Obj]:
    project = app.project()
    app.deploy(project["id"])
    return project, app.job(project["id"], **fields)


def pod_of(cronjob: Obj) -> Obj:
    pod: Obj = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_a_change_saved_while_the_cluster_is_down_is_applied_when_it_is_back(
    emulator_app: App, emulator: Kube, mode: Any
) -> None:
    project, job = deployed_job(emulator_app)
    fake_of(emulator).set_down(True, mode=mode)
    response = emulator_app.update_job(project["id"], job["id"], schedule="15 3 * * *")
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["schedule"] == "15 3 * * *" and saved["version"] == 2
    assert saved["sync_state"] == "pending" and "Kubernetes API" in saved["sync_error"]
    created = emulator_app.job(project["id"], name="created-while-down")
    assert created["sync_state"] == "pending"
    read = emulator_app.read_job(project["id"], job["id"])
    assert read["sync_state"] == "pending" and read["schedule"] == "15 3 * * *"
    with pytest.raises(Exception, match="could not"):
        emulator_app.executor.reconcile()

    fake_of(emulator).set_down(False)
    report = emulator_app.executor.reconcile()
    assert (report.created, report.updated, report.failed) == (1, 1, 0)
    assert (emulator.cronjob(NAME) or {})["spec"]["schedule"] == "15 3 * * *"
    assert emulator.cronjob("analytics-created-while-down") is not None
    for job_id in (job["id"], created["id"]):
        read = emulator_app.read_job(project["id"], job_id)
        assert read["sync_state"] == "in_sync" and read["sync_error"] is None


def test_deploy_while_the_cluster_is_down_is_503_and_marks_the_jobs(
    emulator_app: App, emulator: Kube
) -> None:
    project = emulator_app.project()
    job = emulator_app.job(project["id"])
    fake_of(emulator).set_down(True)
    response = emulator_app.client.post(
        f"/api/v1/projects/{project['id']}/deploy", headers=emulator_app.admin
    )
    assert response.status_code == 503
    assert f"{fake_of(emulator).url}" in response.json()["detail"]
    assert emulator_app.read_job(project["id"], job["id"])["sync_state"] == "pending"
    fake_of(emulator).set_down(False)
    assert emulator_app.executor.reconcile().created == 1  # the project stays deployed


def test_a_hand_deleted_cronjob_is_restored(app: App, kube: Kube) -> None:
    deployed_job(app)
    kube.delete_cronjob(NAME)
    assert kube.cronjob(NAME) is None
    report = app.executor.reconcile()
    assert report.created == 1 and report.failed == 0
    assert kube.cronjob(NAME) is not None


def test_hand_edits_are_reverted_and_others_left_alone(app: App, kube: Kube) -> None:
    project, _ = deployed_job(app, environment={"THREADS": "4"})
    app.job(project["id"], name="untouched")
    before = kube.cronjob("analytics-untouched") or {}
    kube.edit_cronjob(NAME, {"spec": {"schedule": "* * * * *", "suspend": True}})
    kube.edit_cronjob(
        NAME,
        {
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "main",
                                        "env": [{"name": "EXTRA", "value": "1"}],
                                        "securityContext": {"privileged": True},
                                    }
                                ]
                            }
                        }
                    }
                }
            }
        },
    )
    edited = pod_of(kube.cronjob(NAME) or {})["containers"][0]
    assert edited["securityContext"].get("privileged") is True  # the edit took

    kube.reset_requests()
    report = app.executor.reconcile()
    assert (report.updated, report.unchanged, report.failed) == (1, 1, 0)
    restored = kube.cronjob(NAME) or {}
    assert restored["spec"]["schedule"] == "0 2 * * *" and restored["spec"]["suspend"] is False
    main = pod_of(restored)["containers"][0]
    assert "privileged" not in main["securityContext"]
    assert "EXTRA" not in {e["name"] for e in main["env"]}
    after = kube.cronjob("analytics-untouched") or {}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    if kube.fake is not None:
        writes = [r for r in kube.fake.requests if r.is_write]
        assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in writes] == [("PUT", NAME)]


def test_leftovers_are_removed_and_foreign_cronjobs_kept(emulator_app: App, emulator: Kube) -> None:
    fake = fake_of(emulator)
    project, job = deployed_job(emulator_app)
    # The job is deleted while the cluster is down: its CronJob stays behind.
    fake.set_down(True)
    response = emulator_app.client.delete(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}", headers=emulator_app.admin
    )
    # The database is the source of truth: the job is deleted, the CronJob waits for reconcile.
    assert response.status_code == 204
    fake.set_down(False)
    assert emulator.cronjob(NAME) is not None
    foreign = emulator.cronjob(NAME) or {}
    foreign_copy = {
        "metadata": {"name": "someone-elses", "labels": {"team": "data"}},
        "spec": foreign["spec"],
    }
    emulator.create_cronjob(foreign_copy)
    report = emulator_app.executor.reconcile()
    assert report.deleted == 1
    assert emulator.cronjob(NAME) is None and emulator.cronjob("someone-elses") is not None


def test_cronjobs_of_an_undeployed_project_are_removed(emulator_app: App, emulator: Kube) -> None:
    project, _ = deployed_job(emulator_app)
    manifest = emulator.cronjob(NAME) or {}
    emulator_app.client.post(
        f"/api/v1/projects/{project['id']}/undeploy", headers=emulator_app.admin
    )
    # Someone re-applies an old copy by hand.
    emulator.create_cronjob(
        {"metadata": manifest["metadata"] | {"resourceVersion": None}, "spec": manifest["spec"]}
    )
    assert emulator_app.executor.reconcile().deleted == 1
    assert emulator.cronjobs() == []


def test_reconcile_twice_writes_nothing(emulator_app: App, emulator: Kube) -> None:
    project, _ = deployed_job(emulator_app)
    emulator_app.job(project["id"], name="second", enabled=False)
    emulator_app.executor.reconcile()
    emulator.reset_requests()
    report = emulator_app.executor.reconcile()
    assert (report.unchanged, report.created, report.updated, report.deleted) == (2, 0, 0, 0)
    assert emulator.writes() == 0


def test_the_reconcile_loop_repairs_on_its_own(
    emulator: Kube, container_factory: Callable[..., Container]
) -> None:
    container = container_factory(start=True, executor="kubernetes", reconcile_interval_seconds=0.1)
    token, _ = container.tokens.create("acme", "admin")
    from app.services.projects import ProjectCreate

    principal = container.tokens.authenticate(token)
    project = container.projects.create(
        principal, ProjectCreate(name="analytics", kind="dbt", image="ghcr.io/acme/a:1")
    )
    from app.services.jobs import JobCreate

    container.jobs.create(
        principal, project.id, JobCreate(name="nightly", command="dbt build", schedule="0 2 * * *")
    )
    container.projects.deploy(principal, project.id)
    emulator.delete_cronjob(NAME)
    fake_of(emulator).wait_for(lambda: emulator.cronjob(NAME), timeout=10)
    container.stop()  # the loop ends and the client closes
    started = time.monotonic()
    container.executor.stop()  # a second stop is harmless
    assert time.monotonic() - started < 1


def test_runyard_reconcile_command(
    emulator_app: App, emulator: Kube, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    deployed_job(emulator_app)
    emulator.delete_cronjob(NAME)
    settings = emulator_app.container.settings
    monkeypatch.setenv("RUNYARD_DATABASE", settings.database)
    monkeypatch.setenv("RUNYARD_EXECUTOR", "kubernetes")
    assert cli_main(["reconcile"]) == 0
    out = capsys.readouterr().out
    assert "1 created, 0 updated, 0 deleted, 0 unchanged, 0 failed" in out
    assert emulator.cronjob(NAME) is not None
    fake_of(emulator).set_down(True)
    assert cli_main(["reconcile"]) == 3
    assert "could not be reached" in capsys.readouterr().err


def test_runyard_reconcile_with_the_local_executor_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("RUNYARD_DATABASE", str(tmp_path / "r.db"))
    monkeypatch.setenv("RUNYARD_EXECUTOR", "local")
    assert cli_main(["reconcile"]) == 2
    assert "Kubernetes executor" in capsys.readouterr().err


# --- what the cluster refuses -------------------------------------------------------------


def test_a_refusal_is_502_quoting_the_cluster(emulator_app: App, emulator: Kube) -> None:
    project = emulator_app.project()
    emulator_app.deploy(project["id"])
    fake_of(emulator).fail_next(
        "POST",
        "/cronjobs",
        status=403,
        message='cronjobs.batch is forbidden: User "x" cannot create',
    )
    job = emulator_app.job(project["id"])
    assert job["sync_state"] == "pending"
    assert "403 Forbidden" in job["sync_error"] and "RoleBinding" in job["sync_error"]
    fake_of(emulator).fail_next("POST", "/jobs", status=422, message="spec.template: Invalid value")
    response = emulator_app.client.post(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger", headers=emulator_app.admin
    )
    assert response.status_code == 502
    problem = response.json()
    assert problem["title"] == "Cluster refused the request"
    assert "422" in problem["detail"] and "spec.template: Invalid value" in problem["detail"]
    assert "Traceback" not in response.text


def test_a_missing_namespace_says_how_to_fix_it(
    make_emulator: Callable[..., Kube], container_factory: Callable[..., Container]
) -> None:
    from tests.integration.test_k8s_env import build_app

    kube = make_emulator()
    running = build_app(kube, container_factory)
    app = next(running)
    try:
        project = app.project(headers=app.other)
        app.job(project["id"], headers=app.other)
        fake_of(kube).delete("namespace", None, "org-globex")
        report = app.deploy(project["id"], headers=app.other)["cronjobs"]
        assert report["failed"] == 1
        assert "does not create namespaces" in report["errors"][0]
    finally:
        running.close()


def test_reconcile_age_is_a_metric(emulator_app: App, emulator: Kube) -> None:
    deployed_job(emulator_app)
    emulator_app.executor.reconcile()
    text = emulator_app.client.get("/metrics").text
    sample = next(
        line for line in text.splitlines() if line.startswith("runyard_reconcile_age_seconds ")
    )
    assert 0 <= float(sample.split()[1]) < 60
    assert "# TYPE runyard_tracker_events_waiting gauge" in text
