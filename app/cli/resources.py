"""`runyard projects …` and `runyard jobs …`: the API's projects and jobs, by name or id."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from app.cli.common import (
    Api,
    CliError,
    client_command,
    complete_job,
    complete_project,
    wait_options,
)
from app.cli.waiting import Options, wait_for_run
from app.exit_codes import EXIT_OK, EXIT_USAGE

F = TypeVar("F", bound=Callable[..., Any])


def _data(data: str | None) -> dict[str, Any]:
    """--data: a JSON object, or @FILE holding one."""
    if not data:
        return {}
    text = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--data is not JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CliError("--data must be a JSON object", EXIT_USAGE)
    return value


def _body(data: str | None, **fields: Any) -> dict[str, Any]:
    """--data overlaid with the flags given (a flag not given sends nothing)."""
    body = _data(data)
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _confirm(api: Api, yes: bool, what: str) -> None:
    if not yes and api.out.tty and not click.confirm(f"{what}?", default=False, err=True):
        raise CliError("nothing deleted", EXIT_USAGE)


# --- projects -----------------------------------------------------------------------------

_PROJECT_FIELDS = [
    "id", "name", "kind", "deployed", "description", "path", "image", "service_account",
    "environment", "secret_environment", "resources", "slack_channel", "created_at", "updated_at",
]  # fmt: skip


@click.group()
def projects() -> None:
    """Create, change, deploy and list projects."""


def _show_project(api: Api, project: dict[str, Any]) -> None:
    if api.as_json:
        api.out.document(project)
    else:
        api.out.fields([(f, project.get(f)) for f in _PROJECT_FIELDS])


@projects.command("list")
@client_command
def projects_list(api: Api) -> int:
    """List the organization's projects."""
    body = api.client.get("/api/v1/projects")
    if api.as_json:
        api.out.document(body)
        return EXIT_OK
    api.out.table(
        ["ID", "NAME", "KIND", "DEPLOYED", "DESCRIPTION"],
        [
            [p["id"], p["name"], p["kind"], p["deployed"], (p["description"] or "")[:50]]
            for p in body["projects"]
        ],
    )
    return EXIT_OK


@projects.command("show")
@click.argument("project", shell_complete=complete_project)
@client_command
def projects_show(api: Api, project: str) -> int:
    """Show a project (by name or id)."""
    _show_project(api, api.client.project(project))
    return EXIT_OK


_project_options = [
    click.option("--kind", type=click.Choice(["dbt", "sqlmesh"])),
    click.option("--description"),
    click.option("--path", help="the project's directory (local executor)"),
    click.option("--image", help="container image (Kubernetes executor)"),
    click.option("--data", help="more fields as a JSON object, or @FILE"),
]


