"""Artifacts on Kubernetes (the emulator): the one-off Job carries runyard's launcher, an
upload playing the launcher's part is stored, and hostile uploads are refused. The
launcher script itself runs a fake command and uploads to a live runyard."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.container import Container
from app.executors.k8s import launcher as launcher_module
from app.ids import utcnow
from tests.conftest import LiveServer
from tests.integration.api_helpers import assert_problem
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    Kube,
    emulator,
    make_emulator,
)

Obj = dict[str, Any]
LAUNCHER_IMAGE = "ghcr.io/example/runyard:0.1.0"
INTERNAL_URL = "http://runyard.runyard.svc:8080"


class Cluster:
    def __init__(self, server: LiveServer, kube: Kube) -> None:
        self.server = server
        self.kube = kube
        token, _ = server.container.tokens.create("acme", "admin")
        self.http = httpx.Client(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    def trigger(self) -> tuple[str, Obj]:
        project = self.http.post(
            "/api/v1/projects",
            json={"name": f"p{time.monotonic_ns()}", "kind": "dbt", "image": "ghcr.io/acme/dbt:1"},
        ).json()
        job = self.http.post(
            f"/api/v1/projects/{project['id']}/jobs",
            json={"name": f"ci{time.monotonic_ns()}", "command": "dbt build --select tag:ci"},
        ).json()
        body = self.http.post(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger").json()
        created = self.kube.job(body["job_name"])
        assert created is not None
        return body["job_run_id"], created


@pytest.fixture
def cluster(emulator: Kube, container_factory: Callable[..., Container]) -> Iterator[Cluster]:
    container = container_factory(
        start=False,
        executor="kubernetes",
        namespace_template=emulator.namespace_template,
        reconcile_interval_seconds=0,
        launcher_image=LAUNCHER_IMAGE,
        internal_url=INTERNAL_URL,
        artifact_max_file_bytes=50_000,
    )
    server = LiveServer(container).start()
    yield Cluster(server, emulator)
    server.stop()


def _main(job: Obj) -> Obj:
    pod = job["spec"]["template"]["spec"]
    main: Obj = next(c for c in pod["containers"] if c["name"] == "main")
    return main


def _env(job: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in _main(job)["env"]}


def _post(cluster: Cluster, url: str, token: str, body: bytes) -> httpx.Response:
    # The pod's URL names runyard's service; the test reaches the same path on the server.
    path = urllib.parse.urlsplit(url).path
    return httpx.post(
        cluster.server.url + path, content=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_the_job_carries_the_launcher(cluster: Cluster) -> None:
    run_id, job = cluster.trigger()
    pod = job["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["image"] == LAUNCHER_IMAGE
    assert init["command"][-2:] == ["--install", "/runyard/bin/launcher.py"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "runyard-launcher", "mountPath": "/runyard/bin"} in init["volumeMounts"]
    assert any(v["name"] == "runyard-launcher" and "emptyDir" in v for v in pod["volumes"])
    main = _main(job)
    assert main["command"] == ["python3", "/runyard/bin/launcher.py", "--"]
    assert main["args"] == ["dbt", "build", "--select", "tag:ci"]
    assert {"name": "runyard-launcher", "mountPath": "/runyard/bin", "readOnly": True} in main[
        "volumeMounts"
    ]
    env = _env(job)
    assert env["RUNYARD_ARTIFACT_URL"] == f"{INTERNAL_URL}/api/v1/runs/{run_id}/artifacts"
    assert env["RUNYARD_ARTIFACT_TOKEN"].startswith("rya1.")
    assert env["RUNYARD_ARTIFACT_DIR"] == "/runyard/target"
    # podFailurePolicy still reads the command's own exit code: the launcher passes it on.
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["containerName"] == "main"


def test_an_upload_playing_the_launcher_is_stored(cluster: Cluster) -> None:
    run_id, job = cluster.trigger()
    env = _env(job)
    url, token = env["RUNYARD_ARTIFACT_URL"], env["RUNYARD_ARTIFACT_TOKEN"]
    manifest = json.dumps({"metadata": {"invocation_id": "i"}, "nodes": {"m": {}}}).encode()
    stored = _post(cluster, f"{url}/manifest.json", token, manifest)
    assert stored.status_code == 201, stored.text
    listed = cluster.http.get(f"/api/v1/runs/{run_id}/artifacts").json()["artifacts"]
    assert [(a["name"], a["size"]) for a in listed] == [("manifest.json", len(manifest))]
    assert cluster.http.get(f"/api/v1/runs/{run_id}/artifacts/manifest.json").content == manifest


def test_hostile_uploads_are_refused(cluster: Cluster) -> None:
    run_id, job = cluster.trigger()
    other_run, _ = cluster.trigger()
    env = _env(job)
    url, token = env["RUNYARD_ARTIFACT_URL"], env["RUNYARD_ARTIFACT_TOKEN"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(_post(cluster, f"{url}/manifest.json", forged, b"{}"), 401)
    other_url = url.replace(run_id, other_run)
    assert_problem(_post(cluster, f"{other_url}/manifest.json", token, b"{}"), 401)
    store = cluster.server.container.store
    record = store.runs.record(run_id)
    assert record is not None
    expired = store.artifacts.upload_token(record.org_id, run_id, utcnow() - timedelta(seconds=5))
    assert_problem(_post(cluster, f"{url}/manifest.json", expired, b"{}"), 401)
    big = b'{"a": "' + b"x" * 60_000 + b'"}'
    assert_problem(_post(cluster, f"{url}/manifest.json", token, big), 413)
    assert_problem(_post(cluster, f"{url}/manifest.json", token, b"<html>"), 422)
    # A traversal name: as an encoded slash the server finds no route (404), as one
    # segment the allowlist refuses it (400); neither is ever a path.
    assert_problem(_post(cluster, f"{url}/..%2F..%2Fsecret.key", token, b"{}"), 404)
    assert_problem(_post(cluster, f"{url}/..%5C..%5Csecret.key", token, b"{}"), 400)
    assert_problem(_post(cluster, f"{url}/runyard.db", token, b"{}"), 400)
    assert store.artifacts.list(run_id) == []
    # The run ended long ago: its own credential no longer opens uploads.
    with store.database.write() as db:
        db.conn.execute(
            "UPDATE runs SET status = 'failed', end_time = ? WHERE id = ?",
            ((utcnow() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), run_id),
        )
    assert_problem(_post(cluster, f"{url}/manifest.json", token, b"{}"), 401)
    assert store.artifacts.list(run_id) == []
    # The upload never arrived: the run's outcome stands, and its artifacts say so.
    listing = cluster.http.get(f"/api/v1/runs/{run_id}/artifacts").json()
    assert listing["artifacts"] == [] and "No artifacts arrived" in listing["note"]
    assert cluster.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "failed"


# --- the launcher script itself --------------------------------------------------------------

FAKE_DBT = """
import json, os, pathlib, sys
target = pathlib.Path(os.environ["RUNYARD_ARTIFACT_DIR"])
target.mkdir(exist_ok=True)
(target / "run_results.json").write_text(json.dumps({"metadata": {"invocation_id": "new"},
                                                      "results": [{"status": "error"}]}))
