"""Issue 19, validation: the reproductions of the tenant-isolation report are refused at save
time with a 422 that names what was wrong, through real HTTP to a running server, and nothing
is stored or started. Every request here was accepted (or answered 500) before the change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.cron import schedule_problem
from tests.conftest import LiveServer
from tests.integration.api_helpers import assert_problem

H = dict[str, str]

REFUSED_COMMANDS = [
    ("dbt", "dbt -r victim.txt debug", "victim.txt", "outside target/ and logs/"),
    ("dbt", "dbt --record-timing-info runyard.db debug", "runyard.db", "outside target/"),
    ("dbt", "dbt source freshness -o profiles.yml", "profiles.yml", "outside target/"),
    ("dbt", "dbt source freshness --output dbt_project.yml", "dbt_project.yml", "outside"),
    ("dbt", """dbt run --vars '{"x": "{{ run_query(1) }}"}'""", "run_query", "Jinja"),
    ("sqlmesh", 'sqlmesh table_diff prod:dev sushi.orders --where "1=1"', "--where", "SQL"),
    ("sqlmesh", "sqlmesh dag graph.html", "graph.html", "outside target/"),
]
GOOD = {"dbt": "dbt build", "sqlmesh": "sqlmesh run"}

REFUSED_ENVIRONMENT = [
    "DBT_ENGINE_PROFILES_DIR",
    "DBT_ENGINE_PROJECT_DIR",
    "DBT_ENGINE_TARGET_PATH",
    "DBT_ENGINE_LOG_PATH",
    "SQLMESH_DOTENV_PATH",
    "SQLMESH__GATEWAYS__X__CONNECTION__DATABASE",
    "sqlmesh__gateways__x__connection__database",
    "GCONV_PATH",
    "HOSTALIASES",
    "HTTPS_PROXY",
    "https_proxy",
    "SSL_CERT_FILE",
    "LD_PRELOAD",
    "PYTHONPATH",
]


@pytest.fixture
def admin(live_server: LiveServer) -> Iterator[httpx.Client]:
    token, _ = live_server.container.tokens.create("acme", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as http:
        yield http


def project(http: httpx.Client, kind: str = "dbt", **fields: Any) -> dict[str, Any]:
    response = http.post("/api/v1/projects", json={"name": f"p-{kind}", "kind": kind} | fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def job(http: httpx.Client, project_id: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly", "command": "dbt build", "schedule": "0 2 * * *"} | fields
    response = http.post(f"/api/v1/projects/{project_id}/jobs", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def job_count(http: httpx.Client, project_id: str) -> int:
    total: int = http.get(f"/api/v1/projects/{project_id}/jobs").json()["total"]
    return total


def message(problem: dict[str, Any], field: str) -> str:
    return " ".join(e["message"] for e in problem["errors"] if e["field"].startswith(field))


# -- commands ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "command", "token", "why"), REFUSED_COMMANDS)
def test_refused_commands_on_create_update_and_trigger(
    admin: httpx.Client, kind: str, command: str, token: str, why: str
) -> None:
    proj = project(admin, kind)
    base = f"/api/v1/projects/{proj['id']}/jobs"

    created = admin.post(base, json={"name": "bad", "command": command})
    problem = assert_problem(created, 422, field="command")
    assert token in message(problem, "command") and why in message(problem, "command")
    assert job_count(admin, proj["id"]) == 0

    good = job(admin, proj["id"], command=GOOD[kind])
    updated = admin.put(f"{base}/{good['id']}", json={"command": command})
    assert_problem(updated, 422, field="command")
    after = admin.get(f"{base}/{good['id']}").json()
    assert (after["command"], after["version"]) == (GOOD[kind], good["version"])

    triggered = admin.post(f"{base}/{good['id']}/trigger", json={"command_override": command})
    problem = assert_problem(triggered, 422, field="command_override")
    assert token in message(problem, "command_override")
    assert admin.get(f"{base}/{good['id']}/runs").json()["total"] == 0


def test_the_same_options_are_accepted_with_paths_inside_target(admin: httpx.Client) -> None:
    proj = project(admin)
    created = job(admin, proj["id"], command="dbt -r target/timing.prof debug")
    assert created["command"] == "dbt -r target/timing.prof debug"
    job(admin, proj["id"], name="fresh", command="dbt source freshness -o target/sources.json")


# -- environment -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REFUSED_ENVIRONMENT)
def test_refused_environment_names_on_jobs_and_projects(admin: httpx.Client, name: str) -> None:
    proj = project(admin)
    base = f"/api/v1/projects/{proj['id']}/jobs"
    env = {name: "x"}

    created = admin.post(base, json={"name": "envy", "command": "dbt build", "environment": env})
    problem = assert_problem(created, 422, field=f"environment.{name}")
    assert "is refused: it " in message(problem, "environment")
    assert job_count(admin, proj["id"]) == 0

    good = job(admin, proj["id"])
    assert_problem(admin.put(f"{base}/{good['id']}", json={"environment": env}), 422)
    assert admin.get(f"{base}/{good['id']}").json()["version"] == good["version"]

    assert_problem(
        admin.post("/api/v1/projects", json={"name": "other", "kind": "dbt", "environment": env}),
        422,
        field="environment",
    )
    assert_problem(admin.put(f"/api/v1/projects/{proj['id']}", json={"environment": env}), 422)


def test_refused_environment_names_as_secrets_too(admin: httpx.Client) -> None:
    proj = project(admin)
    secret = {"DBT_ENGINE_PROFILES_DIR": "/elsewhere"}
    response = admin.post(
        f"/api/v1/projects/{proj['id']}/jobs",
        json={"name": "s", "command": "dbt build", "secret_environment": secret},
    )
    assert_problem(response, 422, field="secret_environment")
    body = {"name": "other", "kind": "dbt", "secret_environment": secret}
    assert_problem(admin.post("/api/v1/projects", json=body), 422, field="secret_environment")


def test_ordinary_and_dbt_user_names_are_accepted(admin: httpx.Client) -> None:
    env = {"WAREHOUSE": "prod", "DBT_ENV_SECRET_PASSWORD": "pw", "DBT_ENV_CUSTOM_ENV_TEAM": "a"}
    proj = project(admin, environment=env)
    assert job(admin, proj["id"], environment=env)["environment"]


# -- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("* * 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 L * *", "Quartz"),
        ("0 0 15W * *", "Quartz"),
        ("0 0 ? * *", "Quartz"),
        ("0 0 * * 5#2", "Quartz"),
        ("0 0 * * * *", "without seconds"),
        ("0 0 * * 7", "0 for Sunday"),
        ("@reboot", "shorthands"),
        ("H 2 * * *", "Jenkins"),
    ],
)
def test_schedules_kubernetes_would_refuse_or_that_never_fire(
    admin: httpx.Client, schedule: str, why: str
) -> None:
    proj = project(admin)
    base = f"/api/v1/projects/{proj['id']}/jobs"
    created = admin.post(base, json={"name": "s", "command": "dbt build", "schedule": schedule})
    problem = assert_problem(created, 422, field="schedule")
    assert why in message(problem, "schedule")
    good = job(admin, proj["id"])
    assert_problem(admin.put(f"{base}/{good['id']}", json={"schedule": schedule}), 422)


# -- other fields ------------------------------------------------------------------------------

BIG = "x" * 500_000


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"service_account": "Not_A_Name"}, "service_account"),
        ({"service_account": "a" * 254}, "service_account"),
        ({"service_account": "-leading"}, "service_account"),
        ({"image": "ghcr.io/acme/x:" + BIG}, "image"),
        ({"image": "has space:1"}, "image"),
        ({"path": BIG}, "path"),
        ({"description": BIG}, "description"),
        ({"slack_webhook_url": "https://hooks.slack.com/" + BIG}, "slack_webhook_url"),
        ({"slack_webhook_url": "http://[::1"}, "slack_webhook_url"),
        ({"slack_webhook_url": "https://" + "a" * 64 + ".example.com/x"}, "slack_webhook_url"),
    ],
)
def test_project_fields_out_of_bounds(
    admin: httpx.Client, fields: dict[str, Any], field: str
) -> None:
    response = admin.post("/api/v1/projects", json={"name": "big", "kind": "dbt"} | fields)
    assert_problem(response, 422, field=field)
    assert len(response.content) < 20_000  # a 500 KB value is not echoed back
    assert admin.get("/api/v1/projects").json()["total"] == 0


MOUNT = {"name": "cfg", "mountPath": "/etc/cfg"}
VOLUME = {"name": "cfg", "configMap": {"name": "settings"}}


def mounted(**change: Any) -> dict[str, Any]:
    """A volume and a mount of it, with the mount's fields changed."""
    return {"volumes": [VOLUME], "volume_mounts": [MOUNT | change]}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (mounted(name=["cfg"]), "template_overrides.volume_mounts[0].name"),
        (mounted(name={"a": 1}), "template_overrides.volume_mounts[0].name"),
        (mounted(readOnly="yes"), "template_overrides.volume_mounts[0].readOnly"),
        (mounted(mountPath=5), "template_overrides.volume_mounts[0].mountPath"),
        (mounted(subPath=["a"]), "template_overrides.volume_mounts[0].subPath"),
        ({"volumes": [{"name": ["cfg"], "emptyDir": {}}]}, "template_overrides.volumes[0]"),
        ({"volumes": [{"name": "cfg", "configMap": "settings"}]}, "template_overrides.volumes"),
        (
            {"volumes": [{"name": "s", "secret": {"secretName": ["a"]}}]},
            "template_overrides.volumes[0].secret.secretName",
        ),
        (
            {"volumes": [{"name": "e", "emptyDir": {"sizeLimit": [1]}}]},
            "template_overrides.volumes[0].emptyDir.sizeLimit",
        ),
        ({"volumes": [VOLUME, VOLUME]}, "template_overrides.volumes[1].name"),
        ({"volumes": {"name": "cfg"}}, "template_overrides.volumes"),
        ({"tolerations": [{"key": ["a"]}]}, "template_overrides.tolerations[0].key"),
        ({"tolerations": [{"tolerationSeconds": "60"}]}, "template_overrides.tolerations"),
        ({"tolerations": "all"}, "template_overrides.tolerations"),
        ({"node_selector": {"zone": ["a"]}}, "template_overrides.node_selector"),
        ({"node_selector": {"zone": "x" * 64}}, "template_overrides.node_selector"),
        ({"image_pull_secrets": [1]}, "template_overrides.image_pull_secrets"),
        ({"image_pull_secrets": "regcred"}, "template_overrides.image_pull_secrets"),
        ({"annotations": {"a": 1}}, "template_overrides.annotations"),
        ({BIG: 1}, "template_overrides"),
    ],
)
def test_template_overrides_of_the_wrong_type(
    admin: httpx.Client, overrides: dict[str, Any], field: str
) -> None:
    body = {"name": "ov", "kind": "dbt", "template_overrides": overrides}
    response = admin.post("/api/v1/projects", json=body)
    assert_problem(response, 422, field=field)
    assert len(response.content) < 20_000
    proj = project(admin)
    updated = admin.put(f"/api/v1/projects/{proj['id']}", json={"template_overrides": overrides})
    assert_problem(updated, 422, field=field)


