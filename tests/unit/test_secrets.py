"""The secret store: keys, sealing at rest, the migration that seals old plaintext, masking
in run logs and in runyard's own logs, file modes, and DNS failures at send time."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.ids import new_id, utcnow
from app.logs import JsonFormatter, TextFormatter, remember_secrets
from app.models import REDACTED, Job, Project, RunRecord
from app.notify.outbound import OutboundPolicy
from app.notify.result import SendResult
from app.notify.slack import SlackSender
from app.notify.webhook import WebhookSender
from app.secrets import SecretKeyError, box_for, key_file_for, split_secret
from app.store import Store
from app.store.jobs import config_of
from app.store.migrations import MIGRATIONS
from tests.factories import run_record, snapshot

HEADER = "Bearer hdr-9f3c1a7e5b2d"
ENV = "pw-4e8d2c6a0b1f"
HOOK = "whsec-7a1b3c5d9e2f4a6b"
SLACK = "https://hooks.slack.com/services/T0/B0/slk5e3a9c1b7d"
ALL = (HEADER, ENV, HOOK, SLACK)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _raw(database: Path) -> bytes:
    """Every byte SQLite keeps for ``database``: the file, its WAL and shared memory."""
    return b"".join(
        p.read_bytes()
        for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
        if p.exists()
    )


def _project(store: Store, **config: object) -> Project:
    org = store.orgs.get_or_create("acme")
    now = utcnow()
    project = Project(
        id=new_id("proj"),
        org_id=org.id,
        org_slug=org.slug,
        name="analytics",
        kind="dbt",
        created_at=now,
        updated_at=now,
        **config,  # type: ignore[arg-type]
    )
    store.projects.save(project)
    return project


def _job(store: Store, project: Project) -> Job:
    now = utcnow()
    job = Job(
        name="nightly",
        command="dbt build",
        webhook_headers={"Authorization": HEADER},
        secret_environment={"WAREHOUSE_PASSWORD": ENV},
        id=new_id("job"),
        project_id=project.id,
        org_id=project.org_id,
        version=1,
        webhook_secret=HOOK,
        webhook_secret_set=True,
        created_at=now,
        updated_at=now,
    )
    store.jobs.insert(job)
    return job


def _run(store: Store, project: Project, job: Job) -> RunRecord:
    run = run_record(
        org_id=project.org_id,
        project_id=project.id,
        job_id=job.id,
        job_name="analytics-nightly",
        status="running",
        start_time=utcnow(),
        snapshot_=snapshot(
            project_name=project.name,
            job=config_of(job),
            project_secret_environment=dict(project.secret_environment),
        ),
    )
    assert store.runs.insert(run)
    return run


# --- keys ---------------------------------------------------------------------------------


def test_key_file_database_and_wal_are_private_whatever_the_umask(
    tmp_path: Path, umask_022: None
) -> None:
    database = tmp_path / "state" / "runyard.db"
    store = Store(database)
    store.migrate()
    _job(store, _project(store))  # writes, so the WAL and shared memory exist
    assert Path(f"{database}-wal").exists() and Path(f"{database}-shm").exists()
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        assert _mode(path) == 0o600, path
    key = key_file_for(database)
    assert key == tmp_path / "state" / "runyard.db.key"
    assert _mode(key) == 0o600
    assert _mode(database.parent) == 0o700
    Fernet(key.read_text().strip().encode())  # a real Fernet key
    store.close()


def test_an_older_world_readable_database_is_made_private(tmp_path: Path, umask_022: None) -> None:
    database = tmp_path / "runyard.db"
    sqlite3.connect(database).execute("CREATE TABLE t (x)").connection.close()
    assert _mode(database) == 0o644
    Store(database).close()
    assert _mode(database) == 0o600


def test_the_same_key_file_opens_the_secrets_again(tmp_path: Path) -> None:
    database = tmp_path / "runyard.db"
    store = Store(database)
    store.migrate()
    job = _job(store, _project(store, slack_webhook_url=SLACK))
    store.close()
    again = Store(database)
    again.migrate()
    found = again.jobs.get_any(job.id)
    assert found is not None
    assert found.webhook_headers == {"Authorization": HEADER}
    assert found.secret_environment == {"WAREHOUSE_PASSWORD": ENV}
    assert found.webhook_secret == HOOK
    assert again.projects.get_any(job.project_id).slack_webhook_url == SLACK  # type: ignore[union-attr]
    again.close()


def test_a_wrong_key_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    database = tmp_path / "runyard.db"
    store = Store(database, secret_key=Fernet.generate_key().decode())
    store.migrate()
    _job(store, _project(store))
    store.close()

    other = Store(database, secret_key=Fernet.generate_key().decode())
    with pytest.raises(SecretKeyError, match="RUNYARD_SECRET_KEY"):
        other.migrate()
    other.close()
    # Unset, runyard would use the key file, which did not seal these either.
    with pytest.raises(SecretKeyError, match="key file"):
        Store(database).migrate()


def test_a_malformed_key_is_refused_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match=r"RUNYARD_SECRET_KEY.*not a Fernet key"):
        box_for(str(tmp_path / "x.db"), "not-a-key")


def test_rotation_seals_with_the_first_key_and_opens_with_any(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    database = tmp_path / "runyard.db"
    store = Store(database, secret_key=old)
    store.migrate()
    job = _job(store, _project(store))
    store.close()
    rotated = Store(database, secret_key=f"{new},{old}")
    rotated.migrate()
    assert rotated.jobs.get_any(job.id).webhook_secret == HOOK  # type: ignore[union-attr]
    rotated.close()


# --- sealed at rest -----------------------------------------------------------------------


def test_nothing_secret_is_stored_in_the_clear(tmp_path: Path) -> None:
    database = tmp_path / "runyard.db"
    store = Store(database)
    store.migrate()
    project = _project(store, slack_webhook_url=SLACK, secret_environment={"P_TOKEN": ENV})
    job = _job(store, project)
    run = _run(store, project, job)
    store.runs.append_log(run.id, f"connecting with {ENV}\n", 10_000, utcnow())
    raw = _raw(database)
    for value in ALL:
        assert value.encode() not in raw, value
    # What readers see: names and REDACTED, never values.
    [version] = store.jobs.versions(job.id)
    assert version.config.webhook_headers == {"Authorization": REDACTED}
    assert version.config.secret_environment == {"WAREHOUSE_PASSWORD": REDACTED}
    assert version.secrets_changed == [
        "secret_environment.WAREHOUSE_PASSWORD",
        "webhook_headers.Authorization",
        "webhook_secret",
    ]
    _, listed = store.jobs.list_json(project.id)
    assert HEADER not in listed and REDACTED in listed
    # ... while the executor and the notifier get the real ones.
    record = store.runs.record(run.id)
    assert record is not None
    assert record.snapshot.job.webhook_headers == {"Authorization": HEADER}
    assert record.snapshot.job.secret_environment == {"WAREHOUSE_PASSWORD": ENV}
    assert record.snapshot.project_secret_environment == {"P_TOKEN": ENV}
    assert store.runs.read_log(run.id) == f"connecting with {REDACTED}\n"
    store.close()


def test_a_new_version_names_the_secrets_it_changed(tmp_path: Path) -> None:
    store = Store(tmp_path / "runyard.db")
    store.migrate()
    job = _job(store, _project(store))
    changed = Job(
        **{
            **{name: getattr(job, name) for name in Job.__struct_fields__},
            "version": 2,
            "webhook_headers": {"Authorization": "Bearer rotated-0000"},
            "description": "now documented",
        }
    )
    assert store.jobs.update(changed, expected_version=1)
    newest, first = store.jobs.versions(job.id)
    assert newest.secrets_changed == ["webhook_headers.Authorization"]
    assert newest.config.webhook_headers == {"Authorization": REDACTED}
    assert first.version == 1
    store.close()


def _plaintext_v4_database(database: Path) -> dict[str, str]:
    """A database as runyard wrote it before secrets were sealed (schema version 4)."""
    conn = sqlite3.connect(database)
    for migration in MIGRATIONS[:4]:
        for statement in migration.statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    now = "2026-04-28T02:00:00Z"
    conn.execute("INSERT INTO orgs VALUES ('org_1', 'acme', ?)", (now,))
    project_doc = json.dumps({"name": "analytics", "kind": "dbt", "environment": {"A": "1"}})
    conn.execute(
        "INSERT INTO projects (id, org_id, name, kind, config, slack_webhook_url, created_at,"
        " updated_at) VALUES ('proj_1', 'org_1', 'analytics', 'dbt', ?, ?, ?, ?)",
        (project_doc, SLACK, now, now),
    )
    config = {"name": "nightly", "command": "dbt build", "webhook_headers": {}}
    documents = []
    for value in ("Bearer old-1111aaaa", HEADER):
        config = {**config, "webhook_headers": {"Authorization": value}}
        documents.append(json.dumps(config))
    conn.execute(
        "INSERT INTO jobs (id, org_id, project_id, name, config, webhook_secret, version,"
        " created_at, updated_at) VALUES ('job_1', 'org_1', 'proj_1', 'nightly', ?, ?, 2, ?, ?)",
        (documents[-1], HOOK, now, now),
    )
    for version, document in enumerate(documents, start=1):
        conn.execute("INSERT INTO job_versions VALUES ('job_1', ?, ?, ?)", (version, document, now))
    snapshot = {
        "project_name": "analytics",
        "project_kind": "dbt",
        "image": None,
        "path": None,
        "service_account": None,
        "template_overrides": {},
        "project_environment": {},
        "project_resources": {},
        "job": config,
        "job_version": 2,
        "argv": ["dbt", "build"],
    }
    conn.execute(
        "INSERT INTO runs (id, org_id, project_id, job_id, job_type, status, triggered_by,"
        " command, job_version, executor, snapshot, created_at, updated_at) VALUES ('run_1',"
        " 'org_1', 'proj_1', 'job_1', 'build', 'failed', 'manual', 'dbt build', 2, 'local', ?,"
        " ?, ?)",
        (json.dumps(snapshot), now, now),
    )
    conn.execute(
        "INSERT INTO notifications (id, org_id, run_id, job_id, kind, event, host, secret,"
        " state, due_at, created_at, updated_at) VALUES ('ntf_1', 'org_1', 'run_1', 'job_1',"
        " 'webhook', 'failure', 'example.com', ?, 'pending', ?, ?, ?)",
        (HOOK, now, now, now),
    )
    conn.commit()
    conn.close()
    return {"old": "Bearer old-1111aaaa"}


def test_the_migration_seals_what_older_versions_stored_in_the_clear(tmp_path: Path) -> None:
    database = tmp_path / "runyard.db"
    extra = _plaintext_v4_database(database)
    assert HEADER.encode() in _raw(database)

    store = Store(database)
    assert store.migrate() == MIGRATIONS[-1].version
    raw = _raw(database)
    for value in (HEADER, HOOK, SLACK, extra["old"]):
        assert value.encode() not in raw, value
    job = store.jobs.get_any("job_1")
    assert job is not None
    assert job.webhook_headers == {"Authorization": HEADER} and job.webhook_secret == HOOK
    assert job.secret_environment == {}
    project = store.projects.get_any("proj_1")
    assert project is not None and project.slack_webhook_url == SLACK
    newest, first = store.jobs.versions("job_1")
    assert newest.secrets_changed == ["webhook_headers.Authorization"]
    assert first.secrets_changed == ["webhook_headers.Authorization"]
    assert newest.config.webhook_headers == {"Authorization": REDACTED}
    record = store.runs.record("run_1")
    assert record is not None and record.snapshot.job.webhook_headers == {"Authorization": HEADER}
    [claimed] = store.outbox.claim(
        ["ntf_1"], owner="t", now=utcnow(), lease_until=utcnow() + timedelta(minutes=1)
    )
    assert claimed.secret == HOOK
    # The list the API renders in SQL has the new field and no value.
    _, listed = store.jobs.list_json("proj_1")
    assert '"secret_environment":{}' in listed and HEADER not in listed
    store.close()


# --- masking ------------------------------------------------------------------------------


def test_run_logs_mask_secrets_even_cut_between_chunks(tmp_path: Path) -> None:
    store = Store(tmp_path / "runyard.db")
    store.migrate()
    project = _project(store, secret_environment={"P_TOKEN": "tok-abcdef123456"})
    run = _run(store, project, _job(store, project))
    now = utcnow()
    chunks = (
        "password: pw-4e8",
        "d2c6a0b1f and ",
        "token tok-abcdef123456\n",
        "hdr-9f3c1a7e5b2d\n",
    )
    for chunk in chunks:
        store.runs.append_log(run.id, chunk, 10_000, now)
    text = store.runs.read_log(run.id)
    # The environment's secrets are masked; webhook headers never reach the process, and
    # are not masked (a header "X-Team: data" would blank "data" from every line).
    assert text == f"password: {REDACTED} and token {REDACTED}\nhdr-9f3c1a7e5b2d\n"
    assert ENV not in text and "pw-4e8" not in text
    size = store.database.scalar("SELECT log_bytes FROM runs WHERE id = ?", (run.id,))
    assert size == len(text.encode())
    assert store.runs.mask_log(run.id, "live: pw-4e8d2c6a0b1f") == f"live: {REDACTED}"
    store.close()


def test_split_secret_finds_the_cut() -> None:
    assert split_secret("abc pw-4e", "8d2c6a0b1f rest", [ENV]) == (5, 10)
    assert split_secret("abc", "def", [ENV]) == (0, 0)


def test_runyards_own_log_lines_never_show_a_decrypted_secret() -> None:
    remember_secrets(["s3cr3t-value-for-logs", "Bearer tok-abcdef123456"])
    record = logging.LogRecord(
        "runyard.test", logging.WARNING, __file__, 1, "sent %s", ("s3cr3t-value-for-logs",), None
    )
    record.error = "the receiver echoed Authorization: Bearer tok-abcdef123456"
    record.environment = {"X": "plain"}
    line = JsonFormatter().format(record)
    assert "s3cr3t-value-for-logs" not in line and "tok-abcdef123456" not in line
    entry = json.loads(line)
    assert entry["message"] == "sent ********"
    assert "environment" not in entry
    text = TextFormatter("%(message)s").format(record)
    assert text == "sent ********"


# --- DNS failures at send time ------------------------------------------------------------


def _send_webhook(url: str) -> SendResult:
    sender = WebhookSender(OutboundPolicy(), timeout=2.0, per_host=1)
    try:
        return sender.send(
            url, b"{}", event="failure", delivery_id="ntf_x", job_headers={}, secret=None
        )
    finally:
        sender.close()


def test_a_name_that_does_not_resolve_is_retried_not_failed() -> None:
    # .invalid never resolves (RFC 6761): a DNS outage looks the same to runyard.
    sent = _send_webhook("https://runyard-hook.invalid/hook")
    assert sent.outcome == "retry", sent
    assert "could not be resolved" in (sent.error or "")


def test_a_refused_address_still_fails_at_once() -> None:
    sent = _send_webhook("http://127.0.0.1:9/hook")
    assert sent.outcome == "failed" and "loopback" in (sent.error or "")


def test_a_slack_incoming_webhook_that_does_not_resolve_is_retried() -> None:
    from app.notify.messages import SlackMessage

    sender = SlackSender(token=None, base_url=None, timeout=2.0, policy=OutboundPolicy())
    sent = sender.post_incoming(
        "https://hooks.runyard-slack.invalid/services/T/B/X",
        SlackMessage(text="x", blocks=[], metadata={}),
    )
    assert sent.outcome == "retry", sent
