"""Fire times across daylight-saving changes, wall-clock semantics."""

from __future__ import annotations

from datetime import UTC, datetime

from app.cron import fires_between, next_fire, previous_fire


def _fires(schedule: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    return list(fires_between(schedule, zone, start, end))


def test_berlin_spring_forward_gap_fires_after_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night.
    fires = _fires(
        "30 2 * * *",
        "Europe/Berlin",
        datetime(2026, 3, 27, tzinfo=UTC),
        datetime(2026, 3, 31, tzinfo=UTC),
    )
    assert fires == [
        datetime(2026, 3, 27, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST, the gap's end
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


def test_new_york_fall_back_fires_once() -> None:
    # 2026-11-01: 01:30 happens twice in New York; the job runs at the first one.
    fires = _fires(
        "30 1 * * *",
        "America/New_York",
        datetime(2026, 10, 31, tzinfo=UTC),
        datetime(2026, 11, 3, tzinfo=UTC),
    )
    assert fires == [
        datetime(2026, 10, 31, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
    ]


def test_fires_are_strictly_increasing_and_unique() -> None:
    fires = _fires(
        "*/15 * * * *",
        "Europe/Berlin",
        datetime(2026, 3, 28, tzinfo=UTC),
        datetime(2026, 3, 30, tzinfo=UTC),
    )
    assert fires == sorted(set(fires))


def test_next_and_previous() -> None:
    at = datetime(2026, 4, 28, 2, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", "UTC", at) == datetime(2026, 4, 29, 2, 0, tzinfo=UTC)
    assert previous_fire("0 2 * * *", "UTC", at) == at
    assert next_fire("@hourly", "UTC", at) == datetime(2026, 4, 28, 3, 0, tzinfo=UTC)
