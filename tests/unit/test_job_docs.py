"""The stored job documents (``jobs.doc``, kept by triggers since migration 14) that the
job list serves: after every kind of write, the listed JSON equals encoding the jobs as the
API shows them, secrets REDACTED; and a database migrated from before has them too."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from app.api.views import job_out
from app.ids import new_id, utcnow
from app.models import Job
from app.store import Store
from app.store.migrations import MIGRATIONS
from tests.factories import saved_project


def _listed(store: Store, project_id: str) -> list[Any]:
    total, body = store.jobs.list_json(project_id)
    listed = msgspec.json.decode(body)
    assert total == len(listed)
    return listed  # type: ignore[no-any-return]


def _expected(store: Store, project_id: str) -> list[Any]:
    jobs = [job_out(j) for j in store.jobs.for_project(project_id)]
    return msgspec.json.decode(msgspec.json.encode(jobs))  # type: ignore[no-any-return]


def _job(org_id: str, project_id: str, name: str, **fields: Any) -> Job:
    now = utcnow()
    return Job(
        id=new_id("job"),
        org_id=org_id,
        project_id=project_id,
        name=name,
        command="dbt build",
        version=1,
        created_at=now,
        updated_at=now,
        **fields,
    )


def test_listed_documents_follow_every_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    org = store.orgs.get_or_create("acme")
    project = saved_project(store, org_id=org.id, org_slug=org.slug, name="shop")
    plain = _job(org.id, project.id, "plain")
    rich = _job(
        org.id,
        project.id,
        "rich",
        description='quote " and ✓ \\ and\nnewline',
        environment={"A": "1"},
        secret_environment={"TOKEN": "hunter2-secret"},
        webhook_headers={"X-Key": "header-secret"},
        webhook_secret="s" * 20,
        schedule="0 * * * *",
    )
    store.jobs.insert(plain)
    store.jobs.insert(rich)
    assert _listed(store, project.id) == _expected(store, project.id)

    # A new version: configuration, version, updated_at and the webhook secret change.
    later = msgspec.structs.replace(
        rich,
        version=2,
        description="second",
        webhook_secret=None,
        updated_at=rich.updated_at + timedelta(minutes=1),
    )
    assert store.jobs.update(later, expected_version=1)
    assert _listed(store, project.id) == _expected(store, project.id)
    assert _listed(store, project.id)[1]["webhook_secret_set"] is False

    store.jobs.set_sync(plain.id, "pending", 'cluster said "no"')
    listed = _listed(store, project.id)
    assert listed == _expected(store, project.id)
    assert (listed[0]["sync_state"], listed[0]["sync_error"]) == ("pending", 'cluster said "no"')

    # A migration's json_set on stored configurations reaches the documents too.
    with store.database.write() as db:
        db.conn.execute("UPDATE jobs SET config = json_set(config, '$.retries', 3)")
    assert [j["retries"] for j in _listed(store, project.id)] == [3, 3]
    assert _listed(store, project.id) == _expected(store, project.id)

    body = store.jobs.list_json(project.id)[1]
    for secret in ("hunter2-secret", "header-secret", "s" * 20):
        assert secret not in body
    store.close()


def test_migration_14_renders_documents_of_existing_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    store = Store(path)
    store.migrate()
    org = store.orgs.get_or_create("acme")
    project = saved_project(store, org_id=org.id, org_slug=org.slug, name="shop")
    store.jobs.insert(_job(org.id, project.id, "nightly", environment={"B": "2"}))
    store.close()
    # Back to the schema before 14, as an older runyard left it.
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TRIGGER jobs_doc_on_insert; DROP TRIGGER jobs_doc_on_update;"
        " ALTER TABLE jobs DROP COLUMN doc; DROP INDEX runs_by_org_status;"
        " DROP INDEX runs_by_org_age; DROP INDEX runs_by_project; DROP INDEX runs_by_age;"
        " DROP INDEX notifications_by_job; PRAGMA user_version = 13;"
    )
    conn.close()
    store = Store(path)
    assert store.migrate() == MIGRATIONS[-1].version
    assert _listed(store, project.id) == _expected(store, project.id)
    assert len(_listed(store, project.id)) == 1
    store.close()
