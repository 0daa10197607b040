"""Token expiry and action parsing, the audit diff, and the expiry check of the token cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.errors import Invalid, Unauthorized
from app.models import REDACTED
from app.services import audit
from app.services.tokens import TokenService, parse_actions, parse_expires_in
from app.store import Store


@pytest.mark.parametrize(
    ("text", "span"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
)
def test_expires_in(text: str, span: timedelta) -> None:
    assert parse_expires_in(text) == span


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-1d", "1.5d", "90m", "90 days", "4000d"])
def test_expires_in_refused(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_expires_in(text)
    assert "expires in" in caught.value.detail


def test_actions() -> None:
    assert parse_actions(None, "admin") is None
    assert parse_actions("trigger", "admin") == ["read", "trigger"]
    assert parse_actions("deploy, write,read", "admin") == ["read", "write", "deploy"]
    assert parse_actions("read", "viewer") == ["read"]
    with pytest.raises(Invalid, match="unknown"):
        parse_actions("trigger,launch", "admin")
    with pytest.raises(Invalid, match="viewer token can only read"):
        parse_actions("trigger", "viewer")
    with pytest.raises(Invalid, match="at least one"):
        parse_actions(" , ", "admin")


def test_field_diff_hides_secrets_and_shows_changes() -> None:
    before = {
        "schedule": "0 2 * * *",
        "command": "dbt build",
        "environment": {"A": "1", "B": "2"},
        "secret_environment": {"DB_PASSWORD": "hunter2-old", "GONE": "x"},
        "webhook_secret": "s3cret-before",
        "updated_at": "yesterday",
    }
    after = {
        "schedule": "0 3 * * *",
        "command": "dbt build",
        "environment": {"A": "1", "B": "3", "C": "4"},
        "secret_environment": {"DB_PASSWORD": "hunter2-new", "NEW": "y"},
        "webhook_secret": None,
        "updated_at": "today",
    }
    diff = audit.field_diff(before, after)
    assert diff == {
        "schedule": ["0 2 * * *", "0 3 * * *"],
        "environment.B": ["2", "3"],
        "environment.C": [None, "4"],
        "secret_environment.DB_PASSWORD": [REDACTED, REDACTED],
        "secret_environment.GONE": [REDACTED, None],
        "secret_environment.NEW": [None, REDACTED],
        "webhook_secret": [REDACTED, None],
    }
    assert "hunter2" not in str(diff) and "s3cret" not in str(diff)
    # A field named secret by the caller is hidden too; an unchanged secret is absent.
    assert audit.field_diff(
        {"values": {"K": "v1"}}, {"values": {"K": "v2"}}, secrets=["values"]
    ) == {"values.K": [REDACTED, REDACTED]}
    assert audit.field_diff(before, before) == {}


def test_record_takes_the_actor_from_the_context(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    store.migrate()
    org = store.orgs.get_or_create("acme")
    audit.record(store, org_id=org.id, action="job.update", object_type="job", object_id="j1")
    actor = audit.Actor(token_id="tok_1", name="ci", request_id="r-1", source_address="10.0.0.9")
    with audit.acting_as(actor):
        audit.record(store, org_id=org.id, action="run.trigger", object_type="run", object_id="r")
    newest, oldest = store.audit.page(org.id, before_seq=None, limit=10).events
    assert (oldest.actor_name, oldest.actor_token_id) == ("system", None)
    assert (newest.actor_name, newest.actor_token_id) == ("ci", "tok_1")
    assert (newest.request_id, newest.source_address) == ("r-1", "10.0.0.9")
    assert audit.current_actor.get() is None


def test_record_rolls_back_with_the_change(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    store.migrate()
    org = store.orgs.get_or_create("acme")
    with pytest.raises(RuntimeError), store.database.write():
        audit.record(store, org_id=org.id, action="job.update", object_type="job", object_id="j")
        raise RuntimeError("the change failed")
    assert store.audit.page(org.id, before_seq=None, limit=10).events == []


def test_an_expired_token_leaves_the_cache(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    store.migrate()
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    service = TokenService(store, clock=lambda: now[0])
    token, info = service.create("acme", "admin", "ci", expires_in="1h")
    assert info.expires_at == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert service.authenticate(token).token_name == "ci"
    assert service.cached(token) is not None
    now[0] += timedelta(hours=1, seconds=1)
    assert service.cached(token) is None
    with pytest.raises(Unauthorized) as caught:
        service.authenticate(token)
    assert "expired on 2026-01-01 01:00 UTC" in caught.value.detail
    assert "runyard tokens create" in caught.value.detail


def test_since() -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert audit.parse_since(None, now) is None
    assert audit.parse_since("90m", now) == now - timedelta(minutes=90)
    assert audit.parse_since("7d", now) == now - timedelta(days=7)
    assert audit.parse_since("2026-01-31T00:00:00+02:00", now) == datetime(
        2026, 1, 30, 22, tzinfo=UTC
    )
    for text in [
        "yesterday",
        "2026-01-31T00:00:00",  # no zone
        "999999d",  # 2,700 years
        "٣d",  # not an ASCII digit
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "-5d",
    ]:
        with pytest.raises(Invalid):
            audit.parse_since(text, now)


def test_retention_prunes_old_audit_events(tmp_path: Path) -> None:
    from app.services.retention import RetentionWorker

    store = Store(tmp_path / "a.db")
    store.migrate()
    org = store.orgs.get_or_create("acme")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    for age in (400, 10):
        audit.record(
            store,
            org_id=org.id,
            action="job.update",
            object_type="job",
            object_id=f"job_{age}",
            clock=lambda age=age: now - timedelta(days=age),  # type: ignore[misc]
        )
    # Runs are kept forever (0) but the audit trail has its own age.
    RetentionWorker(store, 0, lambda: now, audit_days=365).prune_once()
    left = store.audit.page(org.id, before_seq=None, limit=10).events
    assert [e.object_id for e in left] == ["job_10"]
