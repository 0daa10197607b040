"""Process logging: JSON lines when not on a terminal, readable text on one."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime

from app.models import REDACTED
from app.settings import Settings

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is context.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Context keys that may carry secrets are never written, whoever passes them.
_NEVER = frozenset(
    {
        "token",
        "authorization",
        "webhook_secret",
        "webhook_headers",
        "headers",
        "environment",
        "secret_environment",
        "slack_webhook_url",
        "env",
        "password",
        "secret",
        "key",
    }
)
# Context that only repeats the message for a terminal: uvicorn's ``color_message`` is the
# message again with ANSI colour escapes, noise (and escape codes) in a JSON log.
_DROPPED = frozenset({"color_message"})
_MASK = REDACTED  # as in a run's log and reads of secret maps
# Shorter values are not remembered: a header such as "X-Team: data" is sealed like every
# header value, but blanking "data" out of every log line would hide more than it protects.
_MIN_SECRET = 8
_MAX_REMEMBERED = 10_000


class _KnownSecrets:
    """Secret values this process has decrypted (app/secrets.py tells it): whatever path a
    value takes into a log line (an exception message, a receiver's echo), it is blanked
    there. Bounded: the least recently seen values are forgotten first."""

    def __init__(self) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._ordered: list[str] = []

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            changed = False
            for value in values:
                words = [value, *(w for w in value.split() if len(w) >= _MIN_SECRET)]
                for word in words:
                    if len(word) < _MIN_SECRET:
                        continue
                    if word not in self._values:
                        changed = True
                    self._values[word] = None
                    self._values.move_to_end(word)
            while len(self._values) > _MAX_REMEMBERED:
                self._values.popitem(last=False)
                changed = True
            if changed:
                self._ordered = sorted(self._values, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, _MASK)
        return text


_known = _KnownSecrets()


def remember_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in runyard's own log lines."""
    _known.add(values)


def mask_known_secrets(text: str) -> str:
    return _known.mask(text)


# Set per request by the web layer; worker threads inherit them (anyio copies the context).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
org: ContextVar[str | None] = ContextVar("org", default=None)


class ContextFilter(logging.Filter):
    """Adds the request id and org of the request being served, where there is one."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id), ("org", org)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _known.mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if (
                key not in _STANDARD
                and key not in _NEVER
                and key not in _DROPPED
                and not key.startswith("_")
            ):
                if isinstance(value, int | float | bool):
                    entry[key] = value
                else:
                    entry[key] = _known.mask(str(value))
        if record.exc_info:
            entry["exception"] = _known.mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with known secret values blanked."""

    def format(self, record: logging.LogRecord) -> str:
        return _known.mask(super().format(record))


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
