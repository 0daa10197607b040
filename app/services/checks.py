"""Field checks shared by the services. Each returns FieldErrors rather than raising, so one
response can list every problem with a request at once."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from croniter import croniter

from app.errors import FieldError

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
CHANNEL_RE = re.compile(r"^(#?[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{8,})$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
RESOURCE_NAMES = frozenset({"cpu", "memory", "ephemeral-storage"})

# Variables that would change where code, profiles or credentials come from, or what the
# interpreter loads: setting them would walk around the command validators.
RESERVED_ENV = frozenset(
    {
        "DBT_PROFILES_DIR",
        "DBT_PROJECT_DIR",
        "DBT_TARGET_PATH",
        "DBT_LOG_PATH",
        "DBT_PACKAGES_INSTALL_PATH",
        "DBT_STATE",
        "DBT_DEFER_STATE",
        "DBT_FAVOR_STATE",
        "PATH",
        "HOME",
        "SHELL",
        "BASH_ENV",
        "ENV",
        "IFS",
    }
)
RESERVED_ENV_PREFIXES = ("RUNYARD_", "LD_", "PYTHON", "KUBERNETES_", "SQLMESH_HOME")


def check_name(field: str, value: str, what: str) -> list[FieldError]:
    if not 1 <= len(value) <= 63 or not NAME_RE.match(value):
        return [
            FieldError(
                field,
                f"{what} names use lowercase letters, digits and hyphens, "
                "start and end with a letter or digit, and have at most 63 "
                f"characters (they become Kubernetes names); got {value!r}",
            )
        ]
    return []


def check_environment(field: str, env: Mapping[str, str]) -> list[FieldError]:
    errors: list[FieldError] = []
    if len(env) > 200:
        errors.append(FieldError(field, "at most 200 environment variables"))
    for name, value in env.items():
        if not ENV_NAME_RE.match(name) or len(name) > 256:
            errors.append(
                FieldError(
                    f"{field}.{name[:64]}",
                    "variable names use letters, digits "
                    "and underscores and do not start with a digit",
                )
            )
        elif name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            errors.append(
                FieldError(
                    f"{field}.{name}",
                    "this variable is reserved: runyard sets "
                    "it or it would change where code and credentials come "
                    "from; remove it",
                )
            )
        if len(value) > 32_768 or "\x00" in value:
            errors.append(
                FieldError(
                    f"{field}.{name[:64]}", "values have at most 32,768 characters and no NUL byte"
                )
            )
    return errors


def check_resources(field: str, resources: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for section, amounts in resources.items():
        if section not in ("requests", "limits"):
            errors.append(FieldError(f"{field}.{section}", "use 'requests' and 'limits'"))
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
                        f"{field}.{section}.{name}",
                        "allowed resources: cpu, memory, ephemeral-storage",
                    )
                )
            elif not isinstance(amount, str | int) or not QUANTITY_RE.match(str(amount)):
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
                f"{value!r} is not an IANA time zone name "
                "(examples: UTC, Europe/Berlin, America/New_York)",
            )
        ]
    return []


def check_schedule(field: str, value: str | None) -> list[FieldError]:
    if value is None:
        return []
    text = value.strip()
    if text in CRON_MACROS:
        return []
    fields = text.split()
    problem = None
    if "TZ=" in text:
        problem = "put the time zone in the 'timezone' field, not in the schedule"
    elif len(fields) != 5:
        problem = (
            "a schedule has five fields (minute hour day-of-month month day-of-week) "
            "or is one of " + ", ".join(sorted(CRON_MACROS))
        )
    elif not croniter.is_valid(text):
        problem = "not a valid cron expression"
    if problem:
        return [FieldError(field, f"{problem}; got {value!r} (example: '0 2 * * *')")]
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
