"""Web UI sessions, CSRF and roles without a browser or a server: SessionManager over a real
store, and the handlers' checks (app/web/common.py) on real Litestar requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Request

from app.errors import Forbidden, Unauthorized
from app.services.tokens import TokenService
from app.settings import Settings, SettingsError
from app.store import Store
from app.web.common import ActionForm, local_ui_path, session_of, writer_of
from app.web.sessions import SESSION_COOKIE, SessionManager, SignInRequired


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
def tokens(store: Store) -> TokenService:
    return TokenService(store)


@pytest.fixture
def sessions(store: Store, tokens: TokenService, clock: Clock) -> SessionManager:
    return SessionManager(store, tokens, b"k" * 32, timedelta(hours=12), clock=clock)


def _request(
    method: str = "GET", path: str = "/ui/", cookie: str | None = None
) -> Request[Any, Any, Any]:
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"{SESSION_COOKIE}={cookie}".encode()))
    path, _, query = path.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "scheme": "http",
        "server": ("testserver", 80),
        "root_path": "",
        "app": None,
        "state": {},
    }
    return Request(scope)  # type: ignore[arg-type]


def test_sign_in_resolve_and_sign_out(sessions: SessionManager, tokens: TokenService) -> None:
    token, info = tokens.create("acme", "admin")
    cookie, session = sessions.sign_in(token)
    assert token not in cookie
    assert session.principal.org_slug == "acme" and session.is_admin
    assert session.expires_at == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    found = sessions.resolve(cookie)
    assert found is not None and found.principal.token_id == info.id
    assert found.csrf_token == session.csrf_token
    sessions.sign_out(cookie)
    assert sessions.resolve(cookie) is None


def test_the_database_holds_no_usable_session_id(
    sessions: SessionManager, tokens: TokenService, store: Store
) -> None:
    token, _ = tokens.create("acme", "admin")
    cookie, _ = sessions.sign_in(token)
    session_id = cookie.rpartition(".")[0]
    stored = store.database.rows("SELECT id_hash FROM ui_sessions")
    assert len(stored) == 1 and session_id not in stored[0]["id_hash"]
    # The stored value as a cookie (someone with a copy of the database) opens nothing.
    assert sessions.resolve(stored[0]["id_hash"]) is None


def test_sessions_expire(sessions: SessionManager, tokens: TokenService, clock: Clock) -> None:
    token, _ = tokens.create("acme", "viewer")
    cookie, _ = sessions.sign_in(token)
    clock.now += timedelta(hours=11, minutes=59)
    assert sessions.resolve(cookie) is not None
    clock.now += timedelta(minutes=1)
    assert sessions.resolve(cookie) is None


def test_revoking_the_token_ends_its_sessions(
    sessions: SessionManager, tokens: TokenService
) -> None:
    token, info = tokens.create("acme", "admin")
    first, _ = sessions.sign_in(token)
    second, _ = sessions.sign_in(token)
    other_token, _ = tokens.create("acme", "admin")
    other, _ = sessions.sign_in(other_token)
    tokens.revoke(info.id)
    assert sessions.resolve(first) is None and sessions.resolve(second) is None
    assert sessions.resolve(other) is not None
    # A revoked token cannot start a session either (the cache was cleared by revoke).
    with pytest.raises(Unauthorized):
        sessions.sign_in(token)


@pytest.mark.parametrize("token", ["", "nope", "ryd_" + "a" * 43, "Bearer ryd_x"])
def test_bad_tokens_start_no_session(sessions: SessionManager, token: str) -> None:
    with pytest.raises(Unauthorized):
        sessions.sign_in(token)


def test_cookies_are_signed(sessions: SessionManager, tokens: TokenService) -> None:
    token, _ = tokens.create("acme", "admin")
    cookie, _ = sessions.sign_in(token)
    session_id, _, mac = cookie.rpartition(".")
    for forged in (
        "",
        session_id,
        f"{session_id}.",
        f"{session_id}.{'0' * len(mac)}",
        f"x{session_id[1:]}.{mac}",
        cookie + "0",
        "." * 300,
    ):
        assert sessions.resolve(forged) is None, forged
    # The same id under another server's key is refused too.
    other = SessionManager(sessions._store, tokens, b"o" * 32, timedelta(hours=1))
    assert other.resolve(cookie) is None


def test_csrf_tokens(sessions: SessionManager, tokens: TokenService) -> None:
    token, _ = tokens.create("acme", "admin")
    _, mine = sessions.sign_in(token)
    _, theirs = sessions.sign_in(token)
    assert mine.csrf_token != theirs.csrf_token
    assert sessions.csrf_ok(mine, mine.csrf_token)
    for wrong in (None, "", theirs.csrf_token, mine.csrf_token[:-1], mine.csrf_token + "x"):
        assert not sessions.csrf_ok(mine, wrong)


def test_sign_in_form_csrf_is_a_double_submit(sessions: SessionManager) -> None:
    nonce = sessions.new_signin_nonce()
    other = sessions.new_signin_nonce()
    assert nonce != other
    assert sessions.signin_csrf_ok(nonce, sessions.signin_csrf(nonce))
    assert not sessions.signin_csrf_ok(other, sessions.signin_csrf(nonce))
    assert not sessions.signin_csrf_ok(None, sessions.signin_csrf(nonce))
    assert not sessions.signin_csrf_ok(nonce, None)
    assert not sessions.signin_csrf_ok(nonce, nonce)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/ui/", "/ui/"),
        ("/ui", "/ui"),
        ("/ui/runs/run_1?nodes=2", "/ui/runs/run_1?nodes=2"),
        ("/ui/jobs/j/diff?from=1&to=2", "/ui/jobs/j/diff?from=1&to=2"),
        (None, None),
        ("", None),
        ("/", None),
        ("/api/v1/runs", None),
        ("https://evil.example/ui/", None),
        ("//evil.example/ui/", None),
        ("/ui//evil.example", None),
        ("/\\evil.example", None),
        ("/ui/\\evil", None),
        ("/ui/../api", None),
        ("/uix", None),
        ("/ui/\nSet-Cookie: x", None),
        ("/ui/\n", None),
        ("/ui/" + "a" * 2000, None),
    ],
)
def test_only_local_ui_paths_are_followed_after_sign_in(
    value: str | None, expected: str | None
) -> None:
    assert local_ui_path(value) == expected


def test_pages_without_a_session_ask_to_sign_in(sessions: SessionManager) -> None:
    with pytest.raises(SignInRequired) as raised:
        session_of(_request("GET", "/ui/runs/run_1?nodes=2"), sessions)
    assert raised.value.detail == "/ui/runs/run_1?nodes=2"  # where to come back to
    with pytest.raises(SignInRequired) as raised:
        session_of(_request("POST", "/ui/jobs/j/toggle"), sessions)
    assert raised.value.detail == "/ui/"  # a form is not come back to


def test_writes_need_the_csrf_token_then_the_admin_role(
    sessions: SessionManager, tokens: TokenService
) -> None:
    admin, _ = tokens.create("acme", "admin")
    viewer, _ = tokens.create("acme", "viewer")
    admin_cookie, admin_session = sessions.sign_in(admin)
    viewer_cookie, viewer_session = sessions.sign_in(viewer)
    post = "/ui/jobs/j/toggle"
    found = writer_of(
        _request("POST", post, admin_cookie),
        sessions,
        ActionForm(admin_session.csrf_token),
        "write",
    )
    assert found.principal == admin_session.principal
    with pytest.raises(Forbidden, match="security token"):
        writer_of(_request("POST", post, admin_cookie), sessions, ActionForm(""), "write")
    with pytest.raises(Forbidden, match="security token"):
        # Another session's token: CSRF tokens are per session.
        writer_of(
            _request("POST", post, admin_cookie),
            sessions,
            ActionForm(viewer_session.csrf_token),
            "write",
        )
    # A viewer with a good token is still refused, by role.
    with pytest.raises(Forbidden, match="viewer"):
        writer_of(
            _request("POST", post, viewer_cookie),
            sessions,
            ActionForm(viewer_session.csrf_token),
            "write",
        )
    # A viewer's forged form hears about the token, not about roles.
    with pytest.raises(Forbidden, match="security token"):
        writer_of(_request("POST", post, viewer_cookie), sessions, ActionForm("forged"), "write")


def test_a_role_change_is_seen_at_once(
    sessions: SessionManager, tokens: TokenService, store: Store
) -> None:
    """The session reads its token's role on every request, not the role at sign-in."""
    token, info = tokens.create("acme", "admin")
    cookie, _ = sessions.sign_in(token)
    with store.database.write() as db:
        db.conn.execute("UPDATE tokens SET role = 'viewer' WHERE id = ?", (info.id,))
    found = sessions.resolve(cookie)
    assert found is not None and not found.is_admin


def test_stale_sessions_are_deleted_after_a_week(
    sessions: SessionManager, tokens: TokenService, store: Store, clock: Clock
) -> None:
    token, _ = tokens.create("acme", "admin")
    old, _ = sessions.sign_in(token)
    sessions.sign_out(old)
    clock.now += timedelta(days=8)
    sessions.sign_in(token)
    assert store.database.scalar("SELECT count(*) FROM ui_sessions") == 1


def test_session_lifetime_setting() -> None:
    assert Settings.from_env({}).ui_session_hours == 12
    assert Settings.from_env({"RUNYARD_UI_SESSION_HOURS": "0.5"}).ui_session_hours == 0.5
    for bad in ("0", "-1", "721", "soon"):
        with pytest.raises(SettingsError, match="RUNYARD_UI_SESSION_HOURS"):
            Settings.from_env({"RUNYARD_UI_SESSION_HOURS": bad})
