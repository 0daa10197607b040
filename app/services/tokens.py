"""API tokens: created once, stored as a SHA-256 hash, resolved to a Principal per request.

A token may be named, expire, and be scoped (docs/tokens.md): to one project (every other
project, and everything in it, answers 404 as another org's would) and to a set of actions.
Every API route declares the action it takes in its handler's ``opt`` (``ACTION_OPT``); a
token whose action set lacks it gets 403.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from app.errors import Forbidden, Invalid, NotFound, Unauthorized
from app.ids import utcnow
from app.models import Principal, Role, TokenInfo
from app.services import audit
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


# What a route does, declared on its handler as ``opt={ACTION_OPT: ...}`` (app/api):
#   read     every read (GET) of what the token's scope covers; every token may read
#   trigger  start, rerun, retry and cancel runs
#   write    create, change and delete projects, jobs, environments; retry notifications
#   deploy   deploy and undeploy (make schedules live, remove them)
#   audit    read the audit trail
# A viewer token may only read. ``--actions trigger`` makes a CI token that can read and
# trigger, nothing else.
ACTION_OPT = "action"
ACTIONS: tuple[str, ...] = ("read", "trigger", "write", "deploy", "audit")
_ACTION_RE = re.compile(r"^[a-z]+$")
_DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_NAME = 60


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_expires_in(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``: how long a new token lives (at most about 10 years)."""
    found = _DURATION_RE.match(text.strip())
    if not found:
        raise Invalid(
            f"expires in {text[:20]!r}: use a whole number and a unit: h (hours), d (days) "
            "or w (weeks), e.g. 90d or 12h"
        )
    span = int(found.group(1)) * _UNITS[found.group(2)]
    if span > timedelta(days=3660):
        raise Invalid(f"expires in {text!r}: at most 10 years (3660d); omit it for no expiry")
    return span


def parse_actions(text: str | Collection[str] | None, role: str) -> list[str] | None:
    """A comma-separated action set (``trigger``, ``read,trigger``), checked against the
    vocabulary and the role; ``read`` is always included. None: all the role allows."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [item.strip().lower() for item in items if item.strip()]
    if not names:
        raise Invalid(f"actions: name at least one of {', '.join(ACTIONS)}, or omit --actions")
    unknown = [n for n in names if n not in ACTIONS]
    if unknown:
        raise Invalid(
            f"actions: {', '.join(repr(n[:20]) for n in unknown)} unknown; use a "
            f"comma-separated list of {', '.join(ACTIONS)}"
        )
    if role != "admin" and set(names) - {"read"}:
        raise Invalid(
            "actions: a viewer token can only read; create an admin token with --actions "
            "to let it trigger, write, deploy or read the audit trail"
        )
    return sorted({"read", *names}, key=ACTIONS.index)


def require_action(principal: Principal, action: str) -> None:
    """403 when the token's action set lacks ``action`` (its role is checked elsewhere)."""
    if principal.actions is not None and action not in principal.actions:
        allowed = ", ".join(a for a in ACTIONS if a in principal.actions)
        raise Forbidden(
            f"This token ({principal.token_name or principal.token_id}) may only: {allowed}; "
            f"this request needs '{action}'. Use a token whose --actions include it."
        )


def require_project(principal: Principal, project_id: str) -> None:
    """A project-scoped token sees no other project: 404, as another org's would."""
    if principal.project_id is not None and principal.project_id != project_id:
        raise NotFound(f"No project with id {project_id!r} in your organization.")


def require_run_in_scope(principal: Principal, run_id: str, project_id: str) -> None:
    """A run of another project, to a project-scoped token: 404 as another org's run."""
    if principal.project_id is not None and principal.project_id != project_id:
        raise NotFound(f"No run with id {run_id!r} in your organization.")


def sees_project(principal: Principal, project_id: str) -> bool:
    return principal.project_id is None or principal.project_id == project_id


def expired_message(expires_at: datetime) -> str:
    return (
        f"The bearer token expired on {expires_at.strftime('%Y-%m-%d %H:%M UTC')}; create "
        "a new one with 'runyard tokens create'."
    )


