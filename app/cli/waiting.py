"""Waiting on a run: the server's long-poll (``/runs/{id}/wait``) for --wait, its event
stream (``/runs/{id}/events``) for --follow; on a server without them, polling the run.

Exit codes: 0 the run succeeded, 1 it did not (or --timeout ran out), 130 interrupted.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from typing import Any, TextIO

import click

from app.cli.http import ApiError, RunyardClient
from app.cli.output import Output, Progress
from app.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED
from app.models import TERMINAL_STATUSES as TERMINAL

LONG_POLL_SECONDS = 30  # the server accepts 1-60
QUIET_SECONDS = 60.0  # no event for this long on --follow: reconnect


class Options:
    def __init__(
        self,
        *,
        follow: bool = False,
        timeout: float | None = None,
        logs_on_failure: bool = False,
        cancel_on_interrupt: bool = False,
    ) -> None:
        self.follow = follow
        self.timeout = timeout
        self.logs_on_failure = logs_on_failure
        self.cancel_on_interrupt = cancel_on_interrupt


class _Missing(Exception):
    """The server has no such endpoint (an older runyard): fall back to polling."""


def _endpoint_missing(client: RunyardClient, run_id: str, exc: ApiError) -> bool:
    """A 404 or 405 on /wait or /events while the run itself exists: the endpoint is what is
    missing, not the run."""
    if exc.status not in (404, 405):
        return False
    client.get(f"/api/v1/runs/{run_id}")  # raises the run's own 404 if it is the run
    return True


class Waiter:
    def __init__(self, client: RunyardClient, run_id: str, opts: Options, out: Output) -> None:
        self.client, self.run_id, self.opts, self.out = client, run_id, opts, out
        self.started = time.monotonic()
        self.log_stream: TextIO = out.err if out.as_json else out.stream
        self.skip_log = 0  # characters of the log already printed (runs logs --tail)

    def remaining(self) -> float | None:
        if self.opts.timeout is None:
            return None
        return self.opts.timeout - (time.monotonic() - self.started)

    def elapsed(self) -> str:
        minutes, secs = divmod(int(time.monotonic() - self.started), 60)
        return f"{minutes:02d}:{secs:02d}"

    # --- the three ways ---------------------------------------------------------------------

    def long_poll(self, progress: Any) -> dict[str, Any]:
        """Until the run is terminal or --timeout passes; one request per 30 s of waiting."""
        while True:
            left = self.remaining()
            if left is not None and left < 1:
                time.sleep(max(0.0, left))  # too short for the long-poll's whole seconds
                run: dict[str, Any] = self.client.get(f"/api/v1/runs/{self.run_id}")
                return run
            seconds = LONG_POLL_SECONDS if left is None else min(LONG_POLL_SECONDS, int(left))
            try:
                run = self._wait_request(seconds)
            except ApiError as exc:
                if _endpoint_missing(self.client, self.run_id, exc):
                    raise _Missing from None
                raise
            progress.update(f"{self.run_id} {run['status']}")
            if run["status"] in TERMINAL:
                return run
            left = self.remaining()
            if left is not None and left <= 0:
                return run

    def _wait_request(self, seconds: int) -> dict[str, Any]:
        response = self.client.request(
            "GET",
            f"/api/v1/runs/{self.run_id}/wait",
            params={"timeout": seconds},
            timeout=seconds + 15,
        )
        run: dict[str, Any] = response.json()
        return run

    def stream(self, progress: Any) -> dict[str, Any]:
        """The run's log as it is written, until its end event (or --timeout).

        Each connection starts with the whole log so far, so a reconnection skips what was
        printed. The stream has no keep-alives: a run quiet for QUIET_SECONDS, or a dropped
        connection, means connecting again (after checking the run is still going)."""
        shown = self.skip_log  # characters of the log printed (or skipped on purpose)
        while True:
            self.skip_log, received, again = shown, 0, False
            try:
                for event, data in self.client.events(
                    f"/api/v1/runs/{self.run_id}/events", self._read_timeout()
                ):
                    if event == "log" and isinstance(data, dict):
                        text = str(data.get("text", ""))
                        received += len(text)
                        cut = min(len(text), self.skip_log)
                        self.skip_log -= cut
                        self.log_stream.write(text[cut:])
                        self.log_stream.flush()
                    elif event in ("status", "end") and isinstance(data, dict):
                        progress.update(f"{self.run_id} {data['status']}")
                        if event == "end":
                            return data
                    elif event in ("timeout", "error"):  # quiet, or dropped for slowness
                        again = True
                    left = self.remaining()
                    if left is not None and left <= 0:
                        break
            except ApiError as exc:
                if _endpoint_missing(self.client, self.run_id, exc):
                    raise _Missing from None
                raise
            shown = max(shown, received)
            # Closed early (a restarting server), quiet, or --timeout passed: ask the run.
            current: dict[str, Any] = self.client.get(f"/api/v1/runs/{self.run_id}")
            left = self.remaining()
            if current["status"] in TERMINAL or (left is not None and left <= 0):
                return current
            if not again:
                time.sleep(0.5)  # the server closed the stream: do not hammer a restart

    def _read_timeout(self) -> float:
        left = self.remaining()
        return QUIET_SECONDS if left is None else max(0.5, min(QUIET_SECONDS, left + 0.5))

    def poll(self, progress: Any) -> dict[str, Any]:
        """For a server without /wait and /events: the run every 0.5 s to 2 s."""
        follower = None
        if self.opts.follow:
            follower = LogFollower(self.client, self.run_id, self.log_stream)
            if self.skip_log:
                follower.printed = self.client.text(f"/api/v1/runs/{self.run_id}/logs")
        delay = 0.5
        while True:
            run: dict[str, Any] = self.client.get(f"/api/v1/runs/{self.run_id}")
            if follower:
                follower.poll()
            progress.update(f"{self.run_id} {run['status']}")
            left = self.remaining()
            if run["status"] in TERMINAL or (left is not None and left <= 0):
                return run
            time.sleep(delay if left is None else max(0.05, min(delay, left)))
            delay = min(2.0, delay * 1.5)


def wait_for_run(client: RunyardClient, run_id: str, opts: Options, out: Output) -> int:
    waiter = Waiter(client, run_id, opts, out)
    try:
        # With --follow the log is the progress: a live line would interleave with it.
        live = nullcontext(Progress(None)) if opts.follow else out.progress(f"{run_id} waiting")
        with live as progress:
            try:
                run = waiter.stream(progress) if opts.follow else waiter.long_poll(progress)
            except _Missing:
                run = waiter.poll(progress)
    except KeyboardInterrupt:
        return _interrupted(client, run_id, opts, out)
    if run["status"] not in TERMINAL:
        out.note(
            f"{run_id} still {run['status']} after {opts.timeout:g} s (--timeout); the run goes on"
        )
        if out.as_json:
            out.document(run)
        return EXIT_RUN_FAILED
    out.note(f"{run_id} {run['status']} in {waiter.elapsed()}")
    if out.as_json:
        out.document(run)
    else:
        print_run(run, out)
    if run["status"] != "success":
        if opts.logs_on_failure and not opts.follow:
            out.note("--- logs (last 200 lines) ---")
            out.err.write(client.text(f"/api/v1/runs/{run_id}/logs", tail=200))
        return EXIT_RUN_FAILED
    return EXIT_OK


def _interrupted(client: RunyardClient, run_id: str, opts: Options, out: Output) -> int:
    cancel = opts.cancel_on_interrupt
    if not cancel and sys.stdin.isatty():
        try:
            cancel = click.confirm(f"\nCancel run {run_id}?", default=False, err=True)
        except (EOFError, KeyboardInterrupt, click.Abort):
            cancel = False
    if cancel:
        try:
            client.post(f"/api/v1/runs/{run_id}/cancel")
            out.note(f"cancelled {run_id}")
        except ApiError as exc:
            out.note(f"runyard: could not cancel {run_id}: {exc}")
        return EXIT_RUN_FAILED
    out.note(f"stopped waiting; run {run_id} goes on")
    return EXIT_INTERRUPTED


class LogFollower:
    """Prints what is new in a run's log since the last poll (servers without /events)."""

    def __init__(self, client: RunyardClient, run_id: str, stream: TextIO) -> None:
        self._client, self._run_id, self._stream = client, run_id, stream
        self.printed = ""

    def poll(self, tail: int | None = None) -> None:
        text = self._client.text(f"/api/v1/runs/{self._run_id}/logs")
        if not self.printed and tail is not None:
            self._stream.write("".join(text.splitlines(keepends=True)[-tail:]) if tail else "")
            self.printed = text
            return
        if text.startswith(self.printed):
            self._stream.write(text[len(self.printed) :])
        elif text != self.printed:
            # The stored log was capped in the middle: say so and show its tail.
            self._stream.write("[runyard: the log was shortened; showing its end]\n")
            self._stream.write("".join(text.splitlines(keepends=True)[-50:]))
        self._stream.flush()
        self.printed = text


