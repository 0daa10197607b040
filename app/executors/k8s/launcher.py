"""runyard's launcher: runs a dbt command in a run's pod, then uploads its artifacts.

It runs inside the user's image, which has Python but not runyard, so this file is
standalone: Python 3.8+ and the standard library only, nothing imported from runyard.
An init container from runyard's own image copies it into a shared emptyDir
(``python -m app.executors.k8s.launcher --install /runyard/bin/launcher.py``), and the main
container runs ``python3 /runyard/bin/launcher.py -- <argv>`` (docs/artifacts.md).

What it does:

1. runs ``argv`` (no shell), forwarding SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and
   SIGUSR2 to it, and exits with its exit code (128 + N when a signal N ended it), so
   Kubernetes' podFailurePolicy sees the command's own code;
2. then, for each artifact name runyard keeps, uploads ``<dir>/<name>`` when it is a
   regular file (a symlink is not followed) modified since the command started, to
   ``$RUNYARD_ARTIFACT_URL/<name>`` with ``Authorization: Bearer $RUNYARD_ARTIFACT_TOKEN``,
   streamed from the file (``{job}`` in the URL: the pod's Kubernetes Job name, from
   ``$RUNYARD_K8S_JOB_NAME``, for a scheduled run). ``$RUNYARD_ARTIFACT_DIR`` (else
   ``$DBT_TARGET_PATH``, else ``target``) is the folder.

An upload that fails is reported on standard error and never changes the exit code: the
run's outcome is the command's. Uploads are retried briefly and bounded in time, since
the pod's deadline is still counting.
"""

from __future__ import annotations

import contextlib
import http.client
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


def run_command(argv: list[str]) -> int:
    """Run argv, forwarding signals; its exit code as a shell would report it."""
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        say(f"cannot start {argv[0]!r}: {exc.strerror or exc}")
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def forward(signum: int, _frame: FrameType | None) -> None:
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
    folder: str, url: str, token: str, started_at: float, deadline: float
) -> list[str]:
    """Upload this command's artifacts; the names uploaded."""
    uploaded: list[str] = []
    for name in ARTIFACT_NAMES:
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


def install(destination: str) -> int:
    """Copy this file to ``destination`` (the init container's job), readable by any uid."""
    temporary = Path(destination + ".part")
    shutil.copyfile(__file__, temporary)
    # The main container may run as another uid: readable by all (it holds no secret).
    temporary.chmod(0o444)
    temporary.replace(destination)
    return 0


def main(args: list[str]) -> int:
    if len(args) == 2 and args[0] == "--install":
        return install(args[1])
    if not args or args[0] != "--" or len(args) < 2:
        say("usage: launcher.py -- COMMAND [ARG...]   or   launcher.py --install PATH")
        return 2
    argv = args[1:]
    started_at = time.time()
    code = run_command(argv)
    url = os.environ.get("RUNYARD_ARTIFACT_URL", "")
    token = os.environ.get("RUNYARD_ARTIFACT_TOKEN", "")
    if "{job}" in url:
        # A scheduled run's pod: runyard knows its run by the pod's Kubernetes Job.
        job = os.environ.get("RUNYARD_K8S_JOB_NAME", "")
        url = url.replace("{job}", urllib.parse.quote(job, safe="")) if job else ""
        if not job:
            say("RUNYARD_K8S_JOB_NAME is not set; artifacts not uploaded")
    if url and token:
        folder = (
            os.environ.get("RUNYARD_ARTIFACT_DIR") or os.environ.get("DBT_TARGET_PATH") or "target"
        )
        deadline = time.monotonic() + UPLOAD_DEADLINE_SECONDS
        uploaded = upload_artifacts(folder, url, token, started_at, deadline)
        say("artifacts uploaded: " + (", ".join(uploaded) if uploaded else "none"))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
