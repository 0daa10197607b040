"""API tokens: created once, stored as a SHA-256 hash, resolved to a Principal per request."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time

from app.errors import Invalid, NotFound, Unauthorized
from app.ids import utcnow
from app.models import Principal, Role, TokenInfo
from app.services.checks import NAME_RE
from app.store import Store

TOKEN_PREFIX = "ryd_"  # noqa: S105 - a public prefix, not a secret
_TOKEN_RE = re.compile(r"^ryd_[A-Za-z0-9_-]{20,100}$")
# A resolved token is reused for this long, so the hot path skips the database. A revoked
# token therefore keeps working for at most this many seconds in a running server.
CACHE_SECONDS = 2.0
# "Last used" is written at most this often per token, so reads stay cheap: the first use
# after a server starts, then at most once a minute.
USE_RECORD_SECONDS = 60.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self._recorded: dict[str, float] = {}  # token id -> when its use was last written

    def create(self, org_slug: str, role: str, name: str = "") -> tuple[str, TokenInfo]:
        if not NAME_RE.match(org_slug) or len(org_slug) > 40:
            raise Invalid(
                f"organization slug {org_slug!r}: use lowercase letters, digits and "
                "hyphens, at most 40 characters"
            )
        if role not in ("admin", "viewer"):
            raise Invalid(f"role {role!r}: use 'admin' or 'viewer'")
        org = self._store.orgs.get_or_create(org_slug)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = token[:12]
        token_role: Role = "admin" if role == "admin" else "viewer"
        token_id = self._store.tokens.insert(
            org_id=org.id, role=token_role, name=name, prefix=prefix, token_hash=hash_token(token)
        )
        info = next(t for t in self._store.tokens.listing(org_slug) if t.id == token_id)
        return token, info

    def list_tokens(self, org_slug: str | None = None) -> list[TokenInfo]:
        return self._store.tokens.listing(org_slug)

    def revoke(self, token_id_or_prefix: str) -> None:
        if self._store.tokens.revoke(token_id_or_prefix) == 0:
            raise NotFound(
                f"no active token with id or prefix {token_id_or_prefix!r}; "
                "see 'runyard tokens list'"
            )
        with self._lock:
            self._cache.clear()

    def use_due(self, token_id: str) -> bool:
        """Whether this use should be written (and, if so, counts it as written)."""
        now = time.monotonic()
        with self._lock:
            last = self._recorded.get(token_id)
            if last is not None and now - last < USE_RECORD_SECONDS:
                return False
            if len(self._recorded) > 10_000:
                self._recorded.clear()
            self._recorded[token_id] = now
            return True

    def record_use(self, token_id: str) -> None:
        """Writes the token's last use (now); a blocking write, for a worker thread."""
        self._store.tokens.touch(token_id, utcnow())

    def cached(self, token: str) -> Principal | None:
        """The cache alone: lets the web layer skip a thread hop for a known token."""
        entry = self._cache.get(token)
        if entry and entry[0] > time.monotonic():
            return entry[1]
        return None

    def authenticate(self, token: str) -> Principal:
        found = self.cached(token)
        if found:
            return found
        if not _TOKEN_RE.match(token):
            raise Unauthorized(
                "The bearer token is malformed. Send 'Authorization: Bearer "
                "<token>' with a token from 'runyard tokens create'."
            )
        principal = self._store.tokens.principal_for_hash(hash_token(token))
        if principal is None:
            raise Unauthorized(
                "The bearer token is unknown or revoked. Create one with "
                "'runyard tokens create --org SLUG --role admin'."
            )
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal
