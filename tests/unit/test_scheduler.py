"""The embedded scheduler, driven by an injected clock through ``tick(now)``.

Runs go through the real RunService and SQLite store; the executor is a stand-in that
records launches (a scheduled run stays pending, which is what Forbid needs to see).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.container import Container
from app.cron import fires_between
from app.models import Job, Principal, Project, RunRecord
from app.ports import Launched, SyncReport
from app.scheduler import Fire, Scheduler
from app.services.jobs import JobCreate, JobPatch
from app.services.projects import ProjectCreate
from app.settings import MissedFirePolicy, Settings


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


class RecordingExecutor:
    """Launches nothing; forwards schedule changes to a scheduler like the local executor."""

    name = "local"

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.cancelled: list[str] = []
        self.scheduler: Scheduler | None = None

    def admit(self, org_id: str) -> None:
        pass

    def launch(self, run: RunRecord) -> Launched:
        self.launched.append(run.id)
        return Launched(job_name=run.id)

    def cancel(self, run: RunRecord) -> None:
        self.cancelled.append(run.id)

    def live_logs(self, run: RunRecord) -> str | None:
        return None

    def apply_job(self, project: Project, job: Job) -> None:
        if self.scheduler:
            self.scheduler.refresh_job(job.id)

    def remove_job(self, project: Project, job: Job) -> None:
        if self.scheduler:
            self.scheduler.forget_job(job.id)

    def deploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport:
        if self.scheduler:
            self.scheduler.refresh_project(project.id)
        return SyncReport()

    def undeploy(self, project: Project, jobs: Sequence[Job]) -> SyncReport:
        if self.scheduler:
            for job in jobs:
                self.scheduler.forget_job(job.id)
        return SyncReport()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class World:
    """A container over one database, an admin principal, and schedulers built on it."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.executor = RecordingExecutor()
        self.container = Container(
            Settings(database=str(database), executor="local"),
            executor_factory=lambda _deps: self.executor,
        )
        token, _ = self.container.tokens.create("acme", "admin")
        self.admin: Principal = self.container.tokens.authenticate(token)
        self.restarted: list[Container] = []
        self.project = self.container.projects.create(
            self.admin, ProjectCreate(name="analytics", kind="dbt", path=".")
        )

    def scheduler(self, policy: MissedFirePolicy = "skip", *, restart: bool = False) -> Scheduler:
        """A scheduler firing through this world's RunService; with ``restart``, through a
        new container on the same database file, as after a restart of runyard."""
        container = self.container
        if restart:
            container = Container(
                Settings(database=str(self.database), executor="local"),
                executor_factory=lambda _deps: self.executor,
            )
            self.restarted.append(container)
        runs = container.runs

        def fire(project: Project, job: Job, slot: datetime) -> bool:
            return (
                runs.start_run(project, job, triggered_by="scheduled", scheduled_for=slot)
                is not None
            )

        scheduler = Scheduler(container.store, fire, missed_fire_policy=policy)
        self.executor.scheduler = scheduler
        return scheduler

    def close(self) -> None:
        for container in [*self.restarted, self.container]:
            container.stop()

    def job(
        self, schedule: str | None, timezone: str = "UTC", name: str = "nightly", **fields: Any
    ) -> Job:
        return self.container.jobs.create(
            self.admin,
            self.project.id,
            JobCreate(
                name=name, command="dbt build", schedule=schedule, timezone=timezone, **fields
            ),
        )

    def deploy(self) -> None:
        self.container.projects.deploy(self.admin, self.project.id)

    def runs(self, job: Job) -> list[RunRecord]:
        page = self.container.store.runs.page(self.admin.org_id, job_id=job.id, limit=200)
        records = [self.container.store.runs.record(r.id) for r in reversed(page.runs)]
        return [r for r in records if r is not None]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path / "runyard.db")
    yield made
    made.close()


def drive(scheduler: Scheduler, start: datetime, end: datetime) -> list[Fire]:
    """Tick at every due time in (start, end], as the background thread would."""
    scheduler.tick(start)
    fires: list[Fire] = []
    while (due := scheduler.next_due()) is not None and due <= end:
        fires += scheduler.tick(due)
    return fires


# --- firing ---------------------------------------------------------------------------------


