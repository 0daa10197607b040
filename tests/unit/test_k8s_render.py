"""The rendered CronJobs and Jobs: pinned by golden files, lossless through the client's
models, secure by default, and immune to user text that looks like YAML.

Regenerate the golden files after an intended change with
``RUNYARD_UPDATE_GOLDEN=1 pytest tests/unit/test_k8s_render.py`` and review the diff."""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from app.errors import Invalid
from app.executors.k8s.gateway import round_trip, shape_overrides
from app.executors.k8s.render import Manifests, Templates, Workload, labels, render_job
from app.models import Job, JobConfig, Project, RunRecord, RunSnapshot
from app.services.commands import CommandChecker

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 4, 28, 2, 0, tzinfo=UTC)
TEMPLATES = Templates.load()
CHECKER = CommandChecker()

OVERRIDES: dict[str, Any] = {
    "node_selector": {"workload": "batch"},
    "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
    "image_pull_secrets": ["registry-creds"],
    "volumes": [{"name": "warehouse-creds", "secret": {"secretName": "warehouse"}}],
    "volume_mounts": [{"name": "warehouse-creds", "mountPath": "/secrets", "readOnly": True}],
    "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
}


def project(kind: str) -> Project:
    return Project(
        id=f"proj_{kind}",
        org_id="org_acme",
        org_slug="acme",
        name=f"{kind}-warehouse",
        kind=kind,  # type: ignore[arg-type]
        image=f"ghcr.io/acme/{kind}-warehouse:2026.4",
        environment={"WAREHOUSE": "prod", "THREADS": "4"},
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        service_account="warehouse-runner",
        template_overrides=OVERRIDES,
        created_at=NOW,
        updated_at=NOW,
    )


def job(kind: str) -> Job:
    command = (
        "dbt build --select tag:nightly" if kind == "dbt" else "sqlmesh run --select-model '*'"
    )
    return Job(
        id=f"job_{kind}",
        org_id="org_acme",
        project_id=f"proj_{kind}",
        name="nightly",
        command=command,
        schedule="0 2 * * *",
        timezone="Europe/Berlin",
        environment={"THREADS": "8"},  # the job's value wins
        resources={"limits": {"memory": "4Gi"}},
        timeout_seconds=3600,
        retries=2,
        version=7,
        created_at=NOW,
        updated_at=NOW,
    )


def run_of(kind: str) -> RunRecord:
    p, j = project(kind), job(kind)
    snapshot = RunSnapshot(
        project_name=p.name,
        project_kind=p.kind,
        image=p.image,
        path=None,
        service_account=p.service_account,
        template_overrides=p.template_overrides,
        project_environment=p.environment,
        project_resources=p.resources,
        job=JobConfig(**{f: getattr(j, f) for f in JobConfig.__struct_fields__}),
        job_version=j.version,
        argv=list(CHECKER.parse(kind, j.command).argv),
    )
    return RunRecord(
        id="run_0123456789abcdef",
        org_id="org_acme",
        project_id=p.id,
        job_id=j.id,
        job_name=f"{kind}-warehouse-nightly-20260428-020000",
        cronjob_name=f"{kind}-warehouse-nightly",
        namespace="org-acme",
        job_type="run",
        status="pending",
        start_time=None,
        end_time=None,
        duration_seconds=None,
        triggered_by="manual",
        command=j.command,
        job_version=j.version,
        executor="kubernetes",
        created_at=NOW,
        updated_at=NOW,
        snapshot=snapshot,
    )


MANIFESTS = Manifests(TEMPLATES, CHECKER, lambda org: f"org-{org}", shape_overrides)


def rendered(kind: str, what: str) -> dict[str, Any]:
    if what == "cronjob":
        result = MANIFESTS.cronjob(project(kind), job(kind))
        assert result is not None
        return result
    return MANIFESTS.job(run_of(kind), "acme")


CASES = [(kind, what) for kind in ("dbt", "sqlmesh") for what in ("cronjob", "job")]