class TokenService:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self._recorded: dict[str, float] = {}  # token id -> when its use was last written

    def create(
        self,
        org_slug: str,
        role: str,
        name: str = "",
        *,
        project: str | None = None,
        actions: str | Collection[str] | None = None,
        expires_in: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """``project``: a project's name or id in the org; ``actions``: see ACTIONS;
        ``expires_in``: see ``parse_expires_in``."""
        if not NAME_RE.match(org_slug) or len(org_slug) > 40:
            raise Invalid(
                f"organization slug {org_slug!r}: use lowercase letters, digits and "
                "hyphens, at most 40 characters"
            )
        if role not in ("admin", "viewer"):
            raise Invalid(f"role {role!r}: use 'admin' or 'viewer'")
        if len(name) > MAX_NAME or not name.isprintable():
            raise Invalid(f"name: at most {MAX_NAME} printable characters")
        scope_actions = parse_actions(actions, role)
        expires_at = self._clock() + parse_expires_in(expires_in) if expires_in else None
        # A scope naming a project that is not there changes nothing (not even a new org).
        existing = self._store.orgs.by_slug(org_slug)
        project_id = self._project_id(existing.id if existing else None, org_slug, project)
        org = existing or self._store.orgs.get_or_create(org_slug)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = token[:12]
        token_role: Role = "admin" if role == "admin" else "viewer"
        with self._store.database.write():
            token_id = self._store.tokens.insert(
                org_id=org.id,
                role=token_role,
                name=name,
                prefix=prefix,
                token_hash=hash_token(token),
                expires_at=expires_at,
                scope_project_id=project_id,
                scope_actions=scope_actions,
            )
            info = next(t for t in self._store.tokens.listing(org_slug) if t.id == token_id)
            audit.record(
                self._store,
                org_id=org.id,
                action="token.create",
                object_type="token",
                object_id=token_id,
                object_name=name,
                diff=audit.field_diff(None, _audited(info)),
                project_id=project_id,
            )
        return token, info

    def _project_id(self, org_id: str | None, org_slug: str, project: str | None) -> str | None:
        if project is None:
            return None
        for candidate in self._store.projects.for_org(org_id) if org_id else []:
            if project in (candidate.id, candidate.name):
                return candidate.id
        raise Invalid(
            f"project {project[:60]!r}: org {org_slug!r} has no project with that name or "
            "id; create it first (runyard projects create) or check 'runyard projects list'"
        )

    def list_tokens(self, org_slug: str | None = None) -> list[TokenInfo]:
        return self._store.tokens.listing(org_slug)

    def revoke(self, token_id_or_prefix: str) -> None:
        with self._store.database.write():
            found = self._store.tokens.active(token_id_or_prefix)
            if not found or self._store.tokens.revoke(token_id_or_prefix) == 0:
                raise NotFound(
                    f"no active token with id or prefix {token_id_or_prefix!r}; "
                    "see 'runyard tokens list'"
                )
            for info in found:
                org = self._store.orgs.by_slug(info.org_slug)
                if org is None:
                    continue
                audit.record(
                    self._store,
                    org_id=org.id,
                    action="token.revoke",
                    object_type="token",
                    object_id=info.id,
                    object_name=info.name,
                    project_id=info.scope_project_id,
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
        """The cache alone: lets the web layer skip a thread hop for a known token. A token
        that expired since it was cached is a miss (``authenticate`` then says why)."""
        entry = self._cache.get(token)
        if entry and entry[0] > time.monotonic():
            principal = entry[1]
            if principal.expires_at is None or principal.expires_at > self._clock():
                return principal
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
        if principal.expires_at is not None and principal.expires_at <= self._clock():
            raise Unauthorized(expired_message(principal.expires_at))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal


def _audited(info: TokenInfo) -> dict[str, object]:
    """What a token's audit entry shows of it (never its value or hash)."""
    return {
        "name": info.name,
        "role": info.role,
        "prefix": info.prefix,
        "expires_at": info.expires_at,
        "scope_project_id": info.scope_project_id,
        "scope_actions": info.scope_actions,
    }
