"""dbt state for a local run: the artifacts of earlier runs, in a folder of the run's own,
passed to dbt as ``--state <folder>``. Which files, and how run_results.json is made safe
for dbt retry, is app/engines/state.py (shared with the Kubernetes executor).

The folder is ``<spool>/<run>.state`` (0700), beside the run's other private folders; the
sandbox lets the run reach it and it goes when the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from app.engines.state import (
    StateUnavailable,
    missing_message,
    state_args,
    state_content,
    state_files,
)
from app.models import RunState

__all__ = ["Read", "StateUnavailable", "place_state"]

Read = Callable[[str, str], bytes | None]  # (run id, artifact name) -> content


def _write(folder: Path, name: str, content: bytes) -> None:
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


def place_state(state: RunState, folder: Path, read: Read) -> list[str]:
    """Write what ``state`` names into ``folder`` (made 0700, must not exist); the dbt
    arguments that point at it."""
    folder.mkdir(mode=0o700)
    for name, run_id in state_files(state).items():
        raw = read(run_id, name)
        if raw is None:
            raise StateUnavailable(missing_message(state, name))
        _write(folder, name, state_content(state, name, raw, str(folder)))
    return state_args(state, str(folder))