def test_scheduled_run_fires_at_its_slot_not_before(world: World) -> None:
    job = world.job("*/15 * * * *", concurrency_policy="Allow")
    world.deploy()
    scheduler = world.scheduler()
    assert scheduler.tick(at(2026, 4, 28, 10, 7)) == []
    assert scheduler.next_due() == at(2026, 4, 28, 10, 15)
    assert scheduler.tick(at(2026, 4, 28, 10, 14, 59)) == []
    fires = scheduler.tick(at(2026, 4, 28, 10, 15))
    assert fires == [Fire(job.id, at(2026, 4, 28, 10, 15), "started")]
    [run] = world.runs(job)
    assert run.triggered_by == "scheduled"
    assert run.scheduled_for == at(2026, 4, 28, 10, 15)
    assert world.executor.launched == [run.id]


def test_only_deployed_enabled_jobs_with_a_schedule_fire(world: World) -> None:
    scheduled = world.job("0 * * * *")
    world.job(None, name="manual-only")
    scheduler = world.scheduler()
    scheduler.tick(at(2026, 4, 28, 9, 30))
    assert scheduler.next_due() is None  # the project is not deployed
    world.deploy()
    scheduler.tick(at(2026, 4, 28, 9, 31))
    assert scheduler.next_due() == at(2026, 4, 28, 10)
    world.container.jobs.update(
        world.admin, world.project.id, scheduled.id, JobPatch(enabled=False)
    )
    assert scheduler.tick(at(2026, 4, 28, 10)) == []
    assert scheduler.next_due() is None
    assert world.runs(scheduled) == []


def test_undeploy_stops_and_redeploy_does_not_count_the_gap_as_missed(world: World) -> None:
    job = world.job("0 * * * *", concurrency_policy="Allow")
    world.deploy()
    scheduler = world.scheduler(policy="run_once")
    assert len(drive(scheduler, at(2026, 4, 28, 9, 30), at(2026, 4, 28, 10))) == 1
    world.container.projects.undeploy(world.admin, world.project.id)
    assert scheduler.tick(at(2026, 4, 28, 11)) == []
    world.deploy()
    assert scheduler.tick(at(2026, 4, 28, 15, 30)) == []  # 11:00-15:00 were not missed
    assert scheduler.next_due() == at(2026, 4, 28, 16)
    assert len(world.runs(job)) == 1


def test_schedule_change_applies_from_now(world: World) -> None:
    job = world.job("0 3 * * *")
    world.deploy()
    scheduler = world.scheduler()
    scheduler.tick(at(2026, 4, 28, 1))
    assert scheduler.next_due() == at(2026, 4, 28, 3)
    world.container.jobs.update(
        world.admin,
        world.project.id,
        job.id,
        JobPatch(schedule="30 1 * * *", timezone="Europe/Berlin"),
    )
    scheduler.tick(at(2026, 4, 28, 1, 1))
    assert scheduler.next_due() == at(2026, 4, 28, 23, 30)  # 01:30 CEST


# --- daylight-saving time -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "zone", "start", "expected"),
    [
        # Berlin springs forward on 2026-03-29: 02:30 does not exist; it runs at 03:00 CEST.
        (
            "30 2 * * *",
            "Europe/Berlin",
            at(2026, 3, 27, 12),
            [at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1, 0), at(2026, 3, 30, 0, 30)],
        ),
        # Berlin falls back on 2026-10-25: 02:30 happens twice; it runs at the first.
        (
            "30 2 * * *",
            "Europe/Berlin",
            at(2026, 10, 23, 12),
            [at(2026, 10, 24, 0, 30), at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)],
        ),
        # New York springs forward on 2026-03-08.
        (
            "30 2 * * *",
            "America/New_York",
            at(2026, 3, 6, 12),
            [at(2026, 3, 7, 7, 30), at(2026, 3, 8, 7, 0), at(2026, 3, 9, 6, 30)],
        ),
        # New York falls back on 2026-11-01: 01:30 happens twice.
        (
            "30 1 * * *",
            "America/New_York",
            at(2026, 10, 30, 12),
            [at(2026, 10, 31, 5, 30), at(2026, 11, 1, 5, 30), at(2026, 11, 2, 6, 30)],
        ),
    ],
)
def test_daily_job_across_dst(
    world: World, schedule: str, zone: str, start: datetime, expected: list[datetime]
) -> None:
    job = world.job(schedule, zone, concurrency_policy="Allow")
    world.deploy()
    fires = drive(world.scheduler(), start, start + timedelta(days=3))
    assert [f.slot for f in fires] == expected
    assert [r.scheduled_for for r in world.runs(job)] == expected


