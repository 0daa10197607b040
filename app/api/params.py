"""Query parameters that need more than a type to be safe: times and time windows.

Each refuses what it cannot represent with a 422 naming the parameter, instead of letting
the value reach code that would overflow on it (a time zone offset that pushes year 1 or
year 9999 out of range, a digit that is a digit only to Unicode)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.errors import invalid

_WINDOW = re.compile(r"([0-9]{1,4})([hd])", re.ASCII)
_WINDOW_UNITS = {"h": 3600, "d": 86400}
_RANGE = "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"


def parse_time(field: str, value: str | None) -> datetime | None:
    """An RFC 3339 time with a zone, as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(
            field, f"{value[:100]!r} is not an RFC 3339 time such as 2026-04-28T02:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise invalid(field, "give a time zone, e.g. a trailing Z for UTC")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise invalid(field, f"the time must lie {_RANGE}") from None


def parse_window(value: str | None) -> timedelta | None:
    """``24h`` or ``7d``: 1 to 9999 hours or days, in ASCII digits."""
    if value is None:
        return None
    match = _WINDOW.fullmatch(value)
    if match is None or int(match.group(1)) == 0:
        raise invalid("window", "use a number of hours or days such as 24h or 7d (1 to 9999)")
    return timedelta(seconds=int(match.group(1)) * _WINDOW_UNITS[match.group(2)])
