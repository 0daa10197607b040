"""Field checks shared by the services. Each returns FieldErrors rather than raising, so one
response can list every problem with a request at once."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from app.cron import schedule_problem
from app.errors import FieldError
from validators.environment import check_environment as environment_problems

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
CHANNEL_RE = re.compile(r"^(#?[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{8,})$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
RESOURCE_NAMES = frozenset({"cpu", "memory", "ephemeral-storage"})
# A Kubernetes ServiceAccount name is a DNS-1123 subdomain.
SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A container image reference, loosely: registry/path:tag or @sha256:digest, no spaces.
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@+]*$")
MAX_IMAGE_LENGTH = 1024
MAX_PATH_LENGTH = 1024
MAX_DESCRIPTION_LENGTH = 2000


def shown(value: str, limit: int = 60) -> str:
    """A value quoted for a message, cut short: a 500 KB input is not echoed back whole."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} chars)"


def check_name(field: str, value: str, what: str) -> list[FieldError]:
    if not 1 <= len(value) <= 63 or not NAME_RE.match(value):
        return [
            FieldError(
                field,
                f"{what} names use lowercase letters, digits and hyphens, "
                "start and end with a letter or digit, and have at most 63 "
                f"characters (they become Kubernetes names); got {shown(value)}",
            )
        ]
    return []


def check_environment(field: str, env: Mapping[str, str]) -> list[FieldError]:
    """Names by allowlist (validators.environment says which and why), values bounded."""
    return [
        FieldError(f"{field}.{problem.name[:64]}" if problem.name else field, problem.reason)
        for problem in environment_problems(env)
    ]


def check_service_account(field: str, value: str | None) -> list[FieldError]:
    if value is None:
        return []
    if not 1 <= len(value) <= 253 or not SUBDOMAIN_RE.match(value):
        return [
            FieldError(
                field,
                "a Kubernetes service account name: lowercase letters, digits, '-' and '.', "
                f"starting and ending with a letter or digit, at most 253 characters; got "
                f"{shown(value)}",
            )
        ]
    return []


def check_image(field: str, value: str | None) -> list[FieldError]:
    if value is None:
        return []
    if not 1 <= len(value) <= MAX_IMAGE_LENGTH or not IMAGE_RE.match(value):
        return [
            FieldError(
                field,
                f"a container image reference of at most {MAX_IMAGE_LENGTH:,} characters "
                "without spaces, such as ghcr.io/acme/analytics:1.4 or "
                f"ghcr.io/acme/analytics@sha256:<digest>; got {shown(value)}",
            )
        ]
    return []


def check_text(field: str, value: str | None, limit: int, what: str) -> list[FieldError]:
    """Free text kept within ``limit`` characters and without NUL or other control characters
    (tabs and line breaks are fine in descriptions)."""
    if value is None:
        return []
    if len(value) > limit:
        return [FieldError(field, f"{what} has at most {limit:,} characters; got {len(value):,}")]
    if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in value):
        return [FieldError(field, f"{what} may not contain NUL or other control characters")]
    return []


def check_path(field: str, value: str | None) -> list[FieldError]:
    """The shape of a project path; where it may point is decided when projects are saved."""
    if value is None:
        return []
    if not value or len(value) > MAX_PATH_LENGTH:
        return [FieldError(field, f"a path of 1 to {MAX_PATH_LENGTH:,} characters")]
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return [FieldError(field, "a path may not contain NUL or other control characters")]
    return []


def check_resources(field: str, resources: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for section, amounts in resources.items():
        if section not in ("requests", "limits"):
            errors.append(FieldError(f"{field}.{section[:64]}", "use 'requests' and 'limits'"))
            continue
        if not isinstance(amounts, dict):
            errors.append(
                FieldError(
                    f"{field}.{section}",
                    'must be an object such as {"cpu": "500m", "memory": "1Gi"}',
                )
            )
            continue
        for name, amount in amounts.items():
            if name not in RESOURCE_NAMES:
                errors.append(
                    FieldError(
                        f"{field}.{section}.{name[:64]}",
                        "allowed resources: cpu, memory, ephemeral-storage",
                    )
                )
            elif (
                isinstance(amount, bool)
                or not isinstance(amount, str | int)
                or len(str(amount)) > 64
                or not QUANTITY_RE.match(str(amount))
            ):
                errors.append(
                    FieldError(
                        f"{field}.{section}.{name}",
                        "not a Kubernetes quantity (examples: 500m, 2, 512Mi, 1Gi)",
                    )
                )
    return errors


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(field: str, value: str) -> list[FieldError]:
    if value not in _zones():
        return [
            FieldError(
                field,
                f"{shown(value)} is not an IANA time zone name "
                "(examples: UTC, Europe/Berlin, America/New_York)",
            )
        ]
    return []


def check_schedule(field: str, value: str | None) -> list[FieldError]:
    """A schedule both the local scheduler and Kubernetes read alike, and that fires."""
    if value is None:
        return []
    problem = schedule_problem(value)
    if problem:
        return [FieldError(field, f"{problem}; got {shown(value)} (example: '0 2 * * *')")]
    return []


def check_channel(field: str, value: str | None) -> list[FieldError]:
    if value is not None and not CHANNEL_RE.match(value):
        return [
            FieldError(
                field, "a Slack channel is '#name' (lowercase) or a channel id such as C0123456789"
            )
        ]
    return []


def check_range(field: str, value: int, low: int, high: int) -> list[FieldError]:
    if not low <= value <= high:
        return [FieldError(field, f"must be between {low} and {high}; got {value}")]
    return []
