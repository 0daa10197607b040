"""How the pages write durations, times and statuses (also Jinja filters)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_SAFE_CLASS = re.compile(r"[^a-z0-9_-]")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def status_class(status: str | None) -> str:
    """``status status-<status>``: the CSS hook for a status's colour (text says it too)."""
    name = _SAFE_CLASS.sub("", (status or "unknown").lower()) or "unknown"
    return f"status status-{name}"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st..."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return str(number) + {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")


def run_status(status: str | None, queue_position: int | None = None) -> str:
    """A run's status as the pages write it: a queued run says its place in its job's
    queue (docs/queues.md), "queued, 2nd in line"."""
    if status == "queued" and queue_position is not None:
        return f"queued, {ordinal(queue_position)} in line"
    return status or "no runs"


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.0f}%"


def clip(text: str | None, limit: int) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
