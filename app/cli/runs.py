"""`runyard runs …`: run records, logs, cancel, rerun and retry."""

from __future__ import annotations

from typing import Any

import click

from app.cli.common import Api, client_command, complete_job, complete_project, wait_options
from app.cli.output import Progress
from app.cli.waiting import Options, print_run, wait_for_run
from app.exit_codes import EXIT_OK, EXIT_RUN_FAILED


@click.group()
def runs() -> None:
    """List, inspect, follow, cancel, rerun and retry runs."""


@runs.command("list")
@click.option(
    "--project", shell_complete=complete_project, help="only this project's runs (name or id)"
)
@click.option(
    "--job", shell_complete=complete_job, help="only this job's runs (name or id; needs --project)"
)
@click.option("--status", help="only runs with this status")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@client_command
def runs_list(
    api: Api, project: str | None, job: str | None, status: str | None, limit: int
) -> int:
    """The organization's runs, newest first."""
    params: dict[str, Any] = {"status": status, "limit": limit}
    if job and not project:
        raise click.UsageError("--job needs --project (job names are unique per project)")
    if project:
        found = api.client.project(project)
        params["project_id"] = found["id"]
        if job:
            params["job_id"] = api.client.job(found["id"], job)["id"]
    body = api.client.get("/api/v1/runs", **params)
    if api.as_json:
        api.out.document(body)
        return EXIT_OK
    api.out.table(
        ["ID", "STATUS", "TRIGGERED BY", "STARTED", "DURATION", "COMMAND"],
        [
            [
                r["id"],
                r["status"],
                r["triggered_by"],
                r.get("start_time"),
                None if r.get("duration_seconds") is None else f"{r['duration_seconds']:.1f}s",
                (r.get("command") or "")[:50],
            ]
            for r in body["runs"]
        ],
    )
    return EXIT_OK


@runs.command("show")
@click.argument("run")
@client_command
def runs_show(api: Api, run: str) -> int:
    """A run record (exit 1 when it ended in anything but success)."""
    found = api.client.get(f"/api/v1/runs/{run}")
    if api.as_json:
        api.out.document(found)
    else:
        print_run(found, api.out)
    not_failed = ("success", "queued", "pending", "running")
    return EXIT_OK if found["status"] in not_failed else EXIT_RUN_FAILED


@runs.command("logs")
@click.argument("run")
@click.option("--follow", is_flag=True, help="keep printing until the run ends")
@click.option("--tail", type=int, help="only the last N lines")
@client_command
def runs_logs(api: Api, run: str, follow: bool, tail: int | None) -> int:
    """A run's log (stored, or live with --follow)."""
    if not follow:
        api.out.stream.write(api.client.text(f"/api/v1/runs/{run}/logs", tail=tail))
        return EXIT_OK
    if tail is not None:
        # The event stream starts with the whole log so far: print the tail, then follow.
        api.out.stream.write(api.client.text(f"/api/v1/runs/{run}/logs", tail=tail))
    opts = Options(follow=True)
    # --json would print the run at the end; logs has no JSON form, so plain output always.
    api.out.as_json = False
    return _follow_quietly(api, run, opts, skip_initial=tail is not None)


def _follow_quietly(api: Api, run_id: str, opts: Options, skip_initial: bool) -> int:
    from app.cli.waiting import Waiter, _Missing
    from app.models import TERMINAL_STATUSES

    waiter = Waiter(api.client, run_id, opts, api.out)
    if skip_initial:
        waiter.skip_log = len(api.client.text(f"/api/v1/runs/{run_id}/logs"))
    quiet = Progress(None)  # the log is the progress
    try:
        final = waiter.stream(quiet)
    except _Missing:
        final = waiter.poll(quiet)
    if final["status"] not in TERMINAL_STATUSES:
        return EXIT_RUN_FAILED
    return EXIT_OK if final["status"] == "success" else EXIT_RUN_FAILED


@runs.command("cancel")
@click.argument("run")
@client_command
def runs_cancel(api: Api, run: str) -> int:
    """Cancel a pending or running run."""
    found = api.client.post(f"/api/v1/runs/{run}/cancel")
    if api.as_json:
        api.out.document(found)
    else:
        api.out.line(f"{found['id']}\t{found['status']}")
    return EXIT_OK


def _start_again(api: Api, path: str, body: dict[str, Any], wait: bool, **waiting: Any) -> int:
    started = api.client.post(path, body)
    follow = waiting.pop("follow")
    if not (wait or follow):
        if api.as_json:
            api.out.document(started)
        else:
            api.out.line(started["id"])
        return EXIT_OK
    return wait_for_run(api.client, started["id"], Options(follow=follow, **waiting), api.out)


@runs.command("rerun")
@click.argument("run")
@click.option("--command", "command_", help="command override for this run only")
@wait_options
@client_command
def runs_rerun(api: Api, run: str, command_: str | None, wait: bool, **waiting: Any) -> int:
    """Run again from the run's configuration snapshot."""
    body = {"command_override": command_} if command_ else {}
    return _start_again(api, f"/api/v1/runs/{run}/rerun", body, wait, **waiting)


@runs.command("retry")
@click.argument("run")
@wait_options
@client_command
def runs_retry(api: Api, run: str, wait: bool, **waiting: Any) -> int:
    """Retry a failed run (what the server's retry endpoint does with it)."""
    return _start_again(api, f"/api/v1/runs/{run}/retry", {}, wait, **waiting)