@pytest.mark.parametrize(
    ("zone", "day", "count"),
    [
        ("Europe/Berlin", at(2026, 3, 28, 23), 23),  # 02:00 does not exist
        ("Europe/Berlin", at(2026, 10, 24, 22), 24),  # 25 hours, each wall slot once
        ("America/New_York", at(2026, 3, 8, 5), 23),
        ("America/New_York", at(2026, 11, 1, 4), 24),
    ],
)
def test_hourly_job_on_dst_days_fires_once_per_wall_clock_hour(
    world: World, zone: str, day: datetime, count: int
) -> None:
    world.job("0 * * * *", zone, concurrency_policy="Allow")
    world.deploy()
    # ``day`` is local midnight minus a minute; the local day is 23, 24 or 25 hours long.
    end_of_day = day + timedelta(hours=25 if count == 24 else 23)
    fires = drive(world.scheduler(), day - timedelta(minutes=1), end_of_day - timedelta(minutes=2))
    slots = [f.slot for f in fires]
    assert len(slots) == len(set(slots)) == count
    assert all(f.outcome == "started" for f in fires)


# --- restarts and missed fires --------------------------------------------------------------


def test_missed_fires_are_skipped_after_downtime_with_skip(world: World) -> None:
    job = world.job("0 * * * *", concurrency_policy="Allow")
    world.deploy()
    assert len(drive(world.scheduler(), at(2026, 4, 28, 9, 30), at(2026, 4, 28, 10))) == 1
    # runyard is down from 10:05 until 15:30: a new process on the same database.
    later = world.scheduler(policy="skip", restart=True)
    fires = later.tick(at(2026, 4, 28, 15, 30))
    assert fires == [Fire(job.id, at(2026, 4, 28, 15), "missed")]
    assert later.next_due() == at(2026, 4, 28, 16)
    assert len(world.runs(job)) == 1
    assert later.tick(at(2026, 4, 28, 16)) == [Fire(job.id, at(2026, 4, 28, 16), "started")]


def test_run_once_fires_one_run_for_the_most_recent_missed_slot(world: World) -> None:
    job = world.job("0 * * * *", concurrency_policy="Allow")
    world.deploy()
    drive(world.scheduler(), at(2026, 4, 28, 9, 30), at(2026, 4, 28, 10))
    later = world.scheduler(policy="run_once", restart=True)
    assert later.tick(at(2026, 4, 28, 15, 30)) == [Fire(job.id, at(2026, 4, 28, 15), "started")]
    assert later.tick(at(2026, 4, 28, 15, 45)) == []
    # And a third runyard process does not run 15:00 again.
    assert world.scheduler(policy="run_once", restart=True).tick(at(2026, 4, 28, 15, 50)) == []
    assert [r.scheduled_for for r in world.runs(job)] == [at(2026, 4, 28, 10), at(2026, 4, 28, 15)]


def test_a_slot_just_passed_during_a_restart_fires_on_time(world: World) -> None:
    job = world.job("0 * * * *")
    world.deploy()
    drive(world.scheduler(), at(2026, 4, 28, 9, 30), at(2026, 4, 28, 10))
    assert world.scheduler(policy="skip", restart=True).tick(at(2026, 4, 28, 11, 0, 20)) == [
        Fire(job.id, at(2026, 4, 28, 11), "skipped")
    ]  # Forbid: the 10:00 run is pending


