"""Soak: 500 jobs with mixed cron expressions and time zones over 30 simulated days, on an
injected clock. Every expected fire happens exactly once, none early, and the scheduler's
memory does not grow from the first simulated day to the last by more than 10%.

RUNYARD_SOAK_JOBS and RUNYARD_SOAK_DAYS scale it (defaults 500 and 30).
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from app.models import Job, Project
from app.scheduler import Scheduler
from app.services.jobs import JobCreate
from tests.unit.test_scheduler import World

pytestmark = pytest.mark.slow

JOBS = int(os.environ.get("RUNYARD_SOAK_JOBS", "500"))
DAYS = int(os.environ.get("RUNYARD_SOAK_DAYS", "30"))
# Mixed shapes: hourly, every 6 hours, daily at odd minutes, weekdays, weekly, monthly, and
# slots inside the daylight-saving gap (02:30) and overlap (01:30).
SCHEDULES = [
    "7 * * * *",
    "0 */6 * * *",
    "15 2 * * *",
    "30 2 * * *",
    "30 1 * * *",
    "45 23 * * 1-5",
    "0 9 * * 1",
    "0 0 1 * *",
    "5 4 * * *",
    "@daily",
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Europe/London",
]
# 2026-03-01 to 2026-03-31 crosses the US (Mar 8) and EU (Mar 29) spring-forward changes;
# Sydney falls back on Apr 5 when the run is longer.
START = datetime(2026, 3, 1, tzinfo=UTC)


def _utc_expectation(schedule: str, start: datetime, end: datetime) -> list[datetime]:
    """An independent oracle for UTC jobs: croniter on naive UTC, no zone handling."""
    iterator = croniter(schedule, start.replace(tzinfo=None))
    found = []
    while (moment := iterator.get_next(datetime)) <= end.replace(tzinfo=None):
        found.append(moment.replace(tzinfo=UTC))
    return found


def _matches_wall_clock(schedule: str, zone: str, fire: datetime) -> bool:
    """A fire is at a slot of the cron in the job's wall clock, or it is the end of a
    daylight-saving gap that swallowed a slot."""
    local = fire.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    if croniter.match(schedule, local):
        return True
    before = (fire - timedelta(minutes=1)).astimezone(ZoneInfo(zone))
    return before.utcoffset() != fire.astimezone(ZoneInfo(zone)).utcoffset()


def _live_memory() -> int:
    """Bytes allocated since tracing began and still alive, after a collection, except
    the test's own record of the fires."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, __file__)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_500_jobs_30_days(tmp_path: Path) -> None:
    # Tracing starts before runyard is built, so the baseline holds the scheduler's whole
    # state (an entry per job, the heap, the store) and growth is measured against it.
    tracemalloc.start()
    world = World(tmp_path / "soak.db")
    jobs: list[Job] = []
    for i in range(JOBS):
        jobs.append(
            world.container.jobs.create(
                world.admin,
                world.project.id,
                JobCreate(
                    name=f"job-{i:03d}",
                    command="dbt build",
                    schedule=SCHEDULES[i % len(SCHEDULES)],
                    timezone=ZONES[(i // len(SCHEDULES)) % len(ZONES)],
                    concurrency_policy="Allow",
                ),
            )
        )
    world.deploy()
    # Fires are kept as plain floats made here, so no object the scheduler allocated is
    # kept alive by the test, and the memory measured below is the scheduler's own.
    fired: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def fire(project: Project, job: Job, slot: datetime) -> bool:
        fired[job.id].append((slot.timestamp(), clock[0].timestamp()))
        return True

    clock = [START]
    scheduler = Scheduler(world.container.store, fire, clock=lambda: clock[0])
    scheduler.tick(START)
    end = START + timedelta(days=DAYS)
    memory: dict[int, int] = {}
    while (due := scheduler.next_due()) is not None and due <= end:
        clock[0] = due
        scheduler.tick(due)
        day = (due - START).days
        if day not in memory and day in (1, DAYS - 1):
            memory[day] = _live_memory()
    tracemalloc.stop()
    world.container.stop()

    by_id = {job.id: job for job in jobs}
    total = 0
    for job_id, fires in fired.items():
        job = by_id[job_id]
        slots = [datetime.fromtimestamp(slot, UTC) for slot, _ in fires]
        assert slots == sorted(set(slots)), f"{job.name}: a slot fired twice or out of order"
        assert all(at >= slot for slot, at in fires), f"{job.name}: fired early"
        assert all(_matches_wall_clock(job.schedule or "", job.timezone, s) for s in slots), (
            job.name,
            job.schedule,
            job.timezone,
        )
        if job.timezone == "UTC":
            assert slots == _utc_expectation(job.schedule or "", START, end), job.name
        total += len(slots)
    # The scheduler's own expectation agrees for every zone.
    from app.cron import fires_between

    for job in jobs:
        expected = list(fires_between(job.schedule or "", job.timezone, START, end))
        assert [datetime.fromtimestamp(s, UTC) for s, _ in fired[job.id]] == expected, job.name
    growth = (memory[DAYS - 1] - memory[1]) / memory[1]
    print(
        f"\nsoak: {JOBS} jobs, {DAYS} days, {total} fires; traced memory day 1 "
        f"{memory[1] / 1e6:.2f} MB, day {DAYS - 1} {memory[DAYS - 1] / 1e6:.2f} MB "
        f"({growth:+.1%})"
    )
    assert growth <= 0.10
