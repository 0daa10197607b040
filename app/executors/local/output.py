"""What the local executor keeps from a run's output to report its results.

Parsing is ``app.engines.results``; this module decides what to feed it without holding a
whole (possibly huge) output in memory:

* dbt: stdout stays text for people to read; dbt also writes its JSON event log
  (``DBT_LOG_FORMAT_FILE=json``) into a directory of the run's own (``DBT_LOG_PATH``), so
  concurrent runs of one project never share a log file. At the end, the results come from
  ``target/run_results.json`` when its invocation id is the run's (every node, with
  timings), else from the JSON log, else from what stdout shows (text or JSON).
* SQLMesh reports failures only as text: the end of stdout is parsed.

When a run ends, ``collect_artifacts`` keeps the dbt artifacts it wrote (docs/artifacts.md).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from collections import deque
from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path

from app.engines.results import (
    SUMMARY_TAIL_LINES,
    dbt_invocation_id,
    parse_dbt_log,
    parse_dbt_output,
    parse_sqlmesh_output,
    read_dbt_run_results,
    summarise_failure,
)
from app.models import NodeSummary, ProjectKind, RunStatus
from app.store import Store
from app.store.artifacts import ARTIFACT_NAMES, ArtifactTooLarge, NotJson, check_json_object

log = logging.getLogger("runyard.executors.local")

TAIL_BYTES = 256 * 1024  # enough for dbt's and SQLMesh's end-of-run failure summaries


class OutputCollector:
    """Fed the output of one attempt as it is read; summarises it when the attempt ends."""

    def __init__(self, kind: ProjectKind, cwd: Path, dbt_log_dir: Path) -> None:
        self._kind = kind
        self._cwd = cwd
        self._dbt_log_dir = dbt_log_dir
        self._tail: deque[str] = deque()
        self._tail_bytes = 0
        self._partial = ""

    def reset(self) -> None:
        """A new attempt: forget the previous one's output and dbt log."""
        self._tail.clear()
        self._tail_bytes = 0
        self._partial = ""
        shutil.rmtree(self._dbt_log_dir, ignore_errors=True)

    def feed(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._tail.append(line)
            self._tail_bytes += len(line) + 1
            while self._tail_bytes > TAIL_BYTES and len(self._tail) > 1:
                self._tail_bytes -= len(self._tail.popleft()) + 1

    def tail(self, lines: int | None = None) -> str:
        kept = list(self._tail) + ([self._partial] if self._partial else [])
        if lines is not None:
            kept = kept[-lines:]
        return "\n".join(kept)

    def results(self) -> list[NodeSummary]:
        if self._kind == "sqlmesh":
            return parse_sqlmesh_output(self.tail())
        log_file = self._dbt_log_dir / "dbt.log"
        invocation = dbt_invocation_id(_lines(log_file)) if log_file.is_file() else None
        if invocation is not None:
            found = read_dbt_run_results(self._cwd, invocation) if self._own_run_results() else None
            if found is not None:
                return _with_messages(found, parse_dbt_log(_lines(log_file)))
            return parse_dbt_log(_lines(log_file))
        return parse_dbt_output(self.tail())  # no JSON log (e.g. --log-path): stdout

    def _own_run_results(self) -> bool:
        """Whether ``target/run_results.json`` is a file of the project itself: the run
        writes that folder, and runyard, which is not confined, must not follow a symlink
        it planted to another project's results."""
        path = self._cwd / "target" / "run_results.json"
        try:
            return not path.is_symlink() and path.resolve().is_relative_to(self._cwd.resolve())
        except (OSError, RuntimeError):
            return False

    def summary(
        self, status: RunStatus, exit_code: int | None
    ) -> tuple[list[NodeSummary], str | None]:
        """The node results to keep with the run and, for a failure, a one-line error that
        names the failed models, tests or audits."""
        results = self.results()
        error = None
        if status == "failed":
            error = (
                summarise_failure(self._kind, results, exit_code, self.tail(SUMMARY_TAIL_LINES))
                or None
            )
        return results, error

    def invocation_id(self) -> str | None:
        """The invocation id of the dbt command this attempt ran (from its JSON log)."""
        if self._kind != "dbt":
            return None
        log_file = self._dbt_log_dir / "dbt.log"
        return dbt_invocation_id(_lines(log_file)) if log_file.is_file() else None

    def close(self) -> None:
        shutil.rmtree(self._dbt_log_dir, ignore_errors=True)


# dbt writes "metadata" first, and "invocation_id" within its first few hundred bytes.
_HEAD_BYTES = 64 * 1024
_INVOCATION_RE = re.compile(rb'"invocation_id"\s*:\s*"([^"\\]{1,200})"')


def collect_artifacts(
    store: Store,
    run_id: str,
    cwd: Path,
    *,
    started_at: datetime,
    invocation_id: str | None,
    file_limit: int,
    run_limit: int,
    skip: Collection[str] = (),
) -> list[str]:
    """Keep the artifacts dbt wrote to ``<cwd>/target`` during this run; the names kept.

    A file is this run's when it was modified after the run started and, where it names
    its dbt invocation, that invocation is the run's: a compile error (exit 2) leaves the
    previous run's run_results.json in place, and keeping it would credit this run with
    another's results. The folder is the project's, and the project may have planted
    symlinks (to another org's files, or runyard's key) for runyard, which reads
    unconfined: the folder and each file are opened with O_NOFOLLOW, and only regular
    files are read."""
    kept: list[str] = []
    try:
        dir_fd = os.open(cwd / "target", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return kept  # the command wrote no target folder
    budget = run_limit
    try:
        for name in ARTIFACT_NAMES:
            if name in skip:  # a step whose file the run does not keep (docs/steps.md)
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as file:
                found = os.fstat(fd)
                if not stat.S_ISREG(found.st_mode) or found.st_mtime < started_at.timestamp():
                    continue  # not a file, or left by an earlier run
                named = _INVOCATION_RE.search(file.read(_HEAD_BYTES))
                if invocation_id and named and named.group(1).decode() != invocation_id:
                    continue  # another dbt command's
                file.seek(0)
                try:
                    info = store.artifacts.put(
                        run_id,
                        name,
                        file,
                        limit_bytes=min(file_limit, budget),
                        check=check_json_object,
                    )
                except (ArtifactTooLarge, NotJson) as exc:
                    log.warning(
                        "a run artifact was not kept",
                        extra={"run_id": run_id, "artifact": name, "reason": str(exc)},
                    )
                    continue
                budget -= info.size
                kept.append(name)
    finally:
        os.close(dir_fd)
    return kept


def _lines(path: Path) -> Iterator[str]:
    """The lines of a file the run wrote; a symlink the run put in its place is not
    followed (runyard reads it unconfined)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    with open(fd, encoding="utf-8", errors="replace") as handle:  # noqa: PTH123 - an fd
        yield from handle


def _with_messages(results: list[NodeSummary], logged: list[NodeSummary]) -> list[NodeSummary]:
    """run_results.json lists every node; the JSON log can add a message it lacks."""
    messages = {r.unique_id: r.message for r in logged if r.message}
    return [
        r
        if r.message or r.unique_id not in messages
        else NodeSummary(
            unique_id=r.unique_id,
            name=r.name,
            resource_type=r.resource_type,
            status=r.status,
            execution_time=r.execution_time,
            message=messages[r.unique_id],
        )
        for r in results
    ]
