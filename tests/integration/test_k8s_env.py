"""Where the Kubernetes tests run: the emulator (tests/harness/k8s.py, a real HTTP server),
or a real cluster for tests marked ``cluster`` (KUBECONFIG and RUNYARD_CLUSTER_TESTS=1).

The fixtures here are imported by the other ``test_k8s_*`` modules. runyard is built exactly
as in production: ``Container(Settings(executor="kubernetes"))`` with a kubeconfig in
``KUBECONFIG``; the official client talks HTTP and nothing in it is patched.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import kubernetes
import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from litestar.testing import TestClient

from app.container import Container
from app.executors.k8s.gateway import KubernetesExecutor, load_configuration
from app.main import create_app
from app.settings import SettingsError
from tests.harness.k8s import FakeCluster

H = dict[str, str]
Obj = dict[str, Any]
ORGS = ("acme", "globex")
IMAGE = os.environ.get("RUNYARD_CLUSTER_IMAGE", "ghcr.io/acme/analytics:1.4")


def cluster_tests_enabled() -> bool:
    return bool(os.environ.get("KUBECONFIG")) and os.environ.get("RUNYARD_CLUSTER_TESTS") == "1"


@dataclass
class Kube:
    """One place to run against, and what tests do to it behind runyard's back."""

    kind: Literal["emulator", "cluster"]
    kubeconfig: Path
    namespace_template: str
    api: ApiClient
    fake: FakeCluster | None = None
    created_namespaces: list[str] = field(default_factory=list)

    def ns(self, org: str = "acme") -> str:
        return self.namespace_template.format(org=org)

    @property
    def batch(self) -> BatchV1Api:
        return BatchV1Api(self.api)

    def cronjob(self, name: str, org: str = "acme") -> Obj | None:
        return self._read(self.batch.read_namespaced_cron_job, name, self.ns(org))

    def job(self, name: str, org: str = "acme") -> Obj | None:
        return self._read(self.batch.read_namespaced_job, name, self.ns(org))

    def cronjobs(self, org: str = "acme") -> list[Obj]:
        response = self.batch.list_namespaced_cron_job(self.ns(org), _preload_content=False)
        items: list[Obj] = json.loads(response.data)["items"]
        return items

    def edit_cronjob(self, name: str, patch: Obj, org: str = "acme") -> None:
        """A hand edit (``kubectl edit``/``patch``: the client's strategic merge patch)."""
        self.batch.patch_namespaced_cron_job(name, self.ns(org), patch, _preload_content=False)

    def delete_cronjob(self, name: str, org: str = "acme") -> None:
        self.batch.delete_namespaced_cron_job(name, self.ns(org), _preload_content=False)

    def create_cronjob(self, body: Obj, org: str = "acme") -> None:
        self.batch.create_namespaced_cron_job(self.ns(org), body, _preload_content=False)

    def create_job(self, body: Obj, org: str = "acme") -> None:
        self.batch.create_namespaced_job(self.ns(org), body, _preload_content=False)

    @staticmethod
    def _read(fn: Callable[..., Any], name: str, namespace: str) -> Obj | None:
        try:
            response = fn(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: Obj = json.loads(response.data)
        return result

    def writes(self) -> int:
        assert self.fake is not None, "request counting needs the emulator"
        return self.fake.writes()

    def reset_requests(self) -> None:
        if self.fake is not None:
            self.fake.reset_requests()


def namespace_body(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@pytest.fixture
def make_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Kube]]:
    """Starts an emulator (FakeCluster options as keyword arguments) with the orgs'
    namespaces created (runyard never creates them) and KUBECONFIG pointing at it."""
    started: list[FakeCluster] = []

    def make(**options: Any) -> Kube:
        options.setdefault("auto_namespaces", False)
        fake = FakeCluster(**options)
        fake.start()
        started.append(fake)
        path = fake.write_kubeconfig(tmp_path / f"kubeconfig-{len(started)}")
        monkeypatch.setenv("KUBECONFIG", str(path))
        for org in ORGS:
            fake.create("namespace", namespace_body(f"org-{org}"))
        return Kube("emulator", path, "org-{org}", fake.api_client(), fake)

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Kube]) -> Kube:
    return make_emulator()


