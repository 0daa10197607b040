"""Cron fire times in a job's time zone, computed on wall-clock time.

croniter walks the wall clock of the zone; each wall-clock slot fires once:
- a slot inside a spring-forward gap (02:30 on the night clocks jump from 02:00 to 03:00)
  fires at the first instant after the gap, so a daily job is not skipped that day;
- a slot inside a fall-back overlap (01:30 happens twice) fires at its first occurrence only.
All results are aware UTC datetimes.

``schedule_problem`` accepts only what both croniter (the local scheduler) and Kubernetes
CronJobs (robfig/cron's standard parser) read the same way, and only schedules that fire.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter


def _to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``zone`` as UTC, per the rules above."""
    first = wall.replace(tzinfo=zone, fold=0)
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) == wall:
        return as_utc
    # In a gap: the wall time does not exist. Fire at the first instant after the gap.
    earliest = min(wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first.astimezone(UTC))
    return _transition_after(earliest, zone) or as_utc


def _transition_after(moment: datetime, zone: ZoneInfo) -> datetime | None:
    """The first UTC minute at or after ``moment`` whose UTC offset differs from the one
    before it (within four hours), i.e. the end of a gap."""
    offset = moment.astimezone(zone).utcoffset()
    probe = moment
    for _ in range(4 * 60):
        probe += timedelta(minutes=1)
        if probe.astimezone(zone).utcoffset() != offset:
            return probe.replace(second=0, microsecond=0)
    return None


def fires_between(
    schedule: str, timezone: str, start: datetime, end: datetime
) -> Iterator[datetime]:
    """Fire times t with start < t <= end, in order, as UTC."""
    zone = ZoneInfo(timezone)
    # Start the wall-clock walk a little early so a gap slot mapped forward is not missed.
    wall_start = (start.astimezone(zone) - timedelta(hours=3)).replace(tzinfo=None)
    iterator = croniter(schedule, wall_start)
    last: datetime | None = None
    while True:
        wall = iterator.get_next(datetime)
        fire = _to_utc(wall, zone)
        if fire > end:
            return
        if fire > start and fire != last:
            last = fire
            yield fire


def next_fire(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    horizon = after + timedelta(days=366 * 5)
    for fire in fires_between(schedule, timezone, after, horizon):
        return fire
    raise ValueError(f"schedule {schedule!r} never fires")  # pragma: no cover - e.g. Feb 30


def previous_fire(schedule: str, timezone: str, at: datetime) -> datetime | None:
    """The last fire time at or before ``at`` within the previous 366 days."""
    found = None
    for fire in fires_between(schedule, timezone, at - timedelta(days=366), at):
        found = fire
    return found


# --- what a schedule may say ---------------------------------------------------------------

MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
"""The shorthands Kubernetes CronJobs accept (``@reboot`` and ``@every`` are not among them)."""

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# name, lowest, highest, names (value = index + lowest)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_ITEM = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")
_UNSUPPORTED = {
    "L": "'L' (last day) is a Quartz extension that Kubernetes CronJobs do not accept",
    "W": "'W' (nearest weekday) is a Quartz extension that Kubernetes CronJobs do not accept",
    "#": "'#' (nth weekday) is a Quartz extension that Kubernetes CronJobs do not accept",
    "?": "'?' is a Quartz spelling; write '*'",
    "H": "'H' (hashed time) is a Jenkins extension; choose a fixed minute",
}
_MAX_SCHEDULE_LENGTH = 200


def _value(text: str, low: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        return int(text)
    upper = text.upper()
    return names.index(upper) + low if upper in names else None


def _special(item: str) -> str | None:
    """The message for a Quartz or Jenkins extension in an item that is not a plain value."""
    upper = item.upper()
    return next((why for char, why in _UNSUPPORTED.items() if char in upper), None)


def _field_problem(text: str, field: tuple[str, int, int, tuple[str, ...]]) -> str | None:
    name, low, high, names = field
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            return _special(item) or f"the {name} field has {item!r}, not a number, range or step"
        bounds = match.group("range")
        if bounds != "*":
            parts = [_value(part, low, names) for part in bounds.split("-")]
            if any(p is None for p in parts):
                return _special(bounds) or f"the {name} field takes {low}-{high}; got {bounds!r}"
            values = [p for p in parts if p is not None]
            if name == "day of week" and 7 in values:
                return "Kubernetes CronJobs number the days of the week 0-6; write 0 for Sunday"
            if any(not low <= v <= high for v in values):
                return f"the {name} field takes {low}-{high}; got {bounds!r}"
            if len(values) == 2 and values[0] > values[1]:
                return f"the range {bounds!r} in the {name} field runs backwards"
        step = match.group("step")
        if step is not None and not 1 <= int(step) <= high:
            return f"the step in {item!r} must be between 1 and {high}"
    return None


def schedule_problem(schedule: str) -> str | None:
    """Why a schedule is refused (in plain words), or None when both schedulers accept it."""
    text = schedule.strip()
    if len(text) > _MAX_SCHEDULE_LENGTH:
        return f"a schedule has at most {_MAX_SCHEDULE_LENGTH} characters"
    if "TZ=" in text:
        return "put the time zone in the 'timezone' field, not in the schedule"
    if text.startswith("@"):
        if text in MACROS:
            return None
        return "the shorthands Kubernetes accepts are " + ", ".join(sorted(MACROS))
    fields = text.split()
    if len(fields) == 6:
        return "Kubernetes schedules have five fields, without seconds"
    if len(fields) != 5:
        return (
            "a schedule has five fields (minute hour day-of-month month day-of-week) "
            "or is one of " + ", ".join(sorted(MACROS))
        )
    for field_text, field in zip(fields, _FIELDS, strict=True):
        problem = _field_problem(field_text, field)
        if problem is not None:
            return problem
    if not croniter.is_valid(text):
        return "not a valid cron expression"
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return "this schedule never fires (no month has such a day); pick a day that exists"
    return None
