"""Every request runyard makes in a whole lifecycle is allowed by deploy/rbac.yaml, in the
org's namespace only (so the Role bound there is enough)."""

# ruff: noqa: F811 - the fixtures imported from test_k8s_env are test parameters here
from __future__ import annotations

from tests.integration.test_k8s_env import (  # noqa: F401 - fixtures
    App,
    Kube,
    emulator,
    emulator_app,
    make_emulator,
)
from tests.unit.test_k8s_deploy import NEEDED

VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def verb_and_resource(method: str, path: str, watch: bool) -> tuple[str, str, str, str | None]:
    """(verb, group, resource, namespace) of an API request path."""
    parts = [p for p in path.split("/") if p]
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource, named = rest[0], len(rest) > 1
    if len(rest) > 2:
        resource += "/" + rest[2]
    if method == "GET":
        verb = "watch" if watch else ("get" if named else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = VERBS[method]
    return verb, group, resource, namespace


def test_a_lifecycle_needs_nothing_beyond_the_role(emulator_app: App, emulator: Kube) -> None:
    fake = emulator.fake
    assert fake is not None
    app, ns = emulator_app, emulator.ns()
    fake.reset_requests()
    project = app.project()
    job = app.job(project["id"])
    app.deploy(project["id"])
    app.deploy(project["id"])
    app.update_job(project["id"], job["id"], schedule="5 * * * *")
    run = app.client.post(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger", headers=app.admin
    ).json()
    fake.run_job(ns, run["job_name"], logs="ok\n")  # the test plays the controller (no API call)
    app.client.get("/api/v1/jobs", headers=app.admin)
    app.client.get(f"/api/v1/jobs/{run['job_name']}", headers=app.admin)
    app.client.get(f"/api/v1/jobs/{run['job_name']}/logs", headers=app.admin)
    app.client.get(f"/api/v1/runs/{run['job_run_id']}/logs", headers=app.admin)
    app.client.post(f"/api/v1/runs/{run['job_run_id']}/cancel", headers=app.admin)
    app.executor.reconcile()
    app.client.post(f"/api/v1/projects/{project['id']}/undeploy", headers=app.admin)

    used: dict[tuple[str, str], set[str]] = {}
    for record in fake.requests:
        verb, group, resource, namespace = verb_and_resource(
            record.method, record.path, record.is_watch
        )
        assert namespace in (ns, "org-globex"), record  # org namespaces only
        used.setdefault((group, resource), set()).add(verb)
    for key, verbs in used.items():
        assert verbs <= NEEDED.get(key, set()), (key, verbs)
    assert used[("batch", "cronjobs")] >= {"list", "create", "update", "delete"}