@pytest.fixture(params=["emulator", pytest.param("cluster", marks=pytest.mark.cluster)])
def kube(request: pytest.FixtureRequest, make_emulator: Callable[..., Kube]) -> Iterator[Kube]:
    """The emulator, and a real cluster when enabled: the same scenarios run on both."""
    if request.param == "emulator":
        yield make_emulator()
        return
    if not cluster_tests_enabled():
        pytest.skip("set KUBECONFIG and RUNYARD_CLUSTER_TESTS=1 to run against a real cluster")
    path = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    api = kubernetes.config.new_client_from_config(config_file=str(path))
    template = f"runyard-test-{secrets.token_hex(3)}-{{org}}"
    kube = Kube("cluster", path, template, api)
    core = CoreV1Api(api)
    for org in ORGS:
        core.create_namespace(namespace_body(kube.ns(org)))
        kube.created_namespaces.append(kube.ns(org))
    yield kube
    for name in kube.created_namespaces:
        core.delete_namespace(name, propagation_policy="Background")


@dataclass
class App:
    client: TestClient[Any]
    container: Container
    admin: H
    viewer: H
    other: H

    @property
    def executor(self) -> KubernetesExecutor:
        assert isinstance(self.container.executor, KubernetesExecutor)
        return self.container.executor

    def project(self, headers: H | None = None, **fields: Any) -> Obj:
        body = {"name": "analytics", "kind": "dbt", "image": IMAGE} | fields
        response = self.client.post("/api/v1/projects", json=body, headers=headers or self.admin)
        assert response.status_code == 201, response.text
        result: Obj = response.json()
        return result

    def job(self, project_id: str, headers: H | None = None, **fields: Any) -> Obj:
        body = {"name": "nightly", "command": "dbt build", "schedule": "0 2 * * *"} | fields
        response = self.client.post(
            f"/api/v1/projects/{project_id}/jobs", json=body, headers=headers or self.admin
        )
        assert response.status_code == 201, response.text
        result: Obj = response.json()
        return result

    def deploy(self, project_id: str, headers: H | None = None) -> Obj:
        response = self.client.post(
            f"/api/v1/projects/{project_id}/deploy", headers=headers or self.admin
        )
        assert response.status_code == 200, response.text
        result: Obj = response.json()
        return result

    def update_job(self, project_id: str, job_id: str, **fields: Any) -> Any:
        return self.client.put(
            f"/api/v1/projects/{project_id}/jobs/{job_id}", json=fields, headers=self.admin
        )

    def read_job(self, project_id: str, job_id: str) -> Obj:
        response = self.client.get(
            f"/api/v1/projects/{project_id}/jobs/{job_id}", headers=self.admin
        )
        assert response.status_code == 200, response.text
        result: Obj = response.json()
        return result


def build_app(
    kube: Kube, container_factory: Callable[..., Container]
) -> Generator[App, None, None]:
    container = container_factory(
        start=False,
        executor="kubernetes",
        namespace_template=kube.namespace_template,
        reconcile_interval_seconds=0,  # tests call reconcile() when they mean it
    )
    headers = []
    for org, role in (("acme", "admin"), ("acme", "viewer"), ("globex", "admin")):
        token, _ = container.tokens.create(org, role)
        headers.append({"Authorization": f"Bearer {token}"})
    with TestClient(create_app(container=container)) as client:
        yield App(client, container, *headers)


@pytest.fixture
def app(kube: Kube, container_factory: Callable[..., Container]) -> Iterator[App]:
    """runyard with the Kubernetes executor, on the emulator or a real cluster."""
    yield from build_app(kube, container_factory)


@pytest.fixture
def emulator_app(emulator: Kube, container_factory: Callable[..., Container]) -> Iterator[App]:
    """runyard with the Kubernetes executor on the emulator (for failures and controllers)."""
    yield from build_app(emulator, container_factory)


# --- the configuration itself ----------------------------------------------------------------


def test_kubeconfig_from_the_environment_is_used(emulator: Kube) -> None:
    configuration = load_configuration({"KUBECONFIG": str(emulator.kubeconfig)})
    assert emulator.fake is not None
    assert configuration.host == emulator.fake.url


def test_missing_configuration_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KUBECONFIG"):
        load_configuration({"KUBECONFIG": str(tmp_path / "absent")})