def print_run(run: dict[str, Any], out: Output) -> None:
    duration = run.get("duration_seconds")
    exit_code = run.get("exit_code")
    pairs: list[tuple[str, Any]] = [
        ("run", f"{run['id']} ({run.get('triggered_by', '-')})"),
        ("job", f"{run.get('project_id', '-')} / {run.get('job_id', '-')}"),
        ("status", run["status"]),
        ("exit code", exit_code),
        ("command", run.get("command")),
        ("started", run.get("start_time")),
        ("duration", f"{duration:.1f} s" if duration is not None else None),
    ]
    if run.get("error"):
        pairs.append(("error", run["error"]))
    for step in run.get("steps") or []:  # a run of steps (docs/steps.md)
        took = step.get("duration_seconds")
        detail = f"{step['status']}" + (
            f", exit {step['exit_code']}" if step.get("exit_code") else ""
        )
        detail += f", {took:.1f} s" if took is not None else ""
        pairs.append((f"step {step['index'] + 1}", f"{step['name']} ({detail})"))
    failed = [r for r in run.get("results") or [] if r.get("status") in ("error", "fail", "failed")]
    for node in failed[:10]:
        pairs.append(("failed", f"{node['name']}: {(node.get('message') or '')[:300]}"))
    out.fields(pairs)
