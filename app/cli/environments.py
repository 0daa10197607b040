"""`runyard environments …`: a project's environments (docs/environments.md), by name or id.

Secret values never go on the command line (shell history, ``ps``): ``--secret-var NAME``
reads the value from this shell's environment variable NAME (``NAME=OTHER`` from OTHER).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from app.cli.common import Api, CliError, client_command, complete_project
from app.exit_codes import EXIT_OK, EXIT_USAGE

_FIELDS = [
    "id", "name", "is_default", "description", "target", "gateway", "image", "path",
    "environment", "secret_environment", "secret_env", "secret_env_from", "updated_at",
]  # fmt: skip


@click.group()
def environments() -> None:
    """A project's environments: dbt target or SQLMesh environment, image or path,
    variables and credentials."""


def _show(api: Api, environment: dict[str, Any]) -> None:
    if api.as_json:
        api.out.document(environment)
    else:
        api.out.fields([(f, environment.get(f)) for f in _FIELDS])


def _base(project_id: str) -> str:
    return f"/api/v1/projects/{project_id}/environments"


def _find(api: Api, project: str, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = api.client.project(project)
    items = api.client.get(_base(found["id"]))["environments"]
    for item in items:
        if ref in (item["id"], item["name"]):
            return found, item
    raise CliError(
        f"no environment {ref!r} in project {found['name']}: "
        f"'runyard environments list {found['name']}' lists them",
        EXIT_USAGE,
    )


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    result = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise CliError(f"{option} takes NAME=VALUE, got {value!r}", EXIT_USAGE)
        result[name] = rest
    return result


def _body(
    data: str | None,
    var: tuple[str, ...],
    secret_var: tuple[str, ...],
    secret_ref: tuple[str, ...],
    secret_from: tuple[str, ...],
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if data:
        text = Path(data[1:]).read_text() if data.startswith("@") else data
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise CliError(f"--data is not JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(body, dict):
            raise CliError("--data must be a JSON object", EXIT_USAGE)
    body.update({k: v for k, v in fields.items() if v is not None})
    if var:
        body["environment"] = _pairs(var, "--var")
    if secret_var:
        secrets = {}
        for item in secret_var:
            name, _, source = item.partition("=")
            source = source or name
            if source not in os.environ:
                raise CliError(
                    f"--secret-var {item}: set the environment variable {source} to the "
                    "value first (values never go on the command line)",
                    EXIT_USAGE,
                )
            secrets[name] = os.environ[source]
        body["secret_environment"] = secrets
    if secret_ref:
        refs = {}
        for name, where in _pairs(secret_ref, "--secret-ref").items():
            secret, sep, key = where.partition("/")
            if not sep:
                raise CliError(
                    f"--secret-ref takes NAME=SECRET/KEY, got {name}={where}", EXIT_USAGE
                )
            refs[name] = {"secret": secret, "key": key}
        body["secret_env"] = refs
    if secret_from:
        body["secret_env_from"] = list(secret_from)
    return body


def _options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--description"),
            click.option("--target", help="dbt --target / SQLMesh environment"),
            click.option("--gateway", help="SQLMesh --gateway"),
            click.option("--image", help="container image (Kubernetes executor)"),
            click.option("--path", help="the project's directory (local executor)"),
            click.option("--var", multiple=True, help="a variable NAME=VALUE (repeatable)"),
            click.option(
                "--secret-var",
                multiple=True,
                help="a write-only variable NAME (or NAME=ENVVAR), its value read from this "
                "shell's environment (repeatable)",
            ),
            click.option(
                "--secret-ref",
                multiple=True,
                help="Kubernetes: NAME=SECRET/KEY, a variable from a key of an existing "
                "Secret (repeatable)",
            ),
            click.option(
                "--secret-from",
                multiple=True,
                help="Kubernetes: every key of an existing Secret as variables (repeatable)",
            ),
            click.option("--data", help="more fields as a JSON object, or @FILE"),
        ]
    ):
        func = option(func)
    return func


@environments.command("list")
@click.argument("project", shell_complete=complete_project)
@client_command
def environments_list(api: Api, project: str) -> int:
    """List a project's environments."""
    found = api.client.project(project)
    body = api.client.get(_base(found["id"]))
    if api.as_json:
        api.out.document(body)
        return EXIT_OK
    api.out.table(
        ["ID", "NAME", "DEFAULT", "TARGET", "IMAGE / PATH"],
        [
            [e["id"], e["name"], e["is_default"], e["target"] or "", e["image"] or e["path"] or ""]
            for e in body["environments"]
        ],
    )
    return EXIT_OK


@environments.command("show")
@click.argument("project", shell_complete=complete_project)
@click.argument("environment")
@client_command
def environments_show(api: Api, project: str, environment: str) -> int:
    """Show an environment (project and environment by name or id)."""
    _show(api, _find(api, project, environment)[1])
    return EXIT_OK


@environments.command("create")
@click.argument("project", shell_complete=complete_project)
@click.argument("name")
@_options
@client_command
def environments_create(api: Api, project: str, name: str, **fields: Any) -> int:
    """Create an environment."""
    found = api.client.project(project)
    _show(api, api.client.post(_base(found["id"]), _body(name=name, **fields)))
    return EXIT_OK


@environments.command("update")
@click.argument("project", shell_complete=complete_project)
@click.argument("environment")
@click.option("--name", help="a new name")
@_options
@client_command
def environments_update(api: Api, project: str, environment: str, **fields: Any) -> int:
    """Change an environment (only the fields given; --var replaces all its variables,
    --secret-var sets the variables it names and keeps the others)."""
    found, current = _find(api, project, environment)
    body = _body(**fields)
    if not body:
        raise CliError("nothing to change: give a field option or --data", EXIT_USAGE)
    _show(api, api.client.put(f"{_base(found['id'])}/{current['id']}", body))
    return EXIT_OK


@environments.command("delete")
@click.argument("project", shell_complete=complete_project)
@click.argument("environment")
@click.option("--yes", is_flag=True, help="do not ask")
@client_command
def environments_delete(api: Api, project: str, environment: str, yes: bool) -> int:
    """Delete an environment (not the default, nor one a job runs in)."""
    found, current = _find(api, project, environment)
    if (
        not yes
        and api.out.tty
        and not click.confirm(f"Delete environment {current['name']} ({current['id']})?", err=True)
    ):
        raise CliError("nothing deleted", EXIT_USAGE)
    api.client.delete(f"{_base(found['id'])}/{current['id']}")
    if api.as_json:
        api.out.document({"deleted": current["id"]})
    else:
        api.out.line(f"deleted {current['name']} ({current['id']})")
    return EXIT_OK