def test_no_double_fire_across_a_restart(world: World) -> None:
    job = world.job("*/5 * * * *", concurrency_policy="Allow")
    world.deploy()
    first = world.scheduler()
    drive(first, at(2026, 4, 28, 9, 58), at(2026, 4, 28, 10, 5))
    second = world.scheduler(policy="run_once", restart=True)
    assert second.tick(at(2026, 4, 28, 10, 5, 30)) == []
    assert second.next_due() == at(2026, 4, 28, 10, 10)
    # Even without the scheduler's state, the database refuses a second run for a slot.
    world.container.store.local.forget_slot(job.id)
    third = world.scheduler(restart=True)
    third.tick(at(2026, 4, 28, 10, 4, 59))  # believes it starts here
    assert third.tick(at(2026, 4, 28, 10, 5)) == [Fire(job.id, at(2026, 4, 28, 10, 5), "skipped")]
    assert [r.scheduled_for for r in world.runs(job)] == [
        at(2026, 4, 28, 10),
        at(2026, 4, 28, 10, 5),
    ]


# --- concurrency policy ---------------------------------------------------------------------


def test_forbid_skips_the_fire_while_a_run_is_active(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    job = world.job("0 * * * *")  # Forbid is the default
    world.deploy()
    scheduler = world.scheduler()
    caplog.set_level(logging.INFO, logger="runyard")
    fires = drive(scheduler, at(2026, 4, 28, 9, 30), at(2026, 4, 28, 11))
    assert [f.outcome for f in fires] == ["started", "skipped"]
    assert len(world.runs(job)) == 1
    assert any("Forbid" in r.getMessage() for r in caplog.records)


def test_replace_cancels_the_active_run(world: World) -> None:
    job = world.job("0 * * * *", concurrency_policy="Replace")
    world.deploy()
    fires = drive(world.scheduler(), at(2026, 4, 28, 9, 30), at(2026, 4, 28, 11))
    assert [f.outcome for f in fires] == ["started", "started"]
    first, second = world.runs(job)
    assert first.status == "cancelled" and second.status == "pending"
    assert world.executor.cancelled == [first.id]


# --- scale ------------------------------------------------------------------------------------


def test_many_jobs_fire_exactly_once_each_in_order(tmp_path: Path) -> None:
    """A small soak: 60 jobs, mixed crons and zones, ten days spanning a DST change."""
    world = World(tmp_path / "soak.db")
    try:
        crons = [
            "0 * * * *",
            "*/30 * * * *",
            "15 9 * * 1-5",
            "0 */6 * * *",
            "30 2 * * *",
            "45 23 * * 0",
            "0 0 1 * *",
            "*/20 8-18 * * *",
        ]
        zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
        jobs = [
            world.job(crons[i % len(crons)], zones[i % len(zones)], name=f"job-{i}")
            for i in range(60)
        ]
        world.deploy()
        seen: list[tuple[str, datetime]] = []

        def record(project: Project, job: Job, slot: datetime) -> bool:
            seen.append((job.id, slot))
            return True

        scheduler = Scheduler(world.container.store, record)
        start, end = at(2026, 3, 24), at(2026, 4, 3)
        scheduler.tick(start)
        while (due := scheduler.next_due()) is not None and due <= end:
            for fire in scheduler.tick(due):
                assert fire.slot <= due  # never early
            assert len(scheduler._heap) <= 2 * len(jobs) + 64  # bounded
        expected = sorted(
            (j.id, t) for j in jobs for t in fires_between(j.schedule or "", j.timezone, start, end)
        )
        assert sorted(seen) == expected
        assert len(seen) == len(set(seen))
    finally:
        world.container.stop()


def test_a_long_downtime_collapses_to_one_decision(world: World) -> None:
    job = world.job("* * * * *", "Europe/Berlin", concurrency_policy="Allow")
    world.deploy()
    drive(world.scheduler(), at(2026, 3, 1, 9, 58, 30), at(2026, 3, 1, 10))
    # Down for 40 days, across Berlin's spring-forward: one run for the last missed minute,
    # and the minute that is on time (within the 60 s grace) runs as usual.
    later = world.scheduler(policy="run_once", restart=True)
    assert later.tick(at(2026, 4, 10, 12, 0, 30)) == [
        Fire(job.id, at(2026, 4, 10, 11, 59), "started"),
        Fire(job.id, at(2026, 4, 10, 12, 0), "started"),
    ]
    assert later.next_due() == at(2026, 4, 10, 12, 1)
    assert len(world.runs(job)) == 4  # 09:59 and 10:00 before the downtime
