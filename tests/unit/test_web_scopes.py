"""A UI session carries its token's scope and expiry (docs/ui.md): SessionManager over a real
store with a controlled clock, and the handlers' action check (app/web/common.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Request

from app.errors import Forbidden
from app.models import Principal
from app.services import audit
from app.services.tokens import TokenService
from app.store import Store
from app.web.common import ActionForm, session_of, writer_of, writing
from app.web.sessions import SESSION_COOKIE, SessionManager, SignInRequired, TokenExpired


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    made = Store(tmp_path / "runyard.db")
    made.migrate()
    return made


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(store: Store, clock: Clock) -> TokenService:
    # The token service and the sessions share the clock: tokens expire on it.
    return TokenService(store, clock=clock)


@pytest.fixture
def sessions(store: Store, tokens: TokenService, clock: Clock) -> SessionManager:
    return SessionManager(store, tokens, b"k" * 32, timedelta(hours=12), clock=clock)


def _post(path: str, cookie: str) -> Request[Any, Any, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", f"{SESSION_COOKIE}={cookie}".encode())],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("203.0.113.9", 50000),
        "root_path": "",
        "app": None,
        "state": {},
    }
    return Request(scope)  # type: ignore[arg-type]


def test_a_session_carries_its_tokens_name_scope_and_expiry(
    sessions: SessionManager, tokens: TokenService, store: Store, clock: Clock
) -> None:
    admin, _ = tokens.create("acme", "admin")
    org_id = tokens.authenticate(admin).org_id
    token, info = tokens.create("acme", "admin", "ci", actions="trigger", expires_in="2h")
    cookie, session = sessions.sign_in(token)
    # The session ends with its token (2 hours), not after the 12-hour session lifetime.
    assert session.expires_at == clock.now + timedelta(hours=2)
    found = sessions.resolve(cookie)
    assert found is not None
    assert found.principal == Principal(
        org_id=org_id,
        org_slug="acme",
        role="admin",
        token_id=info.id,
        token_name="ci",
        project_id=None,
        actions=frozenset({"read", "trigger"}),
        expires_at=clock.now + timedelta(hours=2),
    )
    assert found.may("read") and found.may("trigger")
    assert not found.may("write") and not found.may("deploy")
    assert sessions.token_expired_at(cookie) is None


def test_an_expired_tokens_session_is_not_active_and_says_why(
    sessions: SessionManager, tokens: TokenService, store: Store, clock: Clock
) -> None:
    token, info = tokens.create("acme", "admin", "short", expires_in="1h")
    cookie, _ = sessions.sign_in(token)
    # Even a session whose own expiry is later (one signed in before sessions were capped
    # at their token's expiry) ends with the token.
    with store.database.write() as db:
        db.conn.execute("UPDATE ui_sessions SET expires_at = '2099-01-01T00:00:00.000000Z'")
    clock.now += timedelta(hours=1)
    assert sessions.resolve(cookie) is None
    assert sessions.token_expired_at(cookie) == datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
    with pytest.raises(SignInRequired) as raised:
        session_of(_post("/ui/jobs/j/toggle", cookie), sessions)
    assert raised.value.reason == "expired"
    # Signing in again with it says it expired and when, in the API's words.
    with pytest.raises(TokenExpired, match="expired on 2026-11-30 13:00 UTC"):
        sessions.sign_in(token)
    # A revoked token's session is just gone: no "expired" reason.
    tokens.revoke(info.id)
    assert sessions.token_expired_at(cookie) is None


def test_writes_need_the_tokens_action(sessions: SessionManager, tokens: TokenService) -> None:
    token, _ = tokens.create("acme", "admin", "ci", actions="trigger")
    cookie, session = sessions.sign_in(token)
    form = ActionForm(session.csrf_token)
    assert writer_of(_post("/ui/jobs/j/trigger", cookie), sessions, form, "trigger") == session
    for action in ("write", "deploy"):
        with pytest.raises(
            Forbidden, match=f"This token \\(ci\\) may only: read, trigger; .*'{action}'"
        ):
            writer_of(_post("/ui/jobs/j/toggle", cookie), sessions, form, action)


def test_writing_acts_as_the_sessions_token(sessions: SessionManager, tokens: TokenService) -> None:
    token, info = tokens.create("acme", "admin", "deployer")
    cookie, session = sessions.sign_in(token)
    assert audit.current_actor.get() is None
    with writing(
        _post("/ui/jobs/j/trigger", cookie), sessions, ActionForm(session.csrf_token), "trigger"
    ):
        actor = audit.current_actor.get()
    assert actor == audit.Actor(
        token_id=info.id, name="deployer", request_id=None, source_address="203.0.113.9"
    )
    assert audit.current_actor.get() is None
    # A refused write sets no actor at all.
    with (
        pytest.raises(Forbidden),
        writing(_post("/ui/jobs/j/trigger", cookie), sessions, ActionForm("forged"), "trigger"),
    ):
        pytest.fail("a forged form must not get here")