@pytest.mark.parametrize(("kind", "what"), CASES)
def test_golden(kind: str, what: str) -> None:
    manifest = rendered(kind, what)
    text = yaml.safe_dump(manifest, sort_keys=False, width=100)
    path = GOLDEN / f"{what}_{kind}.yaml"
    if os.environ.get("RUNYARD_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.read_text() == text, f"{path.name} differs; see the module docstring"
    assert yaml.safe_load(path.read_text()) == manifest


@pytest.mark.parametrize(("kind", "what"), CASES)
def test_rendered_manifests_survive_the_client_models(kind: str, what: str) -> None:
    manifest = rendered(kind, what)
    model = "V1CronJob" if what == "cronjob" else "V1Job"
    api = kubernetes.client.ApiClient()

    class Response:
        data = json.dumps(manifest)

    obj = api.deserialize(Response(), model)
    assert type(obj).__name__ == model
    assert api.sanitize_for_serialization(obj) == manifest
    # The raw render is already in the models' shape: the round trip changes nothing.
    work = Workload.of_run(run_of(kind))
    raw = render_job(TEMPLATES, work, name="x", namespace="y", labels=labels("a", "p", "j"))
    assert round_trip(raw, "V1Job") == raw


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    job_spec = spec["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else spec
    result: dict[str, Any] = job_spec["template"]["spec"]
    return result


@pytest.mark.parametrize(("kind", "what"), CASES)
def test_secure_defaults(kind: str, what: str) -> None:
    manifest = rendered(kind, what)
    pod = pod_spec(manifest)
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (main,) = pod["containers"]
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is (kind == "dbt")
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert "/tmp" in mounts
    if kind == "dbt":
        assert {"/runyard/target", "/runyard/logs"} <= mounts
    job_spec = manifest["spec"]["jobTemplate"]["spec"] if what == "cronjob" else manifest["spec"]
    rules = job_spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 2]},
    }
    assert rules[1]["action"] == "Ignore"
    assert rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert job_spec["activeDeadlineSeconds"] == 3600 and job_spec["backoffLimit"] == 2
    assert job_spec["ttlSecondsAfterFinished"] == 21600


def test_labels_everywhere_and_the_run_id_on_one_off_jobs() -> None:
    cronjob, one_off = rendered("dbt", "cronjob"), rendered("dbt", "job")
    expected = {
        "app.kubernetes.io/managed-by": "runyard",
        "runyard.dev/org": "acme",
        "runyard.dev/project-id": "proj_dbt",
        "runyard.dev/job-id": "job_dbt",
    }
    assert cronjob["metadata"]["labels"] == expected
    assert cronjob["spec"]["jobTemplate"]["metadata"]["labels"] == expected
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"] == expected
    with_run = expected | {"runyard.dev/run-id": "run_0123456789abcdef"}
    assert one_off["metadata"]["labels"] == with_run
    assert one_off["spec"]["template"]["metadata"]["labels"] == with_run


def test_cronjob_fields_follow_the_job() -> None:
    p, j = project("dbt"), job("dbt")
    j.enabled, j.concurrency_policy = False, "Replace"
    manifest = MANIFESTS.cronjob(p, j) or {}
    spec = manifest["spec"]
    assert spec["suspend"] is True and spec["concurrencyPolicy"] == "Replace"
    assert spec["timeZone"] == "Europe/Berlin" and spec["schedule"] == "0 2 * * *"
    assert spec["startingDeadlineSeconds"] == 300
    j.schedule = None
    assert MANIFESTS.cronjob(p, j) is None


@pytest.mark.parametrize(
    ("policy", "rendered_policy"),
    [("Queue", "Allow"), ("Forbid", "Forbid"), ("Allow", "Allow"), ("Replace", "Replace")],
)
def test_scheduled_jobs_start_suspended_and_queue_allows_every_fire(
    policy: Any, rendered_policy: str
) -> None:
    p, j = project("dbt"), job("dbt")
    j.concurrency_policy = policy
    spec = (MANIFESTS.cronjob(p, j) or {})["spec"]
    assert spec["concurrencyPolicy"] == rendered_policy
    # runyard resumes each scheduled Job when the org's cap and the job's queue allow it.
    assert spec["jobTemplate"]["spec"]["suspend"] is True
    assert spec["suspend"] is False  # the CronJob itself fires (the job is enabled)
    # A one-off Job runs at once: runyard creates it only when the run may start.
    assert "suspend" not in MANIFESTS.job(run_of("dbt"), "acme")["spec"]


