"""dbt state for a local run: the artifacts of earlier runs, in a folder of the run's own,
passed to dbt as ``--state <folder>``.

* ``dbt retry`` reads ``<state>/run_results.json`` (dbt/task/retry.py: ``args.state or
  target_path``) and runs the nodes that failed or were skipped there.
* ``--defer --state <folder>`` reads ``<state>/manifest.json``: unselected references
  resolve to the deferred-to job's relations, and ``state:modified+`` compares against it.

A retry of a deferred run needs both; dbt retry then re-applies the original run's flags,
including its ``state`` path (the original run's folder, gone by now), so the copied
run_results.json is given this run's folder instead, and the flags the command policy
refuses are reset (``_sanitised``).

The folder is ``<spool>/<run>.state`` (0700), beside the run's other private folders; the
sandbox lets the run reach it and it goes when the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from app.models import RETRYABLE_DBT_COMMANDS, RunState

Read = Callable[[str, str], bytes | None]  # (run id, artifact name) -> content


class StateUnavailable(Exception):
    """An artifact the run needs is no longer stored (retention removed its run)."""


def _write(folder: Path, name: str, content: bytes) -> None:
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


# dbt retry re-applies the flags recorded in run_results.json's ``args``. That file was
# written by the run (project code can write it too, and a pod uploads what it likes), so
# it is not trusted to repeat only what the command policy allowed: the flags the policy
# refuses are reset to their safe values, and paths runyard decides are dropped.
_SAFE_VALUES = {
    "send_anonymous_usage_stats": False,
    "upload_to_artifacts_ingest_api": False,
    "macro_debugging": False,
    "write_json": True,
}
_DROPPED = frozenset(
    {
        "partial_parse_file_path",
        "record_timing_info",
        "inline",
        "inline_direct",
        "log_path",
        "target_path",
        "project_dir",
        "profiles_dir",
        "defer_state",
        "output_path",
    }
)


def _sanitised(raw: bytes, folder: Path) -> bytes:
    """run_results.json as dbt retry may read it: refused flags reset, runyard's paths
    dropped, a recorded ``--state`` (the original run's folder) pointed at ``folder``."""
    try:
        document: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise StateUnavailable("the run's run_results.json is not JSON") from None
    args = document.get("args") if isinstance(document, dict) else None
    if not isinstance(args, dict) or args.get("which") not in RETRYABLE_DBT_COMMANDS:
        raise StateUnavailable(
            "the run's run_results.json does not record a command dbt retry may repeat ("
            + ", ".join(sorted(RETRYABLE_DBT_COMMANDS))
            + ")"
        )
    for name in _DROPPED:
        args.pop(name, None)
    args.update(_SAFE_VALUES)
    if args.get("state"):
        args["state"] = str(folder)
    return msgspec.json.encode(document)


def place_state(state: RunState, folder: Path, read: Read) -> list[str]:
    """Write what ``state`` names into ``folder`` (made 0700, must not exist); the dbt
    arguments that point at it."""
    folder.mkdir(mode=0o700)
    args = ["--state", str(folder)]
    if state.defer_run_id:
        manifest = read(state.defer_run_id, "manifest.json")
        if manifest is None:
            raise StateUnavailable(
                f"the manifest.json of run {state.defer_run_id} (the deferred-to job's "
                "latest success) is no longer stored; run that job again"
            )
        _write(folder, "manifest.json", manifest)
    if state.retry_run_id:
        results = read(state.retry_run_id, "run_results.json")
        if results is None:
            raise StateUnavailable(
                f"the run_results.json of run {state.retry_run_id} is no longer stored, so "
                "there is nothing to retry from; rerun that run instead"
            )
        _write(folder, "run_results.json", _sanitised(results, folder))
        # dbt retry re-applies the original flags (--defer among them): no --defer here.
        return args
    return ["--defer", *args]