def test_good_template_overrides_are_accepted(admin: httpx.Client) -> None:
    overrides = {
        "volumes": [VOLUME, {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
        "volume_mounts": [MOUNT | {"readOnly": True}, {"name": "scratch", "mountPath": "/s"}],
        "tolerations": [
            {"key": "pool", "operator": "Equal", "value": "etl", "effect": "NoSchedule"}
        ],
        "node_selector": {"kubernetes.io/arch": "amd64"},
        "image_pull_secrets": ["regcred"],
    }
    assert project(admin, template_overrides=overrides)["template_overrides"] == overrides


@pytest.mark.parametrize(
    ("fields", "field", "why"),
    [
        ({"webhook_events": ["success", "success"]}, "webhook_events", "more than once"),
        ({"webhook_headers": {"X-Team": "café"}}, "webhook_headers.X-Team", "ASCII"),
        ({"webhook_headers": {"X-Team": "a\u2028b"}}, "webhook_headers.X-Team", "ASCII"),
        ({"webhook_url": "http://[::1", "webhook_enabled": True}, "webhook_url", ""),
        (
            {"webhook_url": "https://" + "a" * 64 + ".example.com/h", "webhook_enabled": True},
            "webhook_url",
            "",
        ),
        ({"description": BIG}, "description", "2,000"),
        ({"depends_on": [{"job_id": f"job_{i}"} for i in range(51)]}, "depends_on", "at most 50"),
    ],
)
def test_job_fields_out_of_bounds(
    admin: httpx.Client, fields: dict[str, Any], field: str, why: str
) -> None:
    proj = project(admin)
    base = f"/api/v1/projects/{proj['id']}/jobs"
    created = admin.post(base, json={"name": "j", "command": "dbt build"} | fields)
    problem = assert_problem(created, 422, field=field)
    assert why in message(problem, field)
    assert len(created.content) < 20_000
    good = job(admin, proj["id"])
    assert_problem(admin.put(f"{base}/{good['id']}", json=fields), 422, field=field)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 2 * * *",
        "*/5 * * * *",
        "30 4 * * 1-5",
        "0 9-17/2 * * MON-FRI",
        "0 0 1 jan,jul *",
        "0 0 29 2 *",
        "* * 31 2 1",  # day of month OR day of week, in both schedulers: Mondays of February
        "5/15 * * * *",
        "0 0 * * 0",
        "@daily",
        " 0 2 * * * ",
    ],
)
def test_schedules_both_schedulers_read_alike_are_accepted(schedule: str) -> None:
    assert schedule_problem(schedule) is None
