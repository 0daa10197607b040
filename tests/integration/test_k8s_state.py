"""dbt state on Kubernetes (the emulator and a live runyard): a retry's and a deferred run's
Job carries the state download and ``--state``; a request playing the launcher downloads
exactly the run's state files with the run's own credential, and nothing else with any
other; the launcher script itself fetches them before it starts the command; a scheduled
deferring run fetches its manifest with the job's credential."""

# ruff: noqa: F811 - the fixtures imported from the other modules are test parameters here
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec

from app.executors.k8s import launcher as launcher_module
from app.ids import utcnow
from app.ports import Outcome
from app.store.artifacts import check_json_object
from tests.integration.api_helpers import assert_problem
from tests.integration.test_artifacts_k8s import (  # noqa: F401 - fixtures
    INTERNAL_URL,
    Cluster,
    _env,
    _main,
    cluster,
)
from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    Kube,
    emulator,
    make_emulator,
)

Obj = dict[str, Any]
STATE = "/runyard/state"
MANIFEST = json.dumps({"metadata": {"invocation_id": "prod"}, "nodes": {"model.p.a": {}}}).encode()


def _results(**args: object) -> bytes:
    """A run_results.json of a failed build: one error, one skipped child."""
    document = {
        "metadata": {"invocation_id": "old"},
        "results": [
            {"unique_id": "model.p.a", "status": "success", "timing": [], "adapter_response": {}},
            {"unique_id": "model.p.b", "status": "error", "timing": [], "adapter_response": {}},
            {"unique_id": "model.p.c", "status": "skipped", "timing": [], "adapter_response": {}},
        ],
        "args": {"which": "build", "select": ["tag:x"], **args},
    }
    return msgspec.json.encode(document)


class Setup:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = cluster.http
        self.store = cluster.server.container.store
        self.project = self.http.post(
            "/api/v1/projects",
            json={"name": f"p{time.monotonic_ns()}", "kind": "dbt", "image": "ghcr.io/acme/dbt:1"},
        ).json()

    def job(self, name: str, command: str = "dbt build --select tag:x", **fields: Any) -> Obj:
        response = self.http.post(
            f"/api/v1/projects/{self.project['id']}/jobs",
            json={"name": name, "command": command, **fields},
        )
        assert response.status_code == 201, response.text
        job: Obj = response.json()
        return job

    def trigger(self, job: Obj) -> tuple[str, Obj]:
        response = self.http.post(f"/api/v1/projects/{self.project['id']}/jobs/{job['id']}/trigger")
        assert response.status_code == 201, response.text
        body = response.json()
        created = self.cluster.kube.job(body["job_name"])
        assert created is not None
        return body["job_run_id"], created

    def ended(self, run_id: str, status: str, **files: bytes) -> None:
        """The run ended with ``status`` and its pod uploaded ``files``."""
        with self.store.database.write() as db:
            db.conn.execute(
                "UPDATE runs SET status = ?, end_time = ? WHERE id = ?",
                (status, utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), run_id),
            )
        for name, content in files.items():
            self.store.artifacts.put(
                run_id,
                name.replace("_json", ".json"),
                io.BytesIO(content),
                limit_bytes=1 << 20,
                check=check_json_object,
            )

    def job_of(self, run_id: str) -> Obj:
        record = self.store.runs.record(run_id)
        assert record is not None and record.job_name
        created = self.cluster.kube.job(record.job_name)
        assert created is not None
        return created

    def get(self, url: str, token: str) -> httpx.Response:
        # The pod's URL names runyard's service; the test asks the live server the same path.
        path = urllib.parse.urlsplit(url).path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.cluster.server.url + path, headers=headers)


def _state_volume(job: Obj) -> bool:
    pod = job["spec"]["template"]["spec"]
    mounted = {"name": "runyard-state", "mountPath": STATE} in _main(job)["volumeMounts"]
    return mounted and any(v["name"] == "runyard-state" and "emptyDir" in v for v in pod["volumes"])


def _retry(setup: Setup, **args: object) -> tuple[str, str]:
    """A failed run with its run_results.json, and its retry: (original, retry) run ids."""
    old, _ = setup.trigger(setup.job(f"build{time.monotonic_ns()}"))
    setup.ended(old, "failed", run_results_json=_results(**args))
    response = setup.http.post(f"/api/v1/runs/{old}/retry")
    assert response.status_code == 201, response.text
    return old, response.json()["id"]


