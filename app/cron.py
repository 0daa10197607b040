"""Cron fire times in a job's time zone, computed on wall-clock time.

croniter walks the wall clock of the zone; each wall-clock slot fires once:
- a slot inside a spring-forward gap (02:30 on the night clocks jump from 02:00 to 03:00)
  fires at the first instant after the gap, so a daily job is not skipped that day;
- a slot inside a fall-back overlap (01:30 happens twice) fires at its first occurrence only.
All results are aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter


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
