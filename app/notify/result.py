"""What one delivery attempt came to, in the terms the outbox acts on.

``retry`` means "try again later" (a timeout, a refused connection, 5xx, 408, 425, 429);
``failed`` means "trying again will not help" (most 4xx, a refused target, a redirect,
missing configuration) and ends the notification until an admin retries it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import msgspec

from app.store.outbox import AttemptOutcome as Outcome

RETRYABLE_STATUS = frozenset({408, 425, 429})
MAX_RETRY_AFTER = 3600.0  # a receiver cannot park a notification for longer than this
ERROR_LIMIT = 500


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, from a 429's Retry-After header

    @property
    def throttled(self) -> bool:
        return self.status_code == 429


def delivered(status_code: int | None) -> SendResult:
    return SendResult(outcome="delivered", status_code=status_code)


def retry(error: str, status_code: int | None = None) -> SendResult:
    return SendResult(outcome="retry", status_code=status_code, error=error[:ERROR_LIMIT])


def failed(error: str, status_code: int | None = None) -> SendResult:
    return SendResult(outcome="failed", status_code=status_code, error=error[:ERROR_LIMIT])


def from_status(status_code: int, error: str, retry_after: str | None = None) -> SendResult:
    """An HTTP answer that is not a success."""
    if status_code == 429:
        return SendResult(
            outcome="retry",
            status_code=429,
            error=error[:ERROR_LIMIT],
            retry_after=parse_retry_after(retry_after),
        )
    if status_code >= 500 or status_code in RETRYABLE_STATUS:
        return retry(error, status_code)
    return failed(error, status_code)


def redact(sent: SendResult, secrets: Iterable[str | None]) -> SendResult:
    """The result with secret values blanked out of its error: a receiver may echo the
    request (a job's Authorization header, say) and errors are stored, shown and logged.
    Each word of a value counts, so "Bearer <token>" hides the token on its own too."""
    if not sent.error:
        return sent
    text = sent.error
    words = {w for value in secrets if value for w in (value, *value.split()) if len(w) >= 6}
    for word in sorted(words, key=len, reverse=True):
        text = text.replace(word, "[redacted]")
    return msgspec.structs.replace(sent, error=text) if text != sent.error else sent


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