def test_a_retry_on_kubernetes_downloads_exactly_its_run_results(cluster: Cluster) -> None:
    setup = Setup(cluster)
    _, retry = _retry(setup, state="/gone/old.state", send_anonymous_usage_stats=True)
    job = setup.job_of(retry)
    main, env = _main(job), _env(job)
    assert main["command"] == ["python3", "/runyard/bin/launcher.py", "--"]
    assert main["args"] == ["dbt", "retry", "--state", STATE]
    assert env["RUNYARD_STATE_URL"] == f"{INTERNAL_URL}/api/v1/runs/{retry}/state"
    assert env["RUNYARD_STATE_FILES"] == "run_results.json"
    assert env["RUNYARD_STATE_DIR"] == STATE
    assert _state_volume(job)
    token = env["RUNYARD_ARTIFACT_TOKEN"]

    got = setup.get(f"{env['RUNYARD_STATE_URL']}/run_results.json", token)
    assert got.status_code == 200, got.text
    served = got.json()
    # The original run's file, sanitised as the local executor writes it.
    assert [r["unique_id"] for r in served["results"]] == ["model.p.a", "model.p.b", "model.p.c"]
    assert served["args"]["select"] == ["tag:x"]
    assert served["args"]["state"] == STATE  # the pod's folder, not the original run's
    assert served["args"]["send_anonymous_usage_stats"] is False
    # Only what the run's state names: no manifest for a retry of a run that did not defer.
    assert_problem(setup.get(f"{env['RUNYARD_STATE_URL']}/manifest.json", token), 404)
    assert_problem(setup.get(f"{env['RUNYARD_STATE_URL']}/..%5Csecret.key", token), 400)


