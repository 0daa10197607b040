"""Environments on Kubernetes (emulator): a dbt job's prod and staging environments render
different targets, images and Secret references; the manifest endpoint shows the references
(and hides sealed values); a one-off trigger runs the prod job once against staging; runyard
never reads a Secret."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

from typing import Any

from tests.integration.api_helpers import assert_problem
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    IMAGE,
    App,
    Kube,
    emulator,
    emulator_app,
    make_emulator,
)

Obj = dict[str, Any]
PROD_IMAGE = "ghcr.io/acme/analytics:2.0"
STAGING_IMAGE = "ghcr.io/acme/analytics:2.1-rc1"
PROD_TOKEN = "prod-api-token-4f9a1c"


def main_container(pod_spec: Obj) -> Obj:
    container: Obj = next(c for c in pod_spec["containers"] if c["name"] == "main")
    return container


def cronjob_container(cronjob: Obj) -> Obj:
    return main_container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])


def env_by_name(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env") or []}


def environment(app: App, project_id: str, **fields: Any) -> Obj:
    response = app.client.post(
        f"/api/v1/projects/{project_id}/environments", json=fields, headers=app.admin
    )
    assert response.status_code == 201, response.text
    result: Obj = response.json()
    return result


def prod_and_staging(app: App) -> tuple[Obj, Obj, Obj]:
    project = app.project(environment={"WAREHOUSE": "DEFAULT_WH"})
    prod = environment(
        app,
        project["id"],
        name="prod",
        target="prod",
        image=PROD_IMAGE,
        environment={"WAREHOUSE": "PROD_WH"},
        secret_environment={"API_TOKEN": PROD_TOKEN},
        secret_env={"SNOWFLAKE_PASSWORD": {"secret": "warehouse", "key": "password"}},
        secret_env_from=["warehouse-extra"],
    )
    staging = environment(
        app,
        project["id"],
        name="staging",
        target="staging",
        image=STAGING_IMAGE,
        environment={"WAREHOUSE": "STAGING_WH"},
        secret_env={"SNOWFLAKE_PASSWORD": {"secret": "warehouse-staging", "key": "pw"}},
    )
    return project, prod, staging


def test_prod_and_staging_render_their_targets_images_and_secret_references(
    emulator_app: App, emulator: Kube
) -> None:
    app = emulator_app
    project, prod, staging = prod_and_staging(app)
    assert prod["secret_environment"] == {"API_TOKEN": "********"}
    app.deploy(project["id"])
    app.job(project["id"], name="prod-nightly", environment_id=prod["id"])
    app.job(project["id"], name="staging-nightly", environment_id=staging["id"])
    app.job(project["id"], name="plain-nightly")  # the default environment: the project's

    prod_cronjob = emulator.cronjob("analytics-prod-nightly")
    staging_cronjob = emulator.cronjob("analytics-staging-nightly")
    plain_cronjob = emulator.cronjob("analytics-plain-nightly")
    assert prod_cronjob and staging_cronjob and plain_cronjob
    prod_main = cronjob_container(prod_cronjob)
    staging_main = cronjob_container(staging_cronjob)
    plain_main = cronjob_container(plain_cronjob)

    assert prod_main["image"] == PROD_IMAGE and staging_main["image"] == STAGING_IMAGE
    assert plain_main["image"] == IMAGE
    assert prod_main["args"][-2:] == ["--target", "prod"]
    assert staging_main["args"][-2:] == ["--target", "staging"]
    assert "--target" not in (plain_main.get("args") or [])

    prod_env, staging_env = env_by_name(prod_main), env_by_name(staging_main)
    assert prod_env["SNOWFLAKE_PASSWORD"] == {
        "name": "SNOWFLAKE_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "warehouse", "key": "password"}},
    }
    assert staging_env["SNOWFLAKE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "warehouse-staging",
        "key": "pw",
    }
    assert prod_main["envFrom"] == [{"secretRef": {"name": "warehouse-extra"}}]
    assert "envFrom" not in staging_main
    assert prod_env["WAREHOUSE"]["value"] == "PROD_WH"
    assert staging_env["WAREHOUSE"]["value"] == "STAGING_WH"
    assert env_by_name(plain_main)["WAREHOUSE"]["value"] == "DEFAULT_WH"

    # The manifest endpoint shows the references, and the sealed value only as REDACTED.
    jobs = app.client.get(f"/api/v1/projects/{project['id']}/jobs", headers=app.admin).json()
    prod_job = next(j for j in jobs["jobs"] if j["name"] == "prod-nightly")
    response = app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{prod_job['id']}/manifest", headers=app.admin
    )
    assert response.status_code == 200, response.text
    assert PROD_TOKEN not in response.text
    shown = cronjob_container(response.json())
    assert env_by_name(shown)["API_TOKEN"]["value"] == "********"
    assert env_by_name(shown)["SNOWFLAKE_PASSWORD"] == prod_env["SNOWFLAKE_PASSWORD"]
    assert shown["envFrom"] == [{"secretRef": {"name": "warehouse-extra"}}]

    # Changing an environment re-renders its jobs' CronJobs (and only theirs).
    response = app.client.put(
        f"/api/v1/projects/{project['id']}/environments/{staging['id']}",
        json={"image": "ghcr.io/acme/analytics:2.1-rc2", "target": "stage2"},
        headers=app.admin,
    )
    assert response.status_code == 200, response.text
    staging_main = cronjob_container(emulator.cronjob("analytics-staging-nightly") or {})
    assert staging_main["image"] == "ghcr.io/acme/analytics:2.1-rc2"
    assert staging_main["args"][-2:] == ["--target", "stage2"]
    assert cronjob_container(emulator.cronjob("analytics-prod-nightly") or {}) == prod_main

    # runyard stores references only: it never asked the cluster for a Secret.
    assert emulator.fake is not None
    assert emulator.fake.requests
    assert not [r for r in emulator.fake.requests if "/secrets" in r.path]

    # What the cluster stores equals what runyard renders: reconcile writes nothing.
    emulator.reset_requests()
    app.executor.reconcile()
    assert emulator.writes() == 0
    assert not [r for r in emulator.fake.requests if "/secrets" in r.path]


def test_one_off_trigger_runs_the_prod_job_against_staging(
    emulator_app: App, emulator: Kube
) -> None:
    app = emulator_app
    project, prod, staging = prod_and_staging(app)
    job = app.job(project["id"], name="prod-nightly", environment_id=prod["id"], schedule=None)
    trigger = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger"

    # Not allowed until the job says so; nothing is started.
    body = assert_problem(
        app.client.post(trigger, json={"environment": "staging"}, headers=app.admin), 409
    )
    assert "allow_environment_override" in body["detail"]
    assert emulator.fake is not None
    assert not [r for r in emulator.fake.requests if r.method == "POST" and "/jobs" in r.path]
    # Another project's environment (or none) is unknown here.
    other = app.project(name="other")
    foreign = environment(app, other["id"], name="staging")
    assert app.update_job(project["id"], job["id"], allow_environment_override=True).is_success
    assert_problem(
        app.client.post(trigger, json={"environment_id": foreign["id"]}, headers=app.admin), 404
    )
    assert_problem(app.client.post(trigger, json={"environment": "qa"}, headers=app.admin), 404)

    response = app.client.post(trigger, json={"environment": "staging"}, headers=app.admin)
    assert response.status_code == 201, response.text
    k8s_job = emulator.job(response.json()["job_name"])
    assert k8s_job is not None
    main = main_container(k8s_job["spec"]["template"]["spec"])
    assert main["image"] == STAGING_IMAGE
    assert main["args"][-2:] == ["--target", "staging"]
    assert env_by_name(main)["SNOWFLAKE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "warehouse-staging"
    )
    assert "API_TOKEN" not in env_by_name(main)  # prod's credential stays in prod

    # The run records the environment it ran with.
    run_id = response.json()["job_run_id"]
    config = app.client.get(f"/api/v1/runs/{run_id}/config", headers=app.admin).json()
    assert config["environment"]["id"] == staging["id"]
    assert config["environment"]["name"] == "staging"
    assert config["environment"]["target"] == "staging"

    # Without a body the job runs in its own environment, as before.
    app.client.post(f"/api/v1/runs/{run_id}/cancel", headers=app.admin)
    response = app.client.post(trigger, headers=app.admin)
    assert response.status_code == 201, response.text
    main = main_container(
        (emulator.job(response.json()["job_name"]) or {})["spec"]["template"]["spec"]
    )
    assert main["image"] == PROD_IMAGE and main["args"][-2:] == ["--target", "prod"]
    assert env_by_name(main)["API_TOKEN"]["value"] == PROD_TOKEN  # applied with its value


def test_a_command_with_its_own_target_cannot_join_an_environment_with_one(
    emulator_app: App,
) -> None:
    app = emulator_app
    project, prod, _ = prod_and_staging(app)
    response = app.client.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "own", "command": "dbt build --target dev", "environment_id": prod["id"]},
        headers=app.admin,
    )
    body = assert_problem(response, 422, field="command")
    assert "remove it from the command" in body["detail"]
    # Without an environment target, the command's own --target is fine, as it always was.
    app.job(project["id"], name="own", command="dbt build --target dev")


def test_a_project_without_an_image_deploys_when_its_jobs_environments_have_one(
    emulator_app: App, emulator: Kube
) -> None:
    app = emulator_app
    project = app.project(image=None)
    prod = environment(app, project["id"], name="prod", target="prod", image=PROD_IMAGE)
    app.job(project["id"], name="prod-nightly", environment_id=prod["id"])
    app.deploy(project["id"])
    main = cronjob_container(emulator.cronjob("analytics-prod-nightly") or {})
    assert main["image"] == PROD_IMAGE

    # A job in the default environment (no image there, none on the project) cannot run.
    app.client.post(f"/api/v1/projects/{project['id']}/undeploy", headers=app.admin)
    app.job(project["id"], name="plain", schedule=None)
    response = app.client.post(f"/api/v1/projects/{project['id']}/deploy", headers=app.admin)
    assert_problem(response, 422, field="image")
