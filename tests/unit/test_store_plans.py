"""Query plans of the hot run reads: each one the store really sends (captured from the
connection) is answered from an index, never a scan of the runs table or a sort of its
matches. The database has no statistics, as a production one (runyard never ANALYZEs),
so these are the plans SQLite picks for any size: what keeps them fast at ten million runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.ids import utcnow
from app.store import Store
from tests.factories import run_record

ORGS = ("org_a", "org_b")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "plans.db")
    store.migrate()
    # Without statistics the planner breaks ties by the order of the schema: every order
    # must give the same plans (an upgraded database has its indexes in another order).
    with store.database.write() as db:
        for (sql,) in db.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name IN ('runs_by_org', 'runs_by_job')"
        ).fetchall():
            db.conn.execute(f"DROP INDEX {sql.split()[2]}")
            db.conn.execute(sql)
    with store.database.write() as db:
        for org in ORGS:
            db.conn.execute("INSERT INTO orgs VALUES (?, ?, '2026-01-01T00:00:00Z')", (org, org))
    now = utcnow()
    for i in range(60):
        org = ORGS[i % 2]
        store.runs.insert(
            run_record(
                org_id=org,
                project_id=f"proj_{org}_{i % 3}",
                job_id=f"job_{org}_{i % 5}",
                status="success" if i % 4 else "failed",
                created_at=now - timedelta(hours=i),
                duration_seconds=10.0 + i,
            )
        )
    yield store
    store.close()


def plans(store: Store, call: Callable[[], Any]) -> dict[str, str]:
    """Each statement on the runs table that ``call`` sends, with its query plan."""
    conn = store.database.db.conn
    sent: list[str] = []
    conn.set_trace_callback(sent.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    found = {}
    for sql in sent:
        if sql.lstrip().upper().startswith("SELECT") and " runs " in f"{sql} ":
            rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            found[sql] = "; ".join(row[3] for row in rows)
    assert found, "the call sent no query on runs"
    return found


def assert_indexed(found: dict[str, str], *indexes: str) -> None:
    for sql, plan in found.items():
        assert "SCAN runs" not in plan, f"{sql}\n  scans the table: {plan}"
        # Sorting is for the seqs of a short window only (at most TOTAL_CAP integers, read
        # from the index), never for rows.
        sorts_seqs = sql.startswith("SELECT seq FROM") and "COVERING INDEX" in plan
        assert "TEMP B-TREE" not in plan or sorts_seqs, f"{sql}\n  sorts its matches: {plan}"
        assert "SEARCH runs USING" in plan, f"{sql}\n  {plan}"  # an index or the seq key
    used = " ".join(found.values())
    for index in indexes:
        assert index in used, f"{index} not used: {found}"
    # A job's or a project's list never walks the org's index (all of the org's runs).
    if any(i in ("runs_by_job", "runs_by_job_status", "runs_by_project") for i in indexes):
        assert "runs_by_org" not in used, found


def test_newest_runs_of_a_job_and_their_count_read_the_job_index(store: Store) -> None:
    found = plans(
        store, lambda: store.runs.page("org_a", project_id="proj_org_a_0", job_id="job_org_a_0")
    )
    assert_indexed(found, "runs_by_job")
    # The page and the count read only the index: no row of several KB per run.
    assert all("COVERING INDEX" in plan for sql, plan in found.items() if "count(" in sql)


@pytest.mark.parametrize(
    ("filters", "cap", "index"),
    [
        ({}, 10_000, "runs_by_org"),
        ({"status": "failed"}, 10_000, "runs_by_org_status"),
        ({"job_id": "job_org_a_1"}, 10_000, "runs_by_job"),
        ({"project_id": "proj_org_a_1"}, 10_000, "runs_by_project"),
        ({"job_id": "job_org_a_1", "status": "success"}, 10_000, "runs_by_job_status"),
        ({"project_id": "proj_org_a_1", "since": timedelta(days=1)}, 10_000, "runs_by_project"),
        # A short window of the org (at most the cap): a range of runs_by_org_age.
        ({"since": timedelta(hours=10)}, 10_000, "runs_by_org_age"),
        ({"status": "failed", "since": timedelta(hours=10)}, 10_000, "runs_by_org_age"),
        # A long one (more than the cap): the newest runs, walked in seq order.
        ({"since": timedelta(days=400)}, 4, "runs_by_org"),
        ({"status": "failed", "since": timedelta(days=400)}, 4, "runs_by_org_status"),
    ],
)
def test_org_wide_lists_with_filters_use_an_index(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    filters: dict[str, Any],
    cap: int,
    index: str,
) -> None:
    monkeypatch.setattr("app.store.runs.TOTAL_CAP", cap)
    if "since" in filters:
        filters = filters | {"since": utcnow() - filters["since"]}
    first = store.runs.page("org_a", limit=5, **filters)
    found = plans(store, lambda: store.runs.page("org_a", limit=5, **filters))
    assert_indexed(found, index)
    assert all("COVERING INDEX" in plan for sql, plan in found.items() if "count(" in sql)
    # The same runs, whichever way they were read.
    everything = store.runs.page("org_a", limit=100)
    since = filters.get("since")
    expected = [
        r.id
        for r in everything.runs
        if (since is None or r.created_at >= since)
        and all(getattr(r, k) == v for k, v in filters.items() if k != "since")
    ]
    assert [r.id for r in first.runs] == expected[:5]
    assert first.total == min(len(expected), cap)
    if first.next_cursor is not None:  # a page deep in the list: a cursor, never OFFSET
        cursor = int(first.next_cursor)
        deeper = plans(store, lambda: store.runs.page("org_a", limit=5, cursor=cursor, **filters))
        assert_indexed(deeper, index)
        assert not any("OFFSET" in sql.upper() for sql in deeper)


def test_page_counts_are_capped(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.store.runs.TOTAL_CAP", 20)
    page = store.runs.page("org_a", limit=5)
    assert (page.total, page.total_capped) == (20, True)  # 30 match
    page = store.runs.page("org_a", job_id="job_org_a_0", limit=5)
    assert (page.total, page.total_capped) == (6, False)


def test_job_status_reads_use_the_job_indexes(store: Store) -> None:
    since = utcnow() - timedelta(days=7)

    def status() -> None:
        store.runs.counts_by_status("job_org_a_0")
        store.runs.counts_by_status("job_org_a_0", since)
        store.runs.durations("job_org_a_0", since)
        store.runs.last("job_org_a_0")

    found = plans(store, status)
    assert_indexed(found, "runs_by_job_status", "runs_by_job")
    # Counts and durations come from the index alone.
    assert all("COVERING INDEX" in plan for sql, plan in found.items() if "LIMIT 1" not in sql)


def test_retention_finds_old_runs_by_age_without_scanning(store: Store) -> None:
    found = plans(store, lambda: store.runs.old_runs(utcnow() - timedelta(hours=30), 10))
    assert_indexed(found, "runs_by_age")
    assert all("COVERING INDEX" in plan for plan in found.values())


def test_a_jobs_notifications_and_old_runless_alerts_are_read_from_an_index(
    store: Store,
) -> None:
    """GET …/jobs/{job_id}/notifications and retention's walk of alerts without a run
    (migration 15): neither scans the notifications table nor sorts its rows."""
    conn = store.database.db.conn
    sent: list[str] = []
    conn.set_trace_callback(sent.append)
    try:
        store.outbox.for_job("org_a", "job_org_a_0", limit=50, before=100)
        store.outbox.old_runless(utcnow(), 200)
    finally:
        conn.set_trace_callback(None)
    reads = [s for s in sent if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2, sent
    for sql in reads:
        plan = "; ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
        assert "SCAN notifications" not in plan and "TEMP B-TREE" not in plan, f"{sql}: {plan}"
    used = " ".join(
        r[3] for sql in reads for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    )
    assert "notifications_by_job" in used and "notifications_by_run" in used, used