def _with(options: list[Any]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@projects.command("create")
@click.argument("name")
@_with(_project_options)
@client_command
def projects_create(api: Api, name: str, **fields: Any) -> int:
    """Create a project."""
    body = _body(fields.pop("data"), name=name, **fields)
    _show_project(api, api.client.post("/api/v1/projects", body))
    return EXIT_OK


@projects.command("update")
@click.argument("project", shell_complete=complete_project)
@click.option("--name", help="a new name")
@_with(_project_options)
@client_command
def projects_update(api: Api, project: str, **fields: Any) -> int:
    """Change a project (only the fields given)."""
    found = api.client.project(project)
    body = _body(fields.pop("data"), **fields)
    if not body:
        raise CliError("nothing to change: give a field option or --data", EXIT_USAGE)
    _show_project(api, api.client.put(f"/api/v1/projects/{found['id']}", body))
    return EXIT_OK


@projects.command("delete")
@click.argument("project", shell_complete=complete_project)
@click.option("--yes", is_flag=True, help="do not ask")
@client_command
def projects_delete(api: Api, project: str, yes: bool) -> int:
    """Delete a project and its jobs."""
    found = api.client.project(project)
    _confirm(api, yes, f"Delete project {found['name']} ({found['id']}) and its jobs")
    api.client.delete(f"/api/v1/projects/{found['id']}")
    _done(api, {"deleted": found["id"]}, f"deleted {found['name']} ({found['id']})")
    return EXIT_OK


@projects.command("deploy")
@click.argument("project", shell_complete=complete_project)
@client_command
def projects_deploy(api: Api, project: str) -> int:
    """Schedule the project's jobs (CronJobs on Kubernetes)."""
    found = api.client.project(project)
    result = api.client.post(f"/api/v1/projects/{found['id']}/deploy")
    _done(api, result, f"deployed {found['name']}: {_summary(result)}")
    return EXIT_OK


@projects.command("undeploy")
@click.argument("project", shell_complete=complete_project)
@client_command
def projects_undeploy(api: Api, project: str) -> int:
    """Stop scheduling the project's jobs."""
    found = api.client.project(project)
    result = api.client.post(f"/api/v1/projects/{found['id']}/undeploy")
    _done(api, result, f"undeployed {found['name']}: {_summary(result)}")
    return EXIT_OK


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return str(result)
    return ", ".join(f"{k} {v}" for k, v in result.items() if not isinstance(v, dict | list))


def _done(api: Api, document: Any, text: str) -> None:
    if api.as_json:
        api.out.document(document)
    else:
        api.out.line(text)


# --- jobs ---------------------------------------------------------------------------------

_JOB_FIELDS = [
    "id", "project_id", "name", "enabled", "command", "schedule", "timezone", "description",
    "concurrency_policy", "timeout_seconds", "retries", "environment", "secret_environment",
    "slack_channel", "webhook_url", "webhook_enabled", "version", "sync_state", "updated_at",
]  # fmt: skip


@click.group()
def jobs() -> None:
    """Create, change, trigger and inspect jobs."""


def _show_job(api: Api, job: dict[str, Any]) -> None:
    if api.as_json:
        api.out.document(job)
    else:
        api.out.fields([(f, job.get(f)) for f in _JOB_FIELDS])


@jobs.command("list")
@click.argument("project", shell_complete=complete_project)
@client_command
def jobs_list(api: Api, project: str) -> int:
    """List a project's jobs."""
    found = api.client.project(project)
    body = api.client.get(f"/api/v1/projects/{found['id']}/jobs")
    if api.as_json:
        api.out.document(body)
        return EXIT_OK
    api.out.table(
        ["ID", "NAME", "SCHEDULE", "TIMEZONE", "ENABLED", "COMMAND"],
        [
            [j["id"], j["name"], j["schedule"], j["timezone"], j["enabled"], j["command"][:60]]
            for j in body["jobs"]
        ],
    )
    return EXIT_OK


def _job(api: Api, project: str, job: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = api.client.project(project)
    return found, api.client.job(found["id"], job)


@jobs.command("show")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@client_command
def jobs_show(api: Api, project: str, job: str) -> int:
    """Show a job (project and job by name or id)."""
    _show_job(api, _job(api, project, job)[1])
    return EXIT_OK


_job_options = [
    click.option("--command", "command_", help="the dbt or SQLMesh command"),
    click.option("--schedule", help="cron expression ('none' for trigger-only)"),
    click.option("--timezone"),
    click.option("--description"),
    click.option(
        "--concurrency-policy", type=click.Choice(["Forbid", "Allow", "Replace", "Queue"])
    ),
    click.option("--timeout-seconds", type=int),
    click.option("--data", help="more fields as a JSON object, or @FILE"),
]


def _job_body(fields: dict[str, Any]) -> dict[str, Any]:
    schedule = fields.pop("schedule")
    body = _body(fields.pop("data"), command=fields.pop("command_"), **fields)
    if schedule is not None:
        body["schedule"] = None if schedule.lower() == "none" else schedule
    return body


@jobs.command("create")
@click.argument("project", shell_complete=complete_project)
@click.argument("name")
@_with(_job_options)
@client_command
def jobs_create(api: Api, project: str, name: str, **fields: Any) -> int:
    """Create a job in a project."""
    found = api.client.project(project)
    body = {"name": name, **_job_body(fields)}
    _show_job(api, api.client.post(f"/api/v1/projects/{found['id']}/jobs", body))
    return EXIT_OK


@jobs.command("update")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@click.option("--name", help="a new name")
@_with(_job_options)
@client_command
def jobs_update(api: Api, project: str, job: str, **fields: Any) -> int:
    """Change a job (only the fields given)."""
    found, current = _job(api, project, job)
    body = _job_body(fields)
    if not body:
        raise CliError("nothing to change: give a field option or --data", EXIT_USAGE)
    path = f"/api/v1/projects/{found['id']}/jobs/{current['id']}"
    _show_job(api, api.client.put(path, body))
    return EXIT_OK


def _set_enabled(api: Api, project: str, job: str, enabled: bool) -> int:
    found, current = _job(api, project, job)
    path = f"/api/v1/projects/{found['id']}/jobs/{current['id']}"
    updated = api.client.put(path, {"enabled": enabled})
    word = "enabled" if enabled else "disabled"
    _done(api, updated, f"{word} {found['name']}/{updated['name']} ({updated['id']})")
    return EXIT_OK


@jobs.command("enable")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@client_command
def jobs_enable(api: Api, project: str, job: str) -> int:
    """Let the job's schedule fire again."""
    return _set_enabled(api, project, job, True)


@jobs.command("disable")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@client_command
def jobs_disable(api: Api, project: str, job: str) -> int:
    """Stop the job's schedule (it can still be triggered)."""
    return _set_enabled(api, project, job, False)


@jobs.command("delete")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@click.option("--yes", is_flag=True, help="do not ask")
@client_command
def jobs_delete(api: Api, project: str, job: str, yes: bool) -> int:
    """Delete a job (its runs stay on record)."""
    found, current = _job(api, project, job)
    _confirm(api, yes, f"Delete job {found['name']}/{current['name']} ({current['id']})")
    api.client.delete(f"/api/v1/projects/{found['id']}/jobs/{current['id']}")
    _done(api, {"deleted": current["id"]}, f"deleted {current['name']} ({current['id']})")
    return EXIT_OK


@jobs.command("status")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@click.option("--window", help="add statistics over this window, e.g. 7d")
@client_command
def jobs_status(api: Api, project: str, job: str, window: str | None) -> int:
    """The job's last run, counts by status and next fire time."""
    found, current = _job(api, project, job)
    body = api.client.get(
        f"/api/v1/projects/{found['id']}/jobs/{current['id']}/status", window=window
    )
    if api.as_json:
        api.out.document(body)
    else:
        api.out.fields(list(body.items()))
    return EXIT_OK


@jobs.command("versions")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@client_command
def jobs_versions(api: Api, project: str, job: str) -> int:
    """The job's configuration versions, newest first."""
    found, current = _job(api, project, job)
    body = api.client.get(f"/api/v1/projects/{found['id']}/jobs/{current['id']}/versions")
    if api.as_json:
        api.out.document(body)
        return EXIT_OK
    api.out.table(
        ["VERSION", "CREATED", "COMMAND", "SCHEDULE", "SECRETS CHANGED"],
        [
            [
                v["version"],
                v["created_at"],
                v["config"]["command"][:60],
                v["config"].get("schedule"),
                ", ".join(v.get("secrets_changed") or []) or "-",
            ]
            for v in body["versions"]
        ],
    )
    return EXIT_OK


@jobs.command("trigger")
@click.argument("project", shell_complete=complete_project)
@click.argument("job", shell_complete=complete_job)
@click.option("--command", "command_", help="command override for this run only")
@click.option("--image", help="container image for this run only")
@click.option(
    "--environment",
    help="run once in another environment of the project (the job must allow it)",
)
@click.option("--idempotency-key", help="the same key within 24 h returns the same run")
@wait_options
@client_command
def jobs_trigger(
    api: Api,
    project: str,
    job: str,
    command_: str | None,
    image: str | None,
    environment: str | None,
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    **waiting: Any,
) -> int:
    """Start a run; with --wait or --follow, exit 0 only if it succeeds."""
    found, current = _job(api, project, job)
    body: dict[str, Any] = {}
    if command_:
        body["command_override"] = command_
    if image:
        body["image"] = image
    if environment:
        body["environment"] = environment
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    started = api.client.post(
        f"/api/v1/projects/{found['id']}/jobs/{current['id']}/trigger", body, headers
    )
    run_id = started["job_run_id"]
    if not (wait or follow):
        if api.as_json:
            api.out.document(started)
        else:
            api.out.line(run_id)
            api.out.note(f"started {run_id} ({started['job_name']})")
        return EXIT_OK
    return wait_for_run(api.client, run_id, Options(follow=follow, **waiting), api.out)
