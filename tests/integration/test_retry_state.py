"""The state folder a local retry or deferred run starts with (app/executors/local/state.py):
what is placed, the arguments given to dbt, and a hostile run_results.json's flags."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from app.executors.local.state import StateUnavailable, place_state
from app.models import RunState

MANIFEST = b'{"metadata": {}, "nodes": {}}'


def _results(**args: object) -> bytes:
    document = {"metadata": {}, "results": [], "args": {"which": "build", **args}}
    return msgspec.json.encode(document)


def _store(files: dict[tuple[str, str], bytes]) -> object:
    return lambda run_id, name: files.get((run_id, name))


def test_a_retry_gets_the_run_results_and_only_state(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    read = _store({("run_a", "run_results.json"): _results(select=["tag:x"])})
    args = place_state(RunState(retry_run_id="run_a"), folder, read)  # type: ignore[arg-type]
    assert args == ["--state", str(folder)]
    placed = msgspec.json.decode((folder / "run_results.json").read_bytes())
    assert placed["args"]["select"] == ["tag:x"]
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_deferred_run_gets_the_manifest_and_defer(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    read = _store({("run_p", "manifest.json"): MANIFEST})
    args = place_state(RunState(defer_run_id="run_p"), folder, read)  # type: ignore[arg-type]
    assert args == ["--defer", "--state", str(folder)]
    assert (folder / "manifest.json").read_bytes() == MANIFEST


def test_a_retry_of_a_deferred_run_points_its_recorded_state_here(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    read = _store(
        {
            ("run_a", "run_results.json"): _results(defer=True, state="/gone/run_a.state"),
            ("run_p", "manifest.json"): MANIFEST,
        }
    )
    state = RunState(retry_run_id="run_a", defer_run_id="run_p")
    assert place_state(state, folder, read) == ["--state", str(folder)]  # type: ignore[arg-type]
    placed = msgspec.json.decode((folder / "run_results.json").read_bytes())
    assert placed["args"]["state"] == str(folder) and placed["args"]["defer"] is True
    assert (folder / "manifest.json").read_bytes() == MANIFEST


def test_flags_the_policy_refuses_are_reset_in_a_hostile_run_results(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    hostile = _results(
        send_anonymous_usage_stats=True,
        upload_to_artifacts_ingest_api=True,
        macro_debugging=True,
        write_json=False,
        partial_parse_file_path="/etc/shadow",
        log_path="/tmp/elsewhere",
        profiles_dir="/root",
    )
    read = _store({("run_a", "run_results.json"): hostile})
    place_state(RunState(retry_run_id="run_a"), folder, read)  # type: ignore[arg-type]
    args = msgspec.json.decode((folder / "run_results.json").read_bytes())["args"]
    assert args["send_anonymous_usage_stats"] is False
    assert args["upload_to_artifacts_ingest_api"] is False
    assert args["macro_debugging"] is False and args["write_json"] is True
    assert not {"partial_parse_file_path", "log_path", "profiles_dir"} & set(args)


@pytest.mark.parametrize("which", ["run-operation", "clone", "generate", None])
def test_commands_retry_does_not_repeat_are_refused(tmp_path: Path, which: str | None) -> None:
    read = _store({("run_a", "run_results.json"): _results(which=which)})
    with pytest.raises(StateUnavailable, match="does not record a command"):
        place_state(RunState(retry_run_id="run_a"), tmp_path / "s", read)  # type: ignore[arg-type]


def test_a_missing_artifact_is_said(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable, match="no longer stored"):
        place_state(RunState(defer_run_id="run_p"), tmp_path / "s", _store({}))  # type: ignore[arg-type]