def test_environment_resources_and_overrides() -> None:
    pod = pod_spec(rendered("dbt", "cronjob"))
    (main,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["THREADS"] == "8" and env["WAREHOUSE"] == "prod"
    assert env["DBT_PROFILES_DIR"] == "." and env["DBT_TARGET_PATH"] == "/runyard/target"
    assert [e["name"] for e in main["env"]] == sorted(env)
    assert main["resources"] == {
        "limits": {"memory": "4Gi"},
        "requests": {"cpu": "500m", "memory": "1Gi"},
    }
    assert main["command"] == ["dbt"] and main["args"] == ["build", "--select", "tag:nightly"]
    assert pod["serviceAccountName"] == "warehouse-runner"
    assert pod["nodeSelector"] == {"workload": "batch"}
    assert pod["tolerations"] == OVERRIDES["tolerations"]
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["volumes"][-1] == OVERRIDES["volumes"][0]
    assert main["volumeMounts"][-1] == OVERRIDES["volume_mounts"][0]
    sqlmesh_env = {e["name"] for e in pod_spec(rendered("sqlmesh", "job"))["containers"][0]["env"]}
    assert (
        "DBT_PROFILES_DIR" not in sqlmesh_env
        and "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS" in sqlmesh_env
    )


def test_user_text_that_looks_like_yaml_stays_a_value() -> None:
    p, j = project("dbt"), job("dbt")
    tricky = "x\nspec:\n  hostNetwork: true\n- {privileged: true} # ${HOME} `id`"
    p.environment = {"TRICKY": tricky, "EMPTY": ""}
    j.command = 'dbt run --vars \'{"k": "a: b\\n- c"}\''
    manifest = MANIFESTS.cronjob(p, j) or {}
    pod = pod_spec(manifest)
    assert "hostNetwork" not in pod
    env = pod["containers"][0]["env"]
    assert {"name": "TRICKY", "value": tricky} in env
    assert {"name": "EMPTY"} in env  # the API server drops empty values; so does the render
    assert pod["containers"][0]["args"][-1] == '{"k": "a: b\\n- c"}'


def test_no_image_is_a_422_naming_the_field() -> None:
    p = project("dbt")
    p.image = None
    with pytest.raises(Invalid) as caught:
        MANIFESTS.cronjob(p, job("dbt"))
    assert caught.value.errors[0].field == "image"


def test_the_skeletons_are_not_changed_by_rendering() -> None:
    before = copy.deepcopy(TEMPLATES)
    rendered("dbt", "cronjob")
    rendered("sqlmesh", "job")
    assert before == TEMPLATES


def test_a_broken_template_directory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("kind: Pod\n")
    (tmp_path / "cronjob.yaml").write_text("kind: CronJob\n")
    with pytest.raises(RuntimeError, match="must be a Job"):
        Templates.load(tmp_path)


def test_free_form_overrides_take_the_apis_shape() -> None:
    """Unknown keys inside a volume source are dropped and values take the API's types, as
    the server would store them: otherwise the live object never equals the rendered one."""
    p = project("dbt")
    p.template_overrides = {
        "volumes": [{"name": "creds", "secret": {"secretName": "warehouse", "colour": "blue"}}],
        "tolerations": [{"key": "gpu", "operator": "Equal", "value": 5, "effect": "NoSchedule"}],
    }
    pod = pod_spec(MANIFESTS.cronjob(p, job("dbt")) or {})
    assert pod["volumes"][-1] == {"name": "creds", "secret": {"secretName": "warehouse"}}
    assert pod["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "5", "effect": "NoSchedule"}
    ]
    assert p.template_overrides["volumes"][0]["secret"]["colour"] == "blue"  # not mutated
