"""Charts drawn on the server as SVG geometry: a run-history bar chart, a seven-day sparkline
and a Gantt chart of a run's nodes. No JavaScript and no inline styles (the pages' Content
Security Policy allows neither): templates write these numbers into SVG attributes, and the
colour comes from a status class in ui.css. Every bar also names its status in text
(``label``), so colour is never the only sign."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.models import Run
from app.services.history import TimelineNode
from app.web.format import duration, run_status, status_class, when

# Statuses that mean "this is broken" (cancelled is a person's choice, not a failure).
FAILING = frozenset({"failed", "timed_out", "lost"})


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    label: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    width: float
    height: float
    bars: list[Bar]


def _height(seconds: float | None, longest: float, full: float) -> float:
    if not seconds or longest <= 0:
        return 2.0  # an unfinished or instant run is still a visible (and clickable) bar
    return max(2.0, round(full * seconds / longest, 1))


def run_history(runs: Sequence[Run], height: float = 120.0) -> Chart:
    """Bars of the runs' durations, oldest on the left, each a link to its run."""
    ordered = list(reversed(runs))  # runs come newest first
    longest = max((r.duration_seconds or 0.0 for r in ordered), default=0.0)
    step, width = 14.0, 11.0
    bars = []
    for index, run in enumerate(ordered):
        tall = _height(run.duration_seconds, longest, height - 4)
        bars.append(
            Bar(
                x=index * step,
                y=height - tall,
                width=width,
                height=tall,
                css=status_class(run.status),
                label=f"Run {run.id}: {run_status(run.status, run.queue_position)}, "
                f"{duration(run.duration_seconds)}, "
                f"{when(run.start_time or run.created_at)}",
                href=f"/ui/runs/{run.id}",
            )
        )
    # At least a few hundred pixels: a new job's one or two bars on a visible background.
    return Chart(width=max(step * len(ordered), 280.0), height=height, bars=bars)


@dataclass(frozen=True, slots=True)
class SparkPath:
    css: str
    d: str  # one SVG path drawing every bar of this status
    label: str


@dataclass(frozen=True, slots=True)
class Spark:
    width: float
    height: float
    paths: list[SparkPath]
    label: str


def sparkline(runs: Sequence[Run], height: float = 20.0) -> Spark:
    """A small bar per run (oldest left), height by duration: one path per status, so a
    row of the overview costs a few hundred bytes however many runs it shows."""
    ordered = list(reversed(runs))
    longest = max((r.duration_seconds or 0.0 for r in ordered), default=0.0)
    step, width = 5, 4
    by_status: dict[str, list[str]] = {}
    for index, run in enumerate(ordered):
        tall = _height(run.duration_seconds, longest, height)
        by_status.setdefault(run.status, []).append(
            f"M{index * step} {height:g}v-{tall:g}h{width}V{height:g}z"
        )
    paths = [
        SparkPath(
            css=status_class(status),
            d="".join(parts),
            label=f"{len(parts)} {status}",
        )
        for status, parts in sorted(by_status.items())
    ]
    counts = ", ".join(p.label for p in paths)
    label = f"The last {len(ordered)} runs, oldest first: {counts}" if ordered else "No runs"
    return Spark(width=max(step * len(ordered), step), height=height, paths=paths, label=label)


@dataclass(frozen=True, slots=True)
class GanttRow:
    y: float
    name: str
    x: float
    width: float
    css: str
    label: str


@dataclass(frozen=True, slots=True)
class Gantt:
    width: float
    height: float
    label_width: float
    rows: list[GanttRow]
    shown: int
    total: int
    span_seconds: float


GANTT_ROWS = 150  # the longest nodes of a big run; the table below lists every node
_ROW = 16.0
_BAR_WIDTH = 560.0
_LABEL = 240.0


def gantt(nodes: Sequence[TimelineNode], limit: int = GANTT_ROWS) -> Gantt | None:
    """The nodes with timing, by start; for a run with more than ``limit`` of them, the
    ``limit`` longest (what someone reading a slow run looks for)."""
    timed = [n for n in nodes if n.offset_seconds is not None and n.duration_seconds is not None]
    if not timed:
        return None
    chosen = sorted(timed, key=lambda n: -(n.duration_seconds or 0.0))[:limit]
    chosen.sort(key=lambda n: (n.offset_seconds or 0.0, n.unique_id))
    span = max((n.offset_seconds or 0.0) + (n.duration_seconds or 0.0) for n in chosen) or 1.0
    scale = _BAR_WIDTH / span
    rows = []
    for index, node in enumerate(chosen):
        start = (node.offset_seconds or 0.0) * scale
        rows.append(
            GanttRow(
                y=index * _ROW,
                name=node.name if len(node.name) <= 34 else node.name[:33] + "…",
                x=_LABEL + start,
                width=max(1.0, (node.duration_seconds or 0.0) * scale),
                css=status_class(node.status),
                label=f"{node.name}: {node.status}, {duration(node.duration_seconds)}, "
                f"started at +{duration(node.offset_seconds)}",
            )
        )
    return Gantt(
        width=_LABEL + _BAR_WIDTH + 8,
        height=len(rows) * _ROW,
        label_width=_LABEL,
        rows=rows,
        shown=len(chosen),
        total=len(timed),
        span_seconds=span,
    )
