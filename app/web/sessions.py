"""Web UI sign-in: server-side sessions behind a signed cookie, and CSRF tokens.

A session is a random 256-bit id. The browser's cookie holds the id and an HMAC of it
(keyed by a key derived from runyard's secret key), so a forged or altered cookie is
refused before the database is asked; the database holds only the id's SHA-256. Every page
reads the session joined with its API token: signing out, expiry and revoking the token end
it at once (the token service's two-second cache is not consulted for sessions).

CSRF: each session has its own random secret, sent back in every form as ``csrf_token`` and
compared in constant time. The sign-in form, which comes before any session, uses a double
submit: a random cookie and, in the form, its HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from app.errors import RunyardError, Unauthorized
from app.ids import utcnow
from app.models import Principal
from app.services.ratelimit import RateLimiter
from app.services.tokens import ACTIONS, TokenService, expired_message, hash_token
from app.store import Store

SESSION_COOKIE = "runyard_session"
SIGNIN_COOKIE = "runyard_signin"
# Ended and expired sessions are kept this long (an audit trail of sign-ins), then deleted.
KEEP_ENDED = timedelta(days=7)
_MAX_COOKIE = 200  # a real cookie is 43 + 1 + 43 characters


class UiSession(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    csrf_token: str
    expires_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.principal.can_write

    def may(self, action: str) -> bool:
        """Whether the session's token may take ``action`` (app/services/tokens.py ACTIONS):
        what the pages ask before showing a button, as the API's guard asks of a route."""
        if action != "read" and not self.principal.can_write:
            return False
        return self.principal.actions is None or action in self.principal.actions

    @property
    def allowed(self) -> str | None:
        """The token's action set for the page header (``read, trigger``); None: all its
        role allows."""
        actions = self.principal.actions
        return None if actions is None else ", ".join(a for a in ACTIONS if a in actions)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionManager:
    def __init__(
        self,
        store: Store,
        tokens: TokenService,
        key: bytes,
        lifetime: timedelta,
        clock: Callable[[], datetime] = utcnow,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        # A session spends its token's request budget, as the token would on the API.
        self._limiter = limiter
        self._key = key
        self.lifetime = lifetime
        self._clock = clock

    # --- cookies --------------------------------------------------------------------------

    def _mac(self, purpose: bytes, value: str) -> str:
        digest = hmac.new(self._key, purpose + b":" + value.encode(), hashlib.sha256)
        return digest.hexdigest()

    def _cookie(self, session_id: str) -> str:
        return f"{session_id}.{self._mac(b'session', session_id)}"

    def _session_id(self, cookie: str | None) -> str | None:
        """The id a cookie carries if its signature holds, else None."""
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        session_id, _, mac = cookie.rpartition(".")
        if not session_id or not hmac.compare_digest(mac, self._mac(b"session", session_id)):
            return None
        return session_id

    # --- sessions -------------------------------------------------------------------------

    def sign_in(self, token: str) -> tuple[str, UiSession]:
        """A new session for an API token: the cookie value and the session. Raises
        TokenExpired for an expired token, Unauthorized for a malformed, unknown or revoked
        one. The session ends when its token expires, if that comes first."""
        token = token.strip()
        try:
            principal = self._tokens.authenticate(token)
        except Unauthorized:
            known = self._store.tokens.principal_for_hash(hash_token(token))
            expired = known.expires_at if known is not None else None
            if expired is not None and expired <= self._clock():
                raise TokenExpired(expired_message(expired)) from None
            raise
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + self.lifetime
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at)
        self._store.sessions.delete_stale(now - KEEP_ENDED)
        self._store.sessions.insert(
            id_hash=_hash(session_id),
            principal=principal,
            csrf_secret=csrf,
            created_at=now,
            expires_at=expires,
        )
        return self._cookie(session_id), UiSession(
            principal=principal, csrf_token=csrf, expires_at=expires
        )

    def resolve(self, cookie: str | None) -> UiSession | None:
        """The live session a cookie names, or None (no cookie, forged, ended, expired, or
        its token revoked). Reads the database: a worker thread's call."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return None
        row = self._store.sessions.active(_hash(session_id), self._clock())
        if row is None:
            return None
        if self._limiter is not None:
            self._limiter.take(row.principal.token_id)  # RateLimited: a 429 page
        return UiSession(
            principal=row.principal, csrf_token=row.csrf_secret, expires_at=row.expires_at
        )

    def token_expired_at(self, cookie: str | None) -> datetime | None:
        """When the token of the cookie's session expired, if that is why ``resolve`` found
        no session (the sign-in page then says so)."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return None
        return self._store.sessions.token_expired_at(_hash(session_id), self._clock())

    def sign_out(self, cookie: str | None) -> None:
        session_id = self._session_id(cookie)
        if session_id is not None:
            self._store.sessions.end(_hash(session_id), self._clock())

    # --- CSRF -----------------------------------------------------------------------------

    @staticmethod
    def csrf_ok(session: UiSession, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(
            session.csrf_token.encode(), (submitted or "").encode()
        )

    @staticmethod
    def new_signin_nonce() -> str:
        return secrets.token_urlsafe(32)

    def signin_csrf(self, nonce: str) -> str:
        return self._mac(b"signin", nonce)

    def signin_csrf_ok(self, nonce: str | None, submitted: str | None) -> bool:
        if not nonce or not submitted or len(nonce) > _MAX_COOKIE:
            return False
        return hmac.compare_digest(self.signin_csrf(nonce).encode(), submitted.encode())


@dataclass
class SignInRequired(RunyardError):
    """No live session: pages answer with a redirect to the sign-in form (``detail``: the
    page to come back to). ``reason``: a code the form explains (``expired``: the session's
    token expired), never text from the request."""

    reason: str | None = None

    status = 401
    slug = "unauthorized"
    title = "Sign in"


class TokenExpired(Unauthorized):
    """Sign-in with a token that has expired (the detail says when, as the API does)."""
