"""The steps of a Kubernetes run, read back from its pod's log (docs/steps.md).

All of a run's steps run in one pod, through runyard's launcher
(app/executors/k8s/launcher.py, ``--steps``), which writes a marker line before and after
each step::

    ::runyard-step:: {"event": "start", "index": 1}
    ::runyard-step:: {"event": "end", "index": 1, "exit_code": 1, "seconds": 4.2}
    ::runyard-step:: {"event": "skip", "index": 2}

The log is the pod's: the project's own code writes to it too, so markers are hostile
input. They are parsed strictly (the exact prefix, a short line, a closed JSON shape,
indexes of the run's own steps, events in the only order the launcher writes them), and
they decide nothing but the step records of that run and how its log is split per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from app.engines.results import summarise_failure
from app.executors.k8s.status import parse_results
from app.models import (
    NODE_RESULT_COMMANDS,
    NodeSummary,
    ProjectKind,
    RunStatus,
    RunStep,
    StepPlan,
    StepStatus,
)

# Keep in step with app/executors/k8s/launcher.py STEP_MARKER (a unit test compares them).
STEP_MARKER = "::runyard-step:: "
MAX_MARKER_LINE = 512  # bytes of a marker line; the launcher's are far shorter
MAX_SECONDS = 10 * 365 * 86400.0


class _Marker(msgspec.Struct, forbid_unknown_fields=True):
    event: Literal["start", "end", "skip"]
    index: int
    exit_code: int | None = None
    seconds: float | None = None


_decode = msgspec.json.Decoder(_Marker).decode


@dataclass
class StepsRead:
    """What a run's log says of its steps: their records, and the log cut at each step's
    start (``pieces``: (step index or None for what came before, text))."""

    steps: list[RunStep]
    pieces: list[tuple[int | None, str]] = field(default_factory=list)
    segments: dict[int, str] = field(default_factory=dict)  # a step's own output


def read_steps(text: str, plans: Sequence[StepPlan]) -> StepsRead:
    """The steps' records from the markers in ``text`` (a pod's main container log). A
    marker that does not fit (unknown step, out of order, repeated, malformed) is ignored
    and stays in the log as text."""
    steps = [
        RunStep(index=i, name=p.name, command=p.command, run_on_failure=p.run_on_failure)
        for i, p in enumerate(plans)
    ]
    read = StepsRead(steps)
    current: int | None = None  # the step started and not ended
    last_started = -1
    piece_start, piece_index = 0, None
    seg_start = 0
    position = 0
    for line in text.splitlines(keepends=True):
        start_of_line = position
        position += len(line)
        marker = _marker(line, len(steps))
        if marker is None:
            continue
        step = steps[marker.index]
        if marker.event == "start":
            if current is not None or marker.index <= last_started or step.status != "pending":
                continue
            step.status = "running"
            current = last_started = marker.index
            read.pieces.append((piece_index, text[piece_start:start_of_line]))
            piece_start, piece_index = start_of_line, marker.index
            seg_start = position
        elif marker.event == "end":
            if current != marker.index or marker.exit_code is None:
                continue
            step.exit_code = marker.exit_code
            step.status = "success" if marker.exit_code == 0 else "failed"
            if marker.seconds is not None:
                step.duration_seconds = round(marker.seconds, 3)
            read.segments[marker.index] = text[seg_start:start_of_line]
            current = None
        elif step.status == "pending" and current is None and marker.index > last_started:
            step.status = "skipped"
    if current is not None:
        read.segments[current] = text[seg_start:]
    read.pieces.append((piece_index, text[piece_start:]))
    read.pieces = [(index, piece) for index, piece in read.pieces if piece or index is not None]
    return read


def _marker(line: str, count: int) -> _Marker | None:
    if not line.startswith(STEP_MARKER) or len(line.encode()) > MAX_MARKER_LINE:
        return None
    try:
        marker = _decode(line[len(STEP_MARKER) :].strip())
    except msgspec.DecodeError:
        return None
    if not 0 <= marker.index < count:
        return None
    if marker.exit_code is not None and not -1 <= marker.exit_code <= 255:
        return None
    if marker.seconds is not None and not 0 <= marker.seconds <= MAX_SECONDS:
        return None
    return marker


_STOPPED: dict[str, StepStatus] = {"timed_out": "timed_out", "cancelled": "cancelled"}


def finish_steps(read: StepsRead, run_status: RunStatus) -> None:
    """The records once the run has ended: a step still running was stopped by the run's
    end (its timeout, a cancel, or the pod's failure), and the steps that never started
    were skipped."""
    for step in read.steps:
        if step.status == "running":
            step.status = _STOPPED.get(run_status, "failed")
        elif step.status == "pending":
            step.status = "skipped"


def step_results(
    read: StepsRead, plans: Sequence[StepPlan], kind: ProjectKind
) -> list[NodeSummary]:
    """The node results of the steps that run nodes, each parsed from its own output and
    tagged with its step (docs generate's compile lines are not results)."""
    results: list[NodeSummary] = []
    for index, segment in sorted(read.segments.items()):
        if kind == "sqlmesh" or plans[index].subcommand in NODE_RESULT_COMMANDS:
            found = parse_results(kind, segment)
            results += [msgspec.structs.replace(n, step=index) for n in found]
    return results


def steps_error(read: StepsRead, results: Sequence[NodeSummary], kind: ProjectKind) -> str | None:
    """The run's error when a step failed it: which step, and its failed models."""
    failed = next((s for s in read.steps if s.status == "failed"), None)
    if failed is None:
        return None
    error = (
        f"Step {failed.index + 1} of {len(read.steps)} ({failed.name}) failed with exit "
        f"code {failed.exit_code}."
    )
    mine = [n for n in results if n.step == failed.index]
    tail = read.segments.get(failed.index, "")
    summary = summarise_failure(kind, mine, failed.exit_code, "\n".join(tail.splitlines()[-40:]))
    return f"{error} {summary}" if summary else error
