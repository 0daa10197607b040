"""A trigger's image on Kubernetes (testing a pull request's build): accepted only under one
of the project's allowed_images, on repository path boundaries; the Job runs it and the
run's snapshot records it."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

from typing import Any

from tests.integration.api_helpers import assert_problem
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    App,
    Kube,
    emulator,
    emulator_app,
    make_emulator,
)

Obj = dict[str, Any]
PR_IMAGE = "ghcr.io/acme/analytics:pr-42"


def _main_image(job: Obj) -> str:
    containers = job["spec"]["template"]["spec"]["containers"]
    image: str = containers[0]["image"]
    return image


def test_an_allowed_trigger_image_runs_and_is_recorded(emulator_app: App, emulator: Kube) -> None:
    app = emulator_app
    project = app.project(allowed_images=["ghcr.io/acme/analytics"])
    job = app.job(project["id"], schedule=None, concurrency_policy="Allow")
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger"
    response = app.client.post(url, json={"image": PR_IMAGE}, headers=app.admin)
    assert response.status_code == 201, response.text
    body = response.json()
    created = emulator.job(body["job_name"])
    assert created is not None and _main_image(created) == PR_IMAGE
    record = app.container.store.runs.record(body["job_run_id"])
    assert record is not None and record.snapshot.image_override == PR_IMAGE
    assert record.snapshot.image == project["image"]  # the project's own, kept apart

    # A run without an image runs the project's.
    plain = app.client.post(url, headers=app.admin).json()
    assert _main_image(emulator.job(plain["job_name"]) or {}) == project["image"]


def test_images_outside_the_allowed_repositories_are_refused(
    emulator_app: App, emulator: Kube
) -> None:
    app = emulator_app
    project = app.project(allowed_images=["ghcr.io/acme/analytics"])
    job = app.job(project["id"], schedule=None)
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger"
    for image in (
        "ghcr.io/acme/analytics-evil:1",  # a prefix of the text, not of the path
        "evil.io/ghcr.io/acme/analytics:1",
        "ghcr.io/acme/other:1",
        "ghcr.io/acme/analytics/../other:1",
        "ghcr.io/acme/analytics:bad tag",
    ):
        response = app.client.post(url, json={"image": image}, headers=app.admin)
        assert_problem(response, 422, field="image")
    # A project with no allowed_images takes no trigger image at all.
    closed = app.project(name="closed")
    closed_job = app.job(closed["id"], schedule=None)
    response = app.client.post(
        f"/api/v1/projects/{closed['id']}/jobs/{closed_job['id']}/trigger",
        json={"image": PR_IMAGE},
        headers=app.admin,
    )
    assert "allowed_images" in assert_problem(response, 422, field="image")["detail"]
    runs = app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs", headers=app.admin
    )
    assert runs.json()["total"] == 0


def test_deferral_on_kubernetes_without_the_launcher_says_what_to_set(
    emulator_app: App, emulator: Kube
) -> None:
    """A deferring job is saved on Kubernetes (its pods fetch the manifest through runyard's
    launcher, tests/integration/test_k8s_state.py); without the launcher configured a run
    could not get its state, so the trigger says which settings to set, and the run is
    recorded as failed rather than run without its state."""
    app = emulator_app
    project = app.project()
    prod = app.job(project["id"], schedule=None)
    body = {"name": "ci", "command": "dbt build", "defer_to_job_id": prod["id"]}
    response = app.client.post(
        f"/api/v1/projects/{project['id']}/jobs", json=body, headers=app.admin
    )
    assert response.status_code == 201, response.text
    ci = response.json()
    done = app.client.post(
        f"/api/v1/projects/{project['id']}/jobs/{prod['id']}/trigger", headers=app.admin
    ).json()["job_run_id"]
    store = app.container.store
    with store.database.write() as db:
        db.conn.execute("UPDATE runs SET status = 'success' WHERE id = ?", (done,))
    store.artifacts.put(done, "manifest.json", b'{"nodes": {}}', limit_bytes=1000)
    refused = app.client.post(
        f"/api/v1/projects/{project['id']}/jobs/{ci['id']}/trigger", headers=app.admin
    )
    assert "RUNYARD_LAUNCHER_IMAGE" in assert_problem(refused, 409)["detail"]
    runs = app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{ci['id']}/runs", headers=app.admin
    ).json()
    assert [r["status"] for r in runs["runs"]] == ["failed"], runs


def test_a_rerun_refuses_an_image(emulator_app: App, emulator: Kube) -> None:
    """A rerun replays its snapshot, image included: an image in its body is a 422, never
    silently ignored, and nothing is started."""
    app = emulator_app
    project = app.project(allowed_images=["ghcr.io/acme/analytics"])
    job = app.job(project["id"], schedule=None, concurrency_policy="Allow")
    url = f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger"
    first = app.client.post(url, json={"image": PR_IMAGE}, headers=app.admin).json()
    rerun = app.client.post(
        f"/api/v1/runs/{first['job_run_id']}/rerun",
        json={"image": "ghcr.io/acme/analytics:pr-43"},
        headers=app.admin,
    )
    assert "replays" in assert_problem(rerun, 422, field="image")["detail"]
    runs = app.client.get(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/runs", headers=app.admin
    ).json()
    assert runs["total"] == 1
    # Without an image the rerun runs the image the run ran.
    again = app.client.post(f"/api/v1/runs/{first['job_run_id']}/rerun", headers=app.admin)
    assert again.status_code == 201, again.text
    assert _main_image(emulator.job(again.json()["job_name"]) or {}) == PR_IMAGE