def test_state_is_refused_to_every_other_credential_and_run(cluster: Cluster) -> None:
    setup = Setup(cluster)
    _, retry = _retry(setup)
    env = _env(setup.job_of(retry))
    url, token = f"{env['RUNYARD_STATE_URL']}/run_results.json", env["RUNYARD_ARTIFACT_TOKEN"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(setup.get(url, forged), 401)
    assert_problem(setup.get(url, ""), 401)
    # An API token is not a run's credential.
    assert_problem(setup.get(url, setup.http.headers["Authorization"].split()[1]), 401)
    # Another run's credential (a plain run of another job, active).
    plain, plain_job = setup.trigger(setup.job("plain"))
    plain_env = _env(plain_job)
    assert "RUNYARD_STATE_URL" not in plain_env and "--state" not in _main(plain_job)["args"]
    assert_problem(setup.get(url, plain_env["RUNYARD_ARTIFACT_TOKEN"]), 401)
    # That run's own credential on its own URL: it has no state.
    own = f"{INTERNAL_URL}/api/v1/runs/{plain}/state/run_results.json"
    detail = assert_problem(setup.get(own, plain_env["RUNYARD_ARTIFACT_TOKEN"]), 409)["detail"]
    assert "no dbt state" in detail
    # A run that has ended fetches nothing, even with its own credential.
    setup.ended(retry, "failed")
    assert_problem(setup.get(url, token), 409)


def test_a_deferred_run_on_kubernetes_downloads_the_latest_successful_manifest(
    cluster: Cluster,
) -> None:
    setup = Setup(cluster)
    prod = setup.job("prod", "dbt build")
    older, _ = setup.trigger(prod)
    setup.ended(older, "success", manifest_json=b'{"metadata": {}, "nodes": {"old": {}}}')
    latest, _ = setup.trigger(prod)
    setup.ended(latest, "success", manifest_json=MANIFEST)
    failed, _ = setup.trigger(prod)  # a later failure is not deferred to
    setup.ended(failed, "failed", manifest_json=b'{"metadata": {}, "failed": true}')
    # Saving a deferring job on Kubernetes is accepted now.
    ci = setup.job("ci", "dbt build --select state:modified+", defer_to_job_id=prod["id"])
    run_id, job = setup.trigger(ci)
    record = setup.store.runs.record(run_id)
    assert record is not None and record.snapshot.state is not None
    assert record.snapshot.state.defer_run_id == latest
    main, env = _main(job), _env(job)
    assert main["args"] == [
        "dbt",
        "build",
        "--select",
        "state:modified+",
        "--defer",
        "--state",
        STATE,
    ]
    assert env["RUNYARD_STATE_FILES"] == "manifest.json"
    assert _state_volume(job)
    token = env["RUNYARD_ARTIFACT_TOKEN"]
    got = setup.get(f"{env['RUNYARD_STATE_URL']}/manifest.json", token)
    assert got.status_code == 200 and got.content == MANIFEST  # byte for byte
    assert_problem(setup.get(f"{env['RUNYARD_STATE_URL']}/run_results.json", token), 404)


# --- the launcher script itself --------------------------------------------------------------

FAKE_DBT = """
import hashlib, os, pathlib, sys
state = pathlib.Path(os.environ["RUNYARD_STATE_DIR"])
names = sorted(p.name for p in state.iterdir())
digest = hashlib.sha256((state / "manifest.json").read_bytes()).hexdigest()
pathlib.Path(sys.argv[1]).write_text(",".join(names) + " " + digest)
print("fake dbt ran with", sys.argv[2:], flush=True)
"""


def _launch(
    setup: Setup, run_id: str, token: str, state_dir: Path, marker: Path
) -> subprocess.CompletedProcess[str]:
    script = Path(launcher_module.__file__)
    env = {
        "PATH": os.environ["PATH"],
        "RUNYARD_STATE_URL": f"{setup.cluster.server.url}/api/v1/runs/{run_id}/state",
        "RUNYARD_STATE_FILES": "manifest.json",
        "RUNYARD_STATE_DIR": str(state_dir),
        "RUNYARD_ARTIFACT_TOKEN": token,
    }
    return subprocess.run(
        ["python3", str(script), "--", "python3", "-c", FAKE_DBT, str(marker), "--defer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_launcher_fetches_the_state_before_the_command(
    cluster: Cluster, tmp_path: Path
) -> None:
    setup = Setup(cluster)
    prod = setup.job("prod", "dbt build")
    done_run, _ = setup.trigger(prod)
    setup.ended(done_run, "success", manifest_json=MANIFEST)
    ci = setup.job("ci", "dbt build --select state:modified+", defer_to_job_id=prod["id"])
    run_id, job = setup.trigger(ci)
    token = _env(job)["RUNYARD_ARTIFACT_TOKEN"]

    # A forged credential: the launcher says why and never starts the command.
    refused_marker = tmp_path / "refused.txt"
    refused = _launch(setup, run_id, token[:-4] + "AAAA", tmp_path / "s1", refused_marker)
    assert refused.returncode == 2, refused.stderr
    assert "cannot fetch the run's dbt state, so dbt was not started" in refused.stderr
    assert "401" in refused.stderr
    assert not refused_marker.exists() and "fake dbt ran" not in refused.stdout

    marker = tmp_path / "ran.txt"
    done = _launch(setup, run_id, token, tmp_path / "state", marker)
    assert done.returncode == 0, done.stderr
    assert "state fetched: manifest.json" in done.stderr
    # The command found the file in the state folder when it started, byte for byte.
    assert marker.read_text() == "manifest.json " + hashlib.sha256(MANIFEST).hexdigest()
    assert (tmp_path / "state" / "manifest.json").read_bytes() == MANIFEST
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


# --- scheduled runs ---------------------------------------------------------------------------


def test_a_scheduled_deferring_run_fetches_its_manifest_with_the_jobs_credential(
    cluster: Cluster, tmp_path: Path
) -> None:
    setup = Setup(cluster)
    kube, container = cluster.kube, cluster.server.container
    prod = setup.job("prod", "dbt build")
    done_run, _ = setup.trigger(prod)
    setup.ended(done_run, "success", manifest_json=MANIFEST)
    ci = setup.job(
        "nightly",
        "dbt build --select state:modified+",
        defer_to_job_id=prod["id"],
        schedule="0 2 * * *",
    )
    deployed = setup.http.post(f"/api/v1/projects/{setup.project['id']}/deploy")
    assert deployed.status_code == 200, deployed.text
    cronjob = kube.cronjob(f"{setup.project['name']}-nightly")
    assert cronjob is not None
    template = cronjob["spec"]["jobTemplate"]
    main = _main(template)
    assert main["args"][-3:] == ["--defer", "--state", STATE]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["RUNYARD_STATE_URL"] == f"{INTERNAL_URL}/api/v1/runs/{kube.ns()}~{{job}}/state"
    assert env["RUNYARD_STATE_FILES"] == "manifest.json"
    assert _state_volume(template)
    token = env["RUNYARD_ARTIFACT_TOKEN"]
    assert token is not None and token.startswith("ryj1.")
    # Rendering again changes nothing in the cluster (the state parts are stable too).
    kube.reset_requests()
    report = container.executor.reconcile()  # type: ignore[attr-defined]
    assert report.updated == 0 and report.failed == 0, report

    base = f"{INTERNAL_URL}/api/v1/runs/{kube.ns()}~{setup.project['name']}-nightly-2912345/state"
    # The pod may ask before runyard has seen its Job: "ask again", not a refusal.
    early = setup.get(f"{base}/manifest.json", token)
    assert_problem(early, 503)
    assert early.headers["Retry-After"] == "5"

    # The launcher itself, as the CronJob's pod runs it ({job} from the downward API),
    # started before runyard has recorded the run: it waits and asks again.
    marker = tmp_path / "ran.txt"
    pod = subprocess.Popen(
        ["python3", launcher_module.__file__, "--", "python3", "-c", FAKE_DBT, str(marker)],
        env={
            "PATH": os.environ["PATH"],
            "RUNYARD_STATE_URL": env["RUNYARD_STATE_URL"].replace(INTERNAL_URL, cluster.server.url),
            "RUNYARD_STATE_FILES": "manifest.json",
            "RUNYARD_STATE_DIR": str(tmp_path / "state"),
            "RUNYARD_ARTIFACT_TOKEN": token,
            "RUNYARD_K8S_JOB_NAME": f"{setup.project['name']}-nightly-2912345",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert pod.stderr is not None
    first = pod.stderr.readline()  # its first answer: runyard has not seen the Job yet
    assert "(503)" in first and "trying again" in first, first

    # The CronJob's Job, as the tracker records it: the run records the deferred-to manifest.
    project = container.store.projects.get_any(setup.project["id"])
    job = container.store.jobs.get_any(ci["id"])
    assert project is not None and job is not None
    record = container.runs.start_run(
        project, job, triggered_by="scheduled", job_name=f"{setup.project['name']}-nightly-2912345"
    )
    assert record is not None and record.snapshot.state is not None
    assert record.snapshot.state.defer_run_id == done_run
    got = setup.get(f"{base}/manifest.json", token)
    assert got.status_code == 200 and got.content == MANIFEST
    _, err = pod.communicate(timeout=120)
    assert pod.returncode == 0, err
    assert "state fetched: manifest.json" in err
    assert marker.read_text() == "manifest.json " + hashlib.sha256(MANIFEST).hexdigest()
    # Another job's credential may not read it.
    other = container.store.artifacts.job_token(record.org_id, prod["id"])
    assert_problem(setup.get(f"{base}/manifest.json", other), 401)


# --- model history from a late upload ---------------------------------------------------------


def test_a_run_results_upload_after_the_end_replaces_the_log_rows(cluster: Cluster) -> None:
    setup = Setup(cluster)
    run_id, job = setup.trigger(setup.job("late"))
    # The run's end is recorded first (as the tracker does when the pod's Job fails); its
    # history hook finds no run_results.json then, and never runs again for this run.
    tracker = cluster.server.container.tracker
    assert tracker.finished(run_id, Outcome(status="failed", end_time=utcnow()))
    store = setup.store
    assert store.history.for_run(run_id)[1] == []
    started = (utcnow() - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ended = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = msgspec.json.encode(
        {
            "metadata": {"invocation_id": "late"},
            "results": [
                {
                    "unique_id": "model.p.slow",
                    "status": "error",
                    "timing": [{"name": "execute", "started_at": started, "completed_at": ended}],
                    "adapter_response": {},
                    "message": "boom",
                }
            ],
            "args": {"which": "build"},
        }
    )
    env = _env(job)
    url = urllib.parse.urlsplit(env["RUNYARD_ARTIFACT_URL"]).path + "/run_results.json"
    stored = httpx.post(
        cluster.server.url + url,
        content=body,
        headers={"Authorization": f"Bearer {env['RUNYARD_ARTIFACT_TOKEN']}"},
    )
    assert stored.status_code == 201, stored.text
    source, rows = store.history.for_run(run_id)
    assert source == "artifacts"
    assert [(r.unique_id, r.status, r.message) for r in rows] == [("model.p.slow", "error", "boom")]
    timeline = setup.http.get(f"/api/v1/runs/{run_id}/timeline").json()
    assert timeline["source"] == "artifacts" and timeline["failed"]
