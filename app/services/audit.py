"""The audit trail: who changed what, when, from where.

Services record a change with ``record(store, ...)``; they do not pass who made it. The web
layer puts the caller in ``current_actor`` (a context variable, set by the authentication
middleware for the whole request; worker threads serving the request inherit it), the CLI
wraps its direct database actions in ``acting_as(Actor.cli())``, and anything else (the
scheduler, the tracker) records as "system". See /docs/audit.md.

A diff never holds a secret value: ``field_diff`` shows that a secret changed, not what
it was or became.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from app.errors import Forbidden, Invalid
from app.ids import utcnow
from app.models import REDACTED, Principal
from app.services.cursors import CursorCodec
from app.store import Store
from app.store.audit import AuditEvent, AuditPage

# Fields whose values never appear in a diff, whatever object they belong to.
SECRET_FIELDS = frozenset(
    {
        "secret_environment",
        "webhook_headers",
        "webhook_secret",
        "slack_webhook_url",
        "password",
        "token",
        "token_hash",
        "secret",
        "secrets",
    }
)
# Bookkeeping that changes with every write and says nothing about what was changed.
IGNORED_FIELDS = frozenset(
    {"id", "org_id", "org_slug", "created_at", "updated_at", "version", "sync_state"}
)


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who is making a change: a token (by id and name), the CLI, or runyard itself."""

    token_id: str | None
    name: str
    request_id: str | None = None
    source_address: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """An operator running ``runyard`` against the database on the server's host."""
        return cls(token_id=None, name="cli")


SYSTEM = Actor(token_id=None, name="system")

current_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = current_actor.set(actor)
    try:
        yield actor
    finally:
        current_actor.reset(token)


def record(
    store: Store,
    *,
    org_id: str,
    action: str,
    object_type: str,
    object_id: str,
    object_name: str = "",
    diff: Mapping[str, Any] | None = None,
    project_id: str | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> str:
    """Record a change made by the current actor. Inside a caller's ``store.database.write()``
    it commits with the change; otherwise on its own. An error propagates: a change is
    never silently left unrecorded by this function."""
    actor = current_actor.get() or SYSTEM
    return store.audit.insert(
        org_id=org_id,
        at=clock(),
        actor_token_id=actor.token_id,
        actor_name=actor.name,
        request_id=actor.request_id,
        source_address=actor.source_address,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_name=object_name,
        project_id=project_id,
        diff=None if diff is None else dict(diff),
    )


def _fields(value: object | None) -> dict[str, Any]:
    if value is None:
        return {}
    built = msgspec.to_builtins(value)
    if not isinstance(built, dict):
        raise TypeError(f"cannot diff a {type(value).__name__}")
    return built


def _secret_value(value: Any) -> Any:
    return None if value is None else REDACTED


def field_diff(
    before: object | None,
    after: object | None,
    *,
    secrets: Collection[str] = (),
    ignore: Collection[str] = (),
) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for every field that changed. Maps are compared entry by
    entry (``"environment.FOO"``). A secret field, or an entry of a secret map, reads
    ``REDACTED`` on the side where it has a value and null where it has none."""
    old, new = _fields(before), _fields(after)
    hidden = SECRET_FIELDS | set(secrets)
    skipped = IGNORED_FIELDS | set(ignore)
    changes: dict[str, list[Any]] = {}
    for name in sorted(old.keys() | new.keys()):
        if name in skipped:
            continue
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) or isinstance(b, dict):
            a_map = a if isinstance(a, dict) else {}
            b_map = b if isinstance(b, dict) else {}
            for key in sorted(a_map.keys() | b_map.keys()):
                x, y = a_map.get(key), b_map.get(key)
                if x == y:
                    continue
                if name in hidden:
                    x, y = _secret_value(x), _secret_value(y)
                changes[f"{name}.{key}"] = [x, y]
        elif a != b:
            if name in hidden:
                a, b = _secret_value(a), _secret_value(b)
            changes[name] = [a, b]
    return changes


_MAX_AGE_SECONDS = 36600 * 86400  # the oldest ``since`` age: 100 years


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``since``: an RFC 3339 time, or an age such as ``90m``, ``24h``, ``7d``."""
    if not text:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    number = text[:-1]
    if text[-1:] in units and number.isascii() and number.isdigit() and len(number) <= 6:
        seconds = int(number) * units[text[-1]]
        if seconds > _MAX_AGE_SECONDS:
            raise Invalid(f"since {text!r}: at most 36600d (100 years); omit it for everything")
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise Invalid(f"since {text[:40]!r}: give a time zone, e.g. a trailing Z for UTC")
        # Compared as stored (UTC text): a time near year 1 or 9999 may not convert.
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(
            f"since {text[:40]!r}: use an RFC 3339 time (2026-01-31T00:00:00Z) or an age "
            "such as 90m, 24h or 7d"
        ) from None


class AuditList(msgspec.Struct, frozen=True):
    items: list[AuditEvent]
    next_cursor: str | None


class AuditService:
    """Reads of the trail (writes go through ``record``) and its retention."""

    def __init__(
        self,
        store: Store,
        *,
        cursor_key: bytes | None = None,
        retention_days: int = 365,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._cursors = CursorCodec(cursor_key)
        self._retention_days = retention_days
        self._clock = clock

    def list_events(
        self,
        principal: Principal,
        *,
        since: str | None = None,
        actor: str | None = None,
        object_ref: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AuditList:
        if not principal.can_write:
            raise Forbidden(
                "The audit trail is for org admins: this token has the 'viewer' role. Use a "
                "token with the 'admin' role."
            )
        before = self._cursors.decode(principal.org_id, cursor) if cursor else None
        page: AuditPage = self._store.audit.page(
            principal.org_id,
            before_seq=before,
            limit=limit,
            since=parse_since(since, self._clock()),
            actor=actor,
            object_ref=object_ref,
            # A project-scoped token reads its project's entries only.
            project_id=principal.project_id,
        )
        next_cursor = (
            None if page.last_seq is None else self._cursors.encode(principal.org_id, page.last_seq)
        )
        return AuditList(page.events, next_cursor)

    def prune_once(self) -> int:
        """Delete events older than the retention (0 keeps them forever)."""
        if self._retention_days <= 0:
            return 0
        return self._store.audit.delete_older_than(
            self._clock() - timedelta(days=self._retention_days)
        )