print("fake dbt ran", flush=True)
sys.exit(3)
"""


def test_the_launcher_runs_the_command_and_uploads(cluster: Cluster, tmp_path: Path) -> None:
    run_id, job = cluster.trigger()
    token = _env(job)["RUNYARD_ARTIFACT_TOKEN"]
    installed = tmp_path / "bin" / "launcher.py"
    installed.parent.mkdir()
    # The init container's step, then the main container's, with the system's python3.
    subprocess.run(
        [sys.executable, "-m", "app.executors.k8s.launcher", "--install", str(installed)],
        check=True,
        cwd=Path(launcher_module.__file__).parents[3],
    )
    target = tmp_path / "target"
    target.mkdir()
    stale = target / "manifest.json"  # an earlier command's: must not be uploaded
    stale.write_text('{"stale": true}')
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "elsewhere.json").write_text('{"secret": 1}')
    os.symlink(tmp_path / "elsewhere.json", target / "catalog.json")
    env = {
        "PATH": os.environ["PATH"],
        "RUNYARD_ARTIFACT_URL": f"{cluster.server.url}/api/v1/runs/{run_id}/artifacts",
        "RUNYARD_ARTIFACT_TOKEN": token,
        "RUNYARD_ARTIFACT_DIR": str(target),
    }
    done = subprocess.run(
        ["python3", str(installed), "--", "python3", "-c", FAKE_DBT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr  # the command's own exit code
    assert "fake dbt ran" in done.stdout
    assert "artifacts uploaded: run_results.json" in done.stderr, done.stderr
    listed = cluster.http.get(f"/api/v1/runs/{run_id}/artifacts").json()["artifacts"]
    assert [a["name"] for a in listed] == ["run_results.json"]
    got = cluster.http.get(f"/api/v1/runs/{run_id}/artifacts/run_results.json").content
    assert got == (target / "run_results.json").read_bytes()


def test_the_launcher_forwards_signals_and_survives_a_missing_server(tmp_path: Path) -> None:
    script = Path(launcher_module.__file__)
    child = subprocess.Popen(
        [
            "python3",
            str(script),
            "--",
            "python3",
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        env={
            "PATH": os.environ["PATH"],
            "RUNYARD_ARTIFACT_URL": "http://127.0.0.1:9/api/v1/runs/run_x/artifacts",
            "RUNYARD_ARTIFACT_TOKEN": "rya1.1.x",
            "RUNYARD_ARTIFACT_DIR": str(tmp_path),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.terminate()
    _, err = child.communicate(timeout=60)
    assert child.returncode == 42, err  # the command handled SIGTERM and chose its code
    assert "artifacts uploaded: none" in err


def test_scheduled_runs_upload_with_the_jobs_credential(cluster: Cluster) -> None:
    http, kube = cluster.http, cluster.kube
    project = http.post(
        "/api/v1/projects", json={"name": "nightly", "kind": "dbt", "image": "ghcr.io/a/dbt:1"}
    ).json()
    job = http.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "build", "command": "dbt build", "schedule": "0 2 * * *"},
    ).json()
    other = http.post(
        f"/api/v1/projects/{project['id']}/jobs",
        json={"name": "other", "command": "dbt build", "schedule": "0 3 * * *"},
    ).json()
    assert http.post(f"/api/v1/projects/{project['id']}/deploy").status_code == 200
    cronjob = kube.cronjob("nightly-build")
    assert cronjob is not None
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == LAUNCHER_IMAGE
    env = {e["name"]: e for e in _main(cronjob["spec"]["jobTemplate"])["env"]}
    assert env["RUNYARD_ARTIFACT_URL"]["value"] == (
        f"{INTERNAL_URL}/api/v1/runs/{kube.ns()}~{{job}}/artifacts"
    )
    assert env["RUNYARD_K8S_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['batch.kubernetes.io/job-name']"
    )
    token = env["RUNYARD_ARTIFACT_TOKEN"]["value"]
    # The manifest endpoint shows the CronJob without the credential.
    shown = http.get(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/manifest").text
    assert token not in shown
    # Rendering again changes nothing in the cluster (the credential is stable).
    kube.reset_requests()
    report = cluster.server.container.executor.reconcile()  # type: ignore[attr-defined]
    assert report.updated == 0 and report.failed == 0, report

    # The scheduled Job's run, as the tracker records it.
    store = cluster.server.container.store
    org_id = store.orgs.get_or_create("acme").id
    from tests.factories import run_record

    record = run_record(
        org_id=org_id,
        project_id=project["id"],
        job_id=job["id"],
        status="running",
        executor="kubernetes",
        namespace=kube.ns(),
        job_name="nightly-build-29123456",
    )
    store.runs.insert(record)
    base = f"{cluster.server.url}/api/v1/runs/{kube.ns()}~nightly-build-29123456/artifacts"
    headers = {"Authorization": f"Bearer {token}"}
    stored = httpx.post(f"{base}/run_results.json", content=b'{"results": []}', headers=headers)
    assert stored.status_code == 201, stored.text
    assert [a.name for a in store.artifacts.list(record.id)] == ["run_results.json"]
    # Another job's credential, or a Job that is not this job's run: refused.
    other_token = store.artifacts.job_token(org_id, other["id"])
    refused = httpx.post(
        f"{base}/manifest.json", content=b"{}", headers={"Authorization": f"Bearer {other_token}"}
    )
    assert_problem(refused, 401)
    unknown = base.replace("nightly-build-29123456", "nightly-build-1")
    assert_problem(httpx.post(f"{unknown}/manifest.json", content=b"{}", headers=headers), 401)
