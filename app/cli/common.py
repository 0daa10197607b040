"""What every client command shares: --url, --token and --json, the client and the output."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from app.cli.http import DEFAULT_URL, RunyardClient
from app.cli.output import Output

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A failure the command explains itself, with its exit code (app/exit_codes.py)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Api:
    """The client and the output of one client command."""

    def __init__(self, url: str | None, token: str | None, as_json: bool) -> None:
        self.client = RunyardClient(
            url or os.environ.get("RUNYARD_URL") or DEFAULT_URL,
            token or os.environ.get("RUNYARD_TOKEN"),
        )
        self.out = Output(as_json)

    @property
    def as_json(self) -> bool:
        return self.out.as_json


def client_command(func: F) -> F:
    """Adds --url, --token and --json, and passes ``api`` (an Api) to the command."""

    @click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
    @click.option("--token", envvar=None, help="API token (default: RUNYARD_TOKEN)")
    @click.option("--url", help=f"runyard server (default: RUNYARD_URL or {DEFAULT_URL})")
    @functools.wraps(func)
    def wrapper(url: str | None, token: str | None, as_json: bool, **kwargs: Any) -> Any:
        api = Api(url, token, as_json)
        try:
            return func(api, **kwargs)
        finally:
            api.client.close()

    return wrapper  # type: ignore[return-value]


def wait_options(func: F) -> F:
    """The options of commands that start a run (trigger, rerun, retry)."""
    options = [
        click.option("--wait", is_flag=True, help="wait until the run ends (exit 1 if it fails)"),
        click.option("--follow", is_flag=True, help="wait and stream the run's log"),
        click.option(
            "--timeout", type=float, help="stop waiting after SECONDS (exit 1; the run goes on)"
        ),
        click.option(
            "--logs-on-failure",
            is_flag=True,
            help="print the log's last 200 lines if the run fails",
        ),
        click.option(
            "--cancel-on-interrupt", is_flag=True, help="cancel the run on Ctrl-C without asking"
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# --- shell completion of names -----------------------------------------------------------------


def _completion_client(ctx: click.Context) -> Api | None:
    try:
        return Api(ctx.params.get("url"), ctx.params.get("token"), False)
    except Exception:  # completion must never fail loudly
        return None


def complete_project(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Project names from the server (RUNYARD_URL, RUNYARD_TOKEN), for shell completion."""
    api = _completion_client(ctx)
    if api is None:
        return []
    try:
        projects = api.client.get("/api/v1/projects", timeout=3)["projects"]
    except Exception:  # no server, no token: complete nothing rather than print an error
        return []
    finally:
        api.client.close()
    return [
        CompletionItem(p["name"], help=p.get("description") or p["kind"])
        for p in projects
        if p["name"].startswith(incomplete)
    ]


def complete_job(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Job names of the PROJECT already on the command line."""
    api = _completion_client(ctx)
    project = ctx.params.get("project")
    if api is None or not project:
        return []
    try:
        found = api.client.project(project)
        jobs = api.client.get(f"/api/v1/projects/{found['id']}/jobs", timeout=3)["jobs"]
    except Exception:
        return []
    finally:
        api.client.close()
    return [
        CompletionItem(j["name"], help=j["command"][:60])
        for j in jobs
        if j["name"].startswith(incomplete)
    ]
