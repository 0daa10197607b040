"""dbt state for a run: which stored artifacts of earlier runs it starts with, and how
they are made safe to hand to dbt. Both executors use this: the local one writes the files
into a folder of the run's own, the Kubernetes one serves them to the run's pod, whose
launcher downloads them (docs/dbt.md).

* ``dbt retry`` reads ``<state>/run_results.json`` (dbt/task/retry.py: ``args.state or
  target_path``) and runs the nodes that failed or were skipped there.
* ``--defer --state <folder>`` reads ``<state>/manifest.json``: unselected references
  resolve to the deferred-to job's relations, and ``state:modified+`` compares against it.

A retry of a deferred run needs both; dbt retry then re-applies the original run's flags,
including its ``state`` path (the original run's folder, gone by now), so the copied
run_results.json is given this run's folder instead, and the flags the command policy
refuses are reset (``sanitised_run_results``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.models import RETRYABLE_DBT_COMMANDS, RunState

RUN_RESULTS = "run_results.json"
MANIFEST = "manifest.json"


class StateUnavailable(Exception):
    """An artifact the run needs is no longer stored (retention removed its run), or is
    not one dbt retry may read."""


def state_files(state: RunState) -> dict[str, str]:
    """The files a run's state folder holds: name -> the run whose stored copy it is."""
    files: dict[str, str] = {}
    if state.defer_run_id:
        files[MANIFEST] = state.defer_run_id
    if state.retry_run_id:
        files[RUN_RESULTS] = state.retry_run_id
    return files


def state_args(state: RunState, folder: str) -> list[str]:
    """The dbt arguments that point a run at its state folder."""
    if state.retry_run_id:
        # dbt retry re-applies the original flags (--defer among them): no --defer here.
        return ["--state", folder]
    return ["--defer", "--state", folder]


def missing_message(state: RunState, name: str) -> str:
    """Why a run cannot start when the stored copy of ``name`` is gone."""
    if name == MANIFEST:
        return (
            f"the manifest.json of run {state.defer_run_id} (the deferred-to job's latest "
            "success) is no longer stored; run that job again"
        )
    return (
        f"the run_results.json of run {state.retry_run_id} is no longer stored, so there is "
        "nothing to retry from; rerun that run instead"
    )


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


def sanitised_run_results(raw: bytes, folder: str) -> bytes:
    """run_results.json as dbt retry may read it: refused flags reset, runyard's paths
    dropped, a recorded ``--state`` (the original run's folder) pointed at ``folder``
    (where this run finds its state)."""
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
        args["state"] = folder
    return msgspec.json.encode(document)


def state_content(state: RunState, name: str, raw: bytes, folder: str) -> bytes:
    """What the state folder holds as ``name``, from the stored copy ``raw``."""
    return sanitised_run_results(raw, folder) if name == RUN_RESULTS else raw
