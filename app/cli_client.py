"""The CLI's client commands: they talk to a runyard server over the HTTP API.

Exit codes: app/exit_codes.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

from app.client import ApiError, RunyardClient
from app.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_RUN_FAILED
from app.models import TERMINAL_STATUSES as TERMINAL

_COLOURS = {
    "success": "32",
    "failed": "31",
    "timed_out": "31",
    "lost": "31",
    "cancelled": "33",
    "running": "36",
    "pending": "36",
}


class Output:
    """Human output on a terminal gets colours and a live progress line; pipes get plain
    lines; --json gets one JSON document on stdout."""

    def __init__(
        self, as_json: bool, stream: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        self.as_json = as_json
        self.stream, self.err = stream, err
        self.tty = err.isatty()

    def status(self, status: str) -> str:
        code = _COLOURS.get(status)
        return f"\033[{code}m{status}\033[0m" if code and self.stream.isatty() else status

    def progress(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.err.write("\r\033[K" + text + ("\n" if final else ""))
            self.err.flush()
        elif final:
            print(text, file=self.err)

    def table(self, rows: list[list[str]]) -> None:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
                file=self.stream,
            )

    def document(self, value: Any) -> None:
        print(json.dumps(value, indent=2), file=self.stream)


def _client(args: argparse.Namespace) -> RunyardClient:
    url = args.url or os.environ.get("RUNYARD_URL") or "http://127.0.0.1:8080"
    token = args.token or os.environ.get("RUNYARD_TOKEN")
    return RunyardClient(url, token)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def cmd_projects_list(args: argparse.Namespace, out: Output) -> int:
    body = _client(args).get("/api/v1/projects")
    if out.as_json:
        out.document(body)
        return EXIT_OK
    rows = [["ID", "NAME", "KIND", "DEPLOYED", "DESCRIPTION"]]
    rows += [
        [
            p["id"],
            p["name"],
            p["kind"],
            "yes" if p["deployed"] else "no",
            (p["description"] or "")[:50],
        ]
        for p in body["projects"]
    ]
    out.table(rows)
    return EXIT_OK


def cmd_jobs_list(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    project = client.project(args.project)
    body = client.get(f"/api/v1/projects/{project['id']}/jobs")
    if out.as_json:
        out.document(body)
        return EXIT_OK
    rows = [["ID", "NAME", "SCHEDULE", "TIMEZONE", "ENABLED", "COMMAND"]]
    rows += [
        [
            j["id"],
            j["name"],
            j["schedule"] or "-",
            j["timezone"],
            "yes" if j["enabled"] else "no",
            j["command"][:60],
        ]
        for j in body["jobs"]
    ]
    out.table(rows)
    return EXIT_OK


def cmd_jobs_trigger(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    project = client.project(args.project)
    job = client.job(project["id"], args.job)
    body = {"command_override": args.command} if args.command else {}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    started = client.post(
        f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger", body, headers
    )
    run_id = started["job_run_id"]
    if not (args.wait or args.follow):
        if out.as_json:
            out.document(started)
        else:
            print(run_id, file=out.stream)
            out.progress(f"started {run_id} ({started['job_name']})", final=True)
        return EXIT_OK
    return wait_for_run(client, run_id, args, out)


def cmd_runs_show(args: argparse.Namespace, out: Output) -> int:
    run = _client(args).get(f"/api/v1/runs/{args.run}")
    if out.as_json:
        out.document(run)
    else:
        _print_run(run, out)
    return EXIT_OK if run["status"] in ("success", "pending", "running") else EXIT_RUN_FAILED


def cmd_runs_logs(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    if not args.follow:
        out.stream.write(client.text(f"/api/v1/runs/{args.run}/logs", tail=args.tail))
        return EXIT_OK
    follower = LogFollower(client, args.run, out.stream)
    while True:
        run = client.get(f"/api/v1/runs/{args.run}")
        follower.poll(tail=args.tail)
        if run["status"] in TERMINAL:
            follower.poll()
            return EXIT_OK if run["status"] == "success" else EXIT_RUN_FAILED
        time.sleep(1.0)


def cmd_runs_cancel(args: argparse.Namespace, out: Output) -> int:
    run = _client(args).post(f"/api/v1/runs/{args.run}/cancel")
    if out.as_json:
        out.document(run)
    else:
        print(f"{run['id']} {out.status(run['status'])}", file=out.stream)
    return EXIT_OK


def cmd_runs_rerun(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    body = {"command_override": args.command} if args.command else {}
    run = client.post(f"/api/v1/runs/{args.run}/rerun", body)
    if not (args.wait or args.follow):
        if out.as_json:
            out.document(run)
        else:
            print(run["id"], file=out.stream)
        return EXIT_OK
    return wait_for_run(client, run["id"], args, out)


class LogFollower:
    """Prints what is new in a run's log since the last poll."""

    def __init__(self, client: RunyardClient, run_id: str, stream: TextIO) -> None:
        self._client, self._run_id, self._stream = client, run_id, stream
        self._printed = ""

    def poll(self, tail: int | None = None) -> None:
        text = self._client.text(f"/api/v1/runs/{self._run_id}/logs")
        if not self._printed and tail is not None:
            text_lines = text.splitlines(keepends=True)
            self._stream.write("".join(text_lines[-tail:]) if tail else "")
            self._printed = text
            return
        if text.startswith(self._printed):
            self._stream.write(text[len(self._printed) :])
        elif text != self._printed:
            # The stored log was capped in the middle: say so and show its tail.
            self._stream.write("[runyard: the log was shortened; showing its end]\n")
            self._stream.write("".join(text.splitlines(keepends=True)[-50:]))
        self._stream.flush()
        self._printed = text


