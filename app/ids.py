"""Prefixed random identifiers (``proj_…``, ``job_…``, ``run_…``) and UTC time helpers."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

# Lowercase letters and digits only: ids end up in Kubernetes label values.
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_id(prefix: str, length: int = 16) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_text(moment: datetime) -> str:
    """The stored form: RFC 3339 UTC with microseconds, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
