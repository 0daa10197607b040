"""runyard's launcher: runs a dbt command in a run's pod, then uploads its artifacts.

It runs inside the user's image, which has Python but not runyard, so this file is
standalone: Python 3.8+ and the standard library only, nothing imported from runyard.
An init container from runyard's own image copies it into a shared emptyDir
(``python -m app.executors.k8s.launcher --install /runyard/bin/launcher.py``), and the main
container runs ``python3 /runyard/bin/launcher.py -- <argv>`` (docs/artifacts.md).

What it does:

0. when ``$RUNYARD_STATE_URL`` is set (a retry, a run of a deferring job), downloads each
   file named in ``$RUNYARD_STATE_FILES`` from ``$RUNYARD_STATE_URL/<name>`` with the same
   credential into ``$RUNYARD_STATE_DIR`` (``/runyard/state``), where dbt's ``--state``
   points; if it cannot, it says why and exits 2 without starting the command (dbt would
   fail without its state, or worse, build everything);
1. runs ``argv`` (no shell), forwarding SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
   SIGUSR2 to it, and exits with its exit code (128 + N when a signal N ended it), so
   Kubernetes' podFailurePolicy sees the command's own code;
2. then, for each artifact name runyard keeps, uploads ``<dir>/<name>`` when it is a
   regular file (a symlink is not followed) modified since the command started, to
   ``$RUNYARD_ARTIFACT_URL/<name>`` with ``Authorization: Bearer $RUNYARD_ARTIFACT_TOKEN``,
   streamed from the file (``{job}`` in the URL: the pod's Kubernetes Job name, from
   ``$RUNYARD_K8S_JOB_NAME``, for a scheduled run). ``$RUNYARD_ARTIFACT_DIR`` (else
   ``$DBT_TARGET_PATH``, else ``target``) is the folder.

Steps (``launcher.py --steps``, docs/steps.md): ``$RUNYARD_STEPS`` is a JSON list of
``{"name", "argv", "run_on_failure", "results"}``. The steps run in order, each as in 1.;
a step that fails fails the run (the launcher exits with its code) and the later steps
are skipped unless ``run_on_failure``. Before and after each step a marker line
(``STEP_MARKER`` + JSON) goes to standard output, which runyard reads back from the pod's
log for the run's step records. A signal that stops a step stops the sequence. After
each step its artifacts are uploaded (run_results.json only from a step that runs nodes,
``results``, and not after a failed step's was uploaded: runyard keeps the failure).

An upload that fails is reported on standard error and never changes the exit code: the
run's outcome is the command's. Uploads are retried briefly and bounded in time, since
the pod's deadline is still counting.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the launcher runs on Python 3.8
    from collections.abc import Callable

# Keep in step with app/store/artifacts.py ARTIFACT_NAMES (a unit test compares them).
ARTIFACT_NAMES = (
    "run_results.json",
    "manifest.json",
    "sources.json",
    "catalog.json",
    "semantic_manifest.json",
)
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
UPLOAD_DEADLINE_SECONDS = 120.0
ATTEMPTS = 3
BLOCK = 1 << 16


def say(message: str) -> None:
    sys.stderr.write("runyard launcher: " + message + "\n")
    sys.stderr.flush()


SIGNALLED: list[int] = []  # the stop signals received (a step sequence ends on one)


def run_command(argv: list[str]) -> int:
    """Run argv, forwarding signals; its exit code as a shell would report it."""
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        say(f"cannot start {argv[0]!r}: {exc.strerror or exc}")
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            SIGNALLED.append(signum)
        with contextlib.suppress(OSError):  # already gone
            child.send_signal(signum)

    for name in FORWARDED:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), forward)
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
    return 128 - code if code < 0 else code


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError("RUNYARD_ARTIFACT_URL has no host")
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    raise ValueError("RUNYARD_ARTIFACT_URL must be an http:// or https:// URL")


def upload_one(
    url: str, token: str, path: str, name: str, size: int, timeout: float
) -> tuple[int, str]:
    """POST the file; (status, short reason). Streams it: http.client sends a file body in
    blocks with the Content-Length given."""
    target = url.rstrip("/") + "/" + name
    parts = urllib.parse.urlsplit(target)
    connection = _connection(target, timeout)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as body:
            connection.request(
                "POST",
                parts.path,
                body=body,
                headers={
                    "Authorization": "Bearer " + token,
                    "Content-Type": "application/json",
                    "Content-Length": str(size),
                },
                encode_chunked=False,
            )
        response = connection.getresponse()
        text = response.read(2000).decode("utf-8", "replace")
        return response.status, text
    finally:
        connection.close()


def upload_artifacts(
    folder: str,
    url: str,
    token: str,
    started_at: float,
    deadline: float,
    skip: tuple[str, ...] = (),
) -> list[str]:
    """Upload this command's artifacts; the names uploaded."""
    uploaded: list[str] = []
    for name in ARTIFACT_NAMES:
        if name in skip:
            continue
        path = str(Path(folder) / name)
        try:
            found = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(found.st_mode):
            say(f"{name} is not a regular file; not uploaded")
            continue
        if found.st_mtime < started_at:
            continue  # an earlier command's file (dbt leaves it when it stops early)
        for attempt in range(1, ATTEMPTS + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                say(f"out of time; {name} not uploaded")
                return uploaded
            try:
                status, text = upload_one(url, token, path, name, found.st_size, min(left, 60))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                status, text = 0, str(exc)
            if 200 <= status < 300:
                uploaded.append(name)
                break
            retry = status == 0 or status >= 500 or status == 429
            say(
                "uploading {} failed ({}): {}".format(
                    name, status or "no answer", text.strip()[:300]
                )
            )
            if not retry or attempt == ATTEMPTS:
                break
            time.sleep(min(2.0 * attempt, max(0.0, deadline - time.monotonic())))
    return uploaded


STATE_DEADLINE_SECONDS = 120.0
DEFAULT_STATE_DIR = "/runyard/state"


def download_one(url: str, token: str, path: str, timeout: float) -> tuple[int, str, float]:
    """GET url into path (a new file, streamed); (status, short reason, seconds to wait
    before asking again when the server said so)."""
    parts = urllib.parse.urlsplit(url)
    connection = _connection(url, timeout)
    try:
        connection.request("GET", parts.path, headers={"Authorization": "Bearer " + token})
        response = connection.getresponse()
        if response.status != 200:
            text = response.read(2000).decode("utf-8", "replace")
            after = response.getheader("Retry-After") or ""
            return response.status, text, float(after) if after.isdigit() else 0.0
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
            while True:
                block = response.read(BLOCK)
                if not block:
                    break
                out.write(block)
        return 200, "", 0.0
    finally:
        connection.close()


def fetch_state(url: str, token: str, names: list[str], folder: str, deadline: float) -> str:
    """Download the run's state files into folder; "" when all arrived, else why not."""
    try:
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {folder}: {exc.strerror or exc}"
    for name in names:
        if name not in ARTIFACT_NAMES:
            return f"{name[:80]!r} is not a state file runyard serves"
        path = Path(folder) / name
        part = Path(str(path) + ".part")
        attempt = 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                return "out of time fetching " + name
            try:
                status, text, wait = download_one(
                    url.rstrip("/") + "/" + name, token, str(part), min(left, 60)
                )
            except (OSError, http.client.HTTPException, ValueError) as exc:
                status, text, wait = 0, str(exc), 0.0
            if status == 200:
                part.replace(path)
                break
            with contextlib.suppress(OSError):
                part.unlink()
            reason = f"{name} ({status or 'no answer'}): {text.strip()[:300]}"
            # 503: runyard has not seen this pod's Job yet (a scheduled run); 5xx, 429 and
            # no answer may pass. Anything else (401, 404, 409) will not.
            if not (status == 0 or status >= 500 or status == 429):
                return reason
            say("fetching state " + reason + "; trying again")
            time.sleep(max(0.0, min(wait or 2.0 * min(attempt, 5), deadline - time.monotonic())))
    return ""


def install(destination: str) -> int:
    """Copy this file to ``destination`` (the init container's job), readable by any uid."""
    temporary = Path(destination + ".part")
    shutil.copyfile(__file__, temporary)
    # The main container may run as another uid: readable by all (it holds no secret).
    temporary.chmod(0o444)
    temporary.replace(destination)
    return 0


def with_job(url: str) -> str:
    """``{job}`` in a URL: the pod's Kubernetes Job name (a scheduled run's pod, whose run
    runyard knows by its Job); "" when the pod does not know it."""
    if "{job}" not in url:
        return url
    job = os.environ.get("RUNYARD_K8S_JOB_NAME", "")
    if not job:
        say("RUNYARD_K8S_JOB_NAME is not set; cannot reach runyard for this run")
        return ""
    return url.replace("{job}", urllib.parse.quote(job, safe=""))


# --- steps ---------------------------------------------------------------------------------

# Keep in step with app/executors/k8s/tracking/steps.py STEP_MARKER (a unit test compares).
STEP_MARKER = "::runyard-step:: "
MAX_STEPS = 50


def marker(**fields: object) -> None:
    """A marker line on standard output, where the steps' own output goes too."""
    sys.stdout.write(STEP_MARKER + json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


def load_steps(text: str) -> list[dict[str, object]]:
    """The steps from ``$RUNYARD_STEPS``; ValueError when they are not what runyard
    writes (the variable is runyard's, but the pod's spec is readable and editable by
    whoever may edit the org's Jobs)."""
    steps = json.loads(text)
    if not isinstance(steps, list) or not 0 < len(steps) <= MAX_STEPS:
        raise ValueError(f"RUNYARD_STEPS must be a list of 1 to {MAX_STEPS} steps")
    for step in steps:
        argv = step.get("argv") if isinstance(step, dict) else None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("each step needs argv, a non-empty list of strings")
        if not isinstance(step.get("name", ""), str):
            raise ValueError("a step's name is text")
    return steps


def run_steps(
    steps: list[dict[str, object]],
    upload: Callable[[float, tuple[str, ...]], list[str]] | None = None,
) -> int:
    """Run the steps in order (see the module's docstring); the run's exit code: the
    first failed step's, else 0. ``upload(started_at, skip)`` keeps a step's artifacts."""
    total = len(steps)
    failed_code = 0
    kept_failed_results = False
    for index, step in enumerate(steps):
        argv = [str(a) for a in step["argv"]]  # type: ignore[attr-defined]  # load_steps checked
        if SIGNALLED or (failed_code and not step.get("run_on_failure")):
            marker(event="skip", index=index)
            continue
        name = str(step.get("name") or " ".join(argv[:2]))
        marker(event="start", index=index)
        sys.stdout.write(f"== step {index + 1}/{total}: {name} ==\n")
        started_at, started = time.time(), time.monotonic()
        code = run_command(argv)
        seconds = round(time.monotonic() - started, 3)
        marker(event="end", index=index, exit_code=code, seconds=seconds)
        if code != 0 and not failed_code:
            failed_code = code
        if upload is not None:
            results = bool(step.get("results")) and not kept_failed_results
            uploaded = upload(started_at, () if results else ("run_results.json",))
            if code != 0 and "run_results.json" in uploaded:
                kept_failed_results = True
    return failed_code


def main(args: list[str]) -> int:
    if len(args) == 2 and args[0] == "--install":
        return install(args[1])
    if args == ["--steps"]:
        return main_steps()
    if not args or args[0] != "--" or len(args) < 2:
        say("usage: launcher.py -- COMMAND [ARG...]   or   launcher.py --install PATH")
        return 2
    argv = args[1:]
    token = os.environ.get("RUNYARD_ARTIFACT_TOKEN", "")
    state_url = with_job(os.environ.get("RUNYARD_STATE_URL", ""))
    if os.environ.get("RUNYARD_STATE_URL"):
        names = [n for n in os.environ.get("RUNYARD_STATE_FILES", "").split(",") if n]
        folder = os.environ.get("RUNYARD_STATE_DIR") or DEFAULT_STATE_DIR
        deadline = time.monotonic() + STATE_DEADLINE_SECONDS
        if not state_url or not token:
            failure = "no state URL or credential"
        else:
            failure = fetch_state(state_url, token, names, folder, deadline)
        if failure:
            say("cannot fetch the run's dbt state, so dbt was not started: " + failure)
            return 2
        say("state fetched: " + ", ".join(names))
    started_at = time.time()
    code = run_command(argv)
    url = with_job(os.environ.get("RUNYARD_ARTIFACT_URL", ""))
    if url and token:
        folder = (
            os.environ.get("RUNYARD_ARTIFACT_DIR") or os.environ.get("DBT_TARGET_PATH") or "target"
        )
        deadline = time.monotonic() + UPLOAD_DEADLINE_SECONDS
        uploaded = upload_artifacts(folder, url, token, started_at, deadline)
        say("artifacts uploaded: " + (", ".join(uploaded) if uploaded else "none"))
    return code


def main_steps() -> int:
    try:
        steps = load_steps(os.environ.get("RUNYARD_STEPS", ""))
    except (ValueError, AttributeError) as exc:
        say("cannot read the run's steps (RUNYARD_STEPS): " + str(exc)[:300])
        return 2
    token = os.environ.get("RUNYARD_ARTIFACT_TOKEN", "")
    url = with_job(os.environ.get("RUNYARD_ARTIFACT_URL", ""))
    folder = os.environ.get("RUNYARD_ARTIFACT_DIR") or os.environ.get("DBT_TARGET_PATH") or "target"

    def upload(started_at: float, skip: tuple[str, ...]) -> list[str]:
        if not (url and token):
            return []
        deadline = time.monotonic() + UPLOAD_DEADLINE_SECONDS
        uploaded = upload_artifacts(folder, url, token, started_at, deadline, skip)
        say("artifacts uploaded: " + (", ".join(uploaded) if uploaded else "none"))
        return uploaded

    return run_steps(steps, upload)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