def wait_for_run(client: RunyardClient, run_id: str, args: argparse.Namespace, out: Output) -> int:
    started = time.monotonic()
    follower = (
        LogFollower(client, run_id, out.err if out.as_json else out.stream)
        if (args.follow)
        else None
    )
    delay = 0.5
    run: dict[str, Any] = {}
    try:
        while True:
            run = client.get(f"/api/v1/runs/{run_id}")
            elapsed = time.monotonic() - started
            if follower:
                follower.poll()
            else:
                out.progress(f"{run_id} {run['status']} {_elapsed(elapsed)}")
            if run["status"] in TERMINAL:
                break
            if args.timeout is not None and elapsed >= args.timeout:
                out.progress(
                    f"{run_id} still {run['status']} after {args.timeout:g} s "
                    "(--timeout); the run goes on",
                    final=True,
                )
                if out.as_json:
                    out.document(run)
                return EXIT_RUN_FAILED
            time.sleep(delay)
            delay = min(2.0, delay * 1.5)
    except KeyboardInterrupt:
        return _interrupted(client, run_id, args, out)
    out.progress(
        f"{run_id} {out.status(run['status'])} in {_elapsed(time.monotonic() - started)}",
        final=True,
    )
    if out.as_json:
        out.document(run)
    else:
        _print_run(run, out)
    if run["status"] != "success":
        if args.logs_on_failure and not follower:
            print("--- logs (last 200 lines) ---", file=out.err)
            out.err.write(client.text(f"/api/v1/runs/{run_id}/logs", tail=200))
        return EXIT_RUN_FAILED
    return EXIT_OK


