"""The outbox table (app/store/outbox.py): claims, leases, attempts, manual retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.ids import utcnow
from app.models import JobConfig
from app.store import Store
from app.store.outbox import AttemptRecord, NewNotification
from tests.factories import run_record, snapshot

T0 = datetime(2026, 4, 28, 2, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    built = Store(tmp_path / "outbox.db")
    built.migrate()
    return built


def _run(store: Store, run_id: str = "run_1", created: datetime = T0) -> str:
    org = store.orgs.get_or_create("acme")
    job = JobConfig(name="nightly", command="dbt build")
    store.runs.insert(
        run_record(
            org_id=org.id,
            run_id=run_id,
            project_id="proj_1",
            job_id="job_1",
            status="failed",
            start_time=created,
            end_time=created,
            duration_seconds=0,
            created_at=created,
            snapshot_=snapshot(project_name="p", job=job),
        )
    )
    return org.id


def _add(store: Store, ids: list[str], host: str = "h:80", run_id: str = "run_1") -> None:
    org_id = _run(store, run_id) if store.runs.record(run_id) is None else "org"
    store.outbox.add(
        [
            NewNotification(
                id=i,
                org_id=org_id,
                run_id=run_id,
                job_id="job_1",
                kind="webhook",
                event="failure",
                target="http://h/x",
                host=host,
                payload=b"{}",
                secret="s" * 16,
            )
            for i in ids
        ],
        T0,
    )


def _done(started: datetime, finished: datetime) -> AttemptRecord:
    return AttemptRecord(
        started_at=started, finished_at=finished, outcome="delivered", status_code=200, error=None
    )


def test_claim_counts_the_attempt_and_hides_the_row(store: Store) -> None:
    _add(store, ["n1", "n2"])
    assert store.outbox.due(T0, limit=10) == [("n1", "h:80"), ("n2", "h:80")]
    [claimed] = store.outbox.claim(["n1"], owner="a", now=T0, lease_until=T0 + timedelta(60))
    assert claimed.attempts == 1 and claimed.state == "delivering"
    assert claimed.payload == b"{}" and claimed.secret == "s" * 16
    assert store.outbox.due(T0, limit=10) == [("n2", "h:80")]
    # A second worker racing for the same row gets nothing.
    assert store.outbox.claim(["n1"], owner="b", now=T0, lease_until=T0) == []


def test_busy_hosts_are_skipped(store: Store) -> None:
    _add(store, ["n1"], host="slow:80")
    _add(store, ["n2"], host="fast:80")
    assert store.outbox.due(T0, limit=10, skip_hosts={"slow:80"}) == [("n2", "fast:80")]


def test_an_expired_lease_can_be_claimed_again(store: Store) -> None:
    _add(store, ["n1"])
    lease = T0 + timedelta(seconds=30)
    [first] = store.outbox.claim(["n1"], owner="dead", now=T0, lease_until=lease)
    assert store.outbox.due(lease - timedelta(seconds=1), limit=10) == []
    assert store.outbox.next_due() == lease
    [second] = store.outbox.claim(["n1"], owner="alive", now=lease, lease_until=lease)
    assert second.attempts == 2
    # The dead worker's late result is recorded as an attempt but does not move the row.
    assert not store.outbox.finish_attempt(first, _done(T0, lease), owner="dead")
    assert store.outbox.finish_attempt(second, _done(lease, lease), owner="alive")
    [row] = store.outbox.for_run("run_1")
    assert row.state == "delivered" and row.delivered_at == lease
    assert [a.attempt for a in store.outbox.attempts(["n1"])["n1"]] == [1, 2]
    # Delivered: the secret copy is gone.
    assert store.outbox.claim(["n1"], owner="x", now=lease, lease_until=lease) == []
    secret = store.database.scalar("SELECT secret FROM notifications WHERE id = 'n1'")
    assert secret is None


def test_retry_outcome_schedules_the_next_attempt(store: Store) -> None:
    _add(store, ["n1"])
    [claimed] = store.outbox.claim(["n1"], owner="a", now=T0, lease_until=T0)
    later = T0 + timedelta(seconds=10)
    throttled = AttemptRecord(
        started_at=T0,
        finished_at=T0,
        outcome="retry",
        status_code=429,
        error="busy",
        next_due=later,
        throttled=True,
    )
    store.outbox.finish_attempt(claimed, throttled, owner="a")
    [row] = store.outbox.for_run("run_1")
    assert (row.state, row.due_at, row.throttled, row.last_status_code) == (
        "pending",
        later,
        1,
        429,
    )
    assert store.outbox.due(T0, limit=10) == [] and store.outbox.due(later, limit=10)


def test_manual_retry_only_for_failed_and_with_a_fresh_budget(store: Store) -> None:
    _add(store, ["n1"])
    assert not store.outbox.retry("n1", T0)  # pending
    [claimed] = store.outbox.claim(["n1"], owner="a", now=T0, lease_until=T0)
    gone = AttemptRecord(
        started_at=T0, finished_at=T0, outcome="failed", status_code=404, error="x"
    )
    store.outbox.finish_attempt(claimed, gone, owner="a")
    assert store.outbox.retry("n1", T0 + timedelta(seconds=5))
    [row] = store.outbox.for_run("run_1")
    assert row.state == "pending" and row.budget_start == 1 and row.attempts == 1
    assert store.outbox.counts() == {"pending": 1}


def test_rows_go_with_their_run(store: Store) -> None:
    _add(store, ["n1"])
    [claimed] = store.outbox.claim(["n1"], owner="a", now=T0, lease_until=T0)
    store.outbox.finish_attempt(claimed, _done(T0, T0), owner="a")
    assert store.runs.delete_older_than(utcnow() + timedelta(days=1)) == 1
    assert store.outbox.for_run("run_1") == [] and store.outbox.attempts(["n1"]) == {"n1": []}


def test_finish_and_claim_next_stays_on_the_host(store: Store) -> None:
    _add(store, ["a1"], host="a:80")
    _add(store, ["b1"], host="b:80")
    _add(store, ["a2"], host="a:80")
    [first] = store.outbox.claim(["a1"], owner="w", now=T0, lease_until=T0)
    following = store.outbox.finish_and_claim_next(
        first, _done(T0, T0), owner="w", lease_until=T0 + timedelta(seconds=60)
    )
    assert following is not None and following.id == "a2" and following.attempts == 1
    assert (
        store.outbox.finish_and_claim_next(following, _done(T0, T0), owner="w", lease_until=T0)
        is None
    )
    assert [n.state for n in store.outbox.for_run("run_1")] == ["delivered", "pending", "delivered"]
