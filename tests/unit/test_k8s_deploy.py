"""The manifests that run runyard itself (deploy/) and its Dockerfile: valid objects, one
replica on Recreate, probes, non-root, and RBAC no wider than the executor needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
Obj = dict[str, Any]

# What runyard asks the API server for, by resource: the gateway in app/executors/k8s/gateway.py.
NEEDED = {
    ("batch", "cronjobs"): {"get", "list", "create", "update", "delete"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list"},
    ("", "pods/log"): {"get"},
}
# Cluster-wide, read-only: the run tracker's one watch of every namespace (optional).
WATCH_NEEDED = {("batch", "jobs"): {"list", "watch"}}
MODELS = {
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
    "RoleBinding": "V1RoleBinding",
    "PersistentVolumeClaim": "V1PersistentVolumeClaim",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
}


def documents() -> list[Obj]:
    docs: list[Obj] = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str) -> list[Obj]:
    return [d for d in documents() if d["kind"] == kind]


def granted(rules: list[Obj]) -> dict[tuple[str, str], set[str]]:
    result: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                result.setdefault((group, resource), set()).update(rule["verbs"])
    return result


def test_every_manifest_is_a_valid_object() -> None:
    api = kubernetes.client.ApiClient()
    for doc in documents():

        class Response:
            data = json.dumps(doc)

        obj = api.deserialize(Response(), MODELS[doc["kind"]])
        assert api.sanitize_for_serialization(obj) == doc, doc["kind"]


def test_kustomization_lists_runyards_own_manifests() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"org-namespace.yaml"}  # org namespaces are per org
    for resource in listed:
        assert (DEPLOY / resource).is_file()


def test_rbac_is_exactly_what_the_executor_uses() -> None:
    roles = {r["metadata"]["name"]: r for r in of_kind("ClusterRole")}
    assert set(roles) == {"runyard-workloads", "runyard-watch"}
    role, watch = roles["runyard-workloads"], roles["runyard-watch"]
    assert granted(role["rules"]) == NEEDED
    assert granted(watch["rules"]) == WATCH_NEEDED
    for rules in (role["rules"], watch["rules"]):
        assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)
    # The workloads are bound per org namespace only; cluster-wide, only the read-only watch.
    (cluster_binding,) = of_kind("ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == "runyard-watch"
    (binding,) = of_kind("RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    for bound in (binding, cluster_binding):
        assert bound["subjects"] == [
            {"kind": "ServiceAccount", "name": "runyard", "namespace": "runyard"}
        ]


def test_the_deployment_is_a_single_non_root_writer_with_probes() -> None:
    (deployment,) = of_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "runyard"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RUNYARD_EXECUTOR"] == "kubernetes" and env["RUNYARD_HOST"] == "0.0.0.0"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["RUNYARD_DATABASE"].startswith(mounts["data"] + "/")
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
    (pvc,) = of_kind("PersistentVolumeClaim")
    assert claims["data"] == {"claimName": pvc["metadata"]["name"]}


@pytest.mark.parametrize(
    "line",
    [
        "FROM python:3.11-slim",
        "USER 10001:10001",
        'CMD ["runyard", "serve"]',
        "RUNYARD_HOST=0.0.0.0",
        "RUNYARD_K8S_TEMPLATES=/opt/runyard/k8s_templates",
    ],
)
def test_dockerfile(line: str) -> None:
    assert line in (ROOT / "Dockerfile").read_text()