def _interrupted(client: RunyardClient, run_id: str, args: argparse.Namespace, out: Output) -> int:
    cancel = args.cancel_on_interrupt
    if not cancel and sys.stdin.isatty():
        out.progress("", final=False)
        try:
            answer = input(f"\nCancel run {run_id}? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        cancel = answer.strip().lower() in ("y", "yes")
    if cancel:
        try:
            client.post(f"/api/v1/runs/{run_id}/cancel")
            print(f"cancelled {run_id}", file=out.err)
        except ApiError as exc:
            print(f"runyard: could not cancel {run_id}: {exc}", file=out.err)
        return EXIT_RUN_FAILED
    print(f"stopped waiting; run {run_id} goes on", file=out.err)
    return EXIT_INTERRUPTED


def _print_run(run: dict[str, Any], out: Output) -> None:
    duration = run.get("duration_seconds")
    lines = [
        f"run       {run['id']} ({run['triggered_by']})",
        f"status    {out.status(run['status'])}"
        + (f" (exit code {run['exit_code']})" if run.get("exit_code") is not None else ""),
        f"command   {run['command']}",
        f"duration  {duration:.1f} s" if duration is not None else "duration  -",
    ]
    if run.get("error"):
        lines.append(f"error     {run['error']}")
    failed = [r for r in run.get("results", []) if r["status"] in ("error", "fail", "failed")]
    for node in failed[:10]:
        lines.append(f"  failed  {node['name']}: {(node.get('message') or '')[:300]}")
    print("\n".join(lines), file=out.stream)


def add_client_commands(sub: Any) -> None:
    """Register projects / jobs / runs on the top-level parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="runyard server (RUNYARD_URL, default http://127.0.0.1:8080)")
    common.add_argument("--token", help="API token (RUNYARD_TOKEN)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="wait until the run ends")
    waiting.add_argument("--follow", action="store_true", help="wait and stream the logs")
    waiting.add_argument("--timeout", type=float, help="stop waiting after SECONDS (exit 1)")
    waiting.add_argument(
        "--logs-on-failure",
        action="store_true",
        help="print the log's last 200 lines if the run fails",
    )
    waiting.add_argument(
        "--cancel-on-interrupt", action="store_true", help="cancel the run on Ctrl-C without asking"
    )
    waiting.add_argument("--command", help="command override for this run only")

    projects = sub.add_parser("projects", help="list projects (client)")
    psub = projects.add_subparsers(dest="projects_command", metavar="ACTION", required=True)
    psub.add_parser("list", parents=[common], help="list projects").set_defaults(
        client_func=cmd_projects_list
    )

    jobs = sub.add_parser("jobs", help="list and trigger jobs (client)")
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    jlist = jsub.add_parser("list", parents=[common], help="list a project's jobs")
    jlist.add_argument("project", help="project id or name")
    jlist.set_defaults(client_func=cmd_jobs_list)
    trigger = jsub.add_parser("trigger", parents=[common, waiting], help="start a run")
    trigger.add_argument("project", help="project id or name")
    trigger.add_argument("job", help="job id or name")
    trigger.add_argument("--idempotency-key", help="the same key within 24 h returns the same run")
    trigger.set_defaults(client_func=cmd_jobs_trigger)

    runs = sub.add_parser("runs", help="show, follow, cancel and rerun runs (client)")
    rsub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    show = rsub.add_parser("show", parents=[common], help="a run record")
    show.add_argument("run")
    show.set_defaults(client_func=cmd_runs_show)
    logs = rsub.add_parser("logs", parents=[common], help="a run's logs")
    logs.add_argument("run")
    logs.add_argument("--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--tail", type=int, help="only the last N lines")
    logs.set_defaults(client_func=cmd_runs_logs)
    cancel = rsub.add_parser("cancel", parents=[common], help="cancel a pending or running run")
    cancel.add_argument("run")
    cancel.set_defaults(client_func=cmd_runs_cancel)
    rerun = rsub.add_parser("rerun", parents=[common, waiting], help="run again from a snapshot")
    rerun.add_argument("run")
    rerun.set_defaults(client_func=cmd_runs_rerun)


def run_client_command(args: argparse.Namespace) -> int:
    out = Output(getattr(args, "json", False))
    try:
        result: int = args.client_func(args, out)
        return result
    except ApiError as exc:
        print(f"runyard: {exc}", file=sys.stderr)
        return EXIT_REFUSED
