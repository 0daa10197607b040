"""One frozen settings object, read from ``RUNYARD_*`` environment variables.

Each field is one variable, ``RUNYARD_`` plus the field's name in capitals (two keep a
shorter historical name, see ``_VARIABLE``), and its default is written once, on the field.
``from_env`` collects the variables that are set, turns the few that are not plain values
(``_PARSERS``: a rate, a comma list, on/off, URLs) into the field's type, and lets msgspec
convert and check the rest; every error names the variable.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

ExecutorName = Literal["local", "kubernetes"]
MissedFirePolicy = Literal["skip", "run_once"]

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


class SettingsError(ValueError):
    """A setting has a value runyard cannot use; the message names the variable."""


class RateLimit(msgspec.Struct, frozen=True):
    requests: int
    per_seconds: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE_RE.match(text)
        if not match or int(match.group(1)) <= 0:
            raise SettingsError(
                f"RUNYARD_RATE_LIMIT={text!r} is not understood: use N/second, N/minute or N/hour"
            )
        return cls(int(match.group(1)), _PERIOD_SECONDS[match.group(2)])


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database: str = "./runyard.db"
    host: str = "127.0.0.1"
    port: int = 8080
    # None means "decide at start-up": kubernetes when a cluster config is found, else local.
    executor: ExecutorName | None = None
    namespace_template: str = "org-{org}"
    slack_token: str | None = None
    slack_base_url: str | None = None
    slack_default_channel: str | None = None
    public_url: str | None = None
    rate_limit: RateLimit = RateLimit(20_000, 60)
    max_body_bytes: int = 1_048_576
    webhook_allowed_hosts: tuple[str, ...] = ()
    # Notification delivery (app/notify): per-request timeout, sender threads, and at most
    # this many requests at a time to one host.
    notify_timeout_seconds: float = 10.0
    notify_workers: int = 16
    notify_per_host: int = 4
    command_policy: str | None = None
    missed_fire_policy: MissedFirePolicy = "skip"
    run_retention_days: int = 90
    # Audit events older than this are pruned (0 keeps them forever); see docs/audit.md.
    audit_retention_days: int = 365
    log_cap_bytes: int = 10 * 1024 * 1024
    reconcile_interval_seconds: float = 60.0
    # How the run tracker watches Jobs (docs/kubernetes.md): "cluster", one watch of every
    # namespace (needs the ClusterRole runyard-watch); "namespaces", a pool of
    # k8s_watch_threads threads visiting the org namespaces in turn; "auto", cluster when
    # allowed.
    k8s_watch_scope: Literal["auto", "cluster", "namespaces"] = "auto"
    k8s_watch_threads: int = 8
    # Directory of the CronJob and Job skeletons; None: the repository's k8s_templates/.
    k8s_templates: str | None = None
    # Local projects live under <projects_root>/<org-slug>/; None: a projects/ folder beside the
    # database (see projects_root_path).
    projects_root: str | None = None
    # Landlock confinement of local runs; "off" is only for a single trusted org.
    local_sandbox: bool = True
    # Key (Fernet, urlsafe base64 of 32 bytes) that encrypts secrets at rest; None: a key file
    # created with mode 0600 beside the database.
    secret_key: str | None = None
    # When set, GET /metrics needs "Authorization: Bearer <metrics_token>".
    metrics_token: str | None = None
    # Concurrent local runs one org may have; beyond it a trigger is refused with a clear 429.
    local_max_runs_per_org: int = 8
    # Run artifacts (docs/artifacts.md): uncompressed bytes one artifact and one run may
    # store (a 5,000-model project's manifest.json is some 50-100 MB), and how long after a
    # run has ended its upload credential is still accepted (the launcher uploads after the
    # command exits, and the run may be seen to end first).
    artifact_max_file_bytes: int = 200 * 1024 * 1024
    artifact_max_run_bytes: int = 500 * 1024 * 1024
    artifact_upload_grace_seconds: int = 600
    # Kubernetes: the image whose init container copies runyard's artifact launcher into the
    # pod (runyard's own image), and the URL pods reach runyard's API at. Unset image: pods
    # run the command directly and keep no artifacts.
    launcher_image: str | None = None
    internal_url: str | None = None
    # How long a web UI sign-in lasts (app/web/sessions.py), from sign-in, in hours.
    ui_session_hours: float = 12.0
    # Silence alerts (docs/notifications.md): how often missed slots and overdue runs are
    # checked, and how many seconds a threshold's minute lasts: 60, shorter for tests only.
    silence_interval_seconds: float = 20.0
    silence_minute_seconds: float = 60.0
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # Checks that hold however the settings are built (from the environment or in tests).
        if "{org}" not in self.namespace_template:
            raise SettingsError(f"{variable('namespace_template')} must contain '{{org}}'")
        if self.k8s_watch_threads < 1:
            raise SettingsError(f"{variable('k8s_watch_threads')} must be at least 1")
        if self.local_max_runs_per_org < 1:
            raise SettingsError(f"{variable('local_max_runs_per_org')} must be at least 1")
        if not 0 < self.ui_session_hours <= 24 * 30:
            raise SettingsError(
                f"{variable('ui_session_hours')} must be more than 0 and at most 720 (30 days)"
            )
        for name in ("silence_interval_seconds", "silence_minute_seconds"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{variable(name)} must be more than 0")

    @property
    def database_path(self) -> Path:
        return Path(self.database)

    @property
    def projects_root_path(self) -> Path:
        if self.projects_root:
            return Path(self.projects_root).expanduser()
        return self.database_path.expanduser().parent / "projects"

    def namespace_for(self, org_slug: str) -> str:
        return self.namespace_template.format(org=org_slug)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings the ``RUNYARD_*`` variables give; an empty variable counts as unset."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for field in _FIELDS:
            value = env.get(variable(field))
            if value:
                parse = _PARSERS.get(field)
                raw[field] = _parsed(field, value, parse) if parse else value
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise _named(exc, raw) from None


# Variables not named after their field (kept from before the field gained its unit).
_VARIABLE = {
    "notify_timeout_seconds": "RUNYARD_NOTIFY_TIMEOUT",
    "reconcile_interval_seconds": "RUNYARD_RECONCILE_INTERVAL",
}
_FIELDS = {f.name: f.type for f in msgspec.structs.fields(Settings)}


def variable(field: str) -> str:
    """The environment variable of a settings field."""
    return _VARIABLE.get(field, f"RUNYARD_{field.upper()}")


def _on_off(text: str) -> bool:
    value = text.lower()
    if value not in ("on", "off"):
        raise ValueError("use 'on' or 'off'")
    return value == "on"


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"  # slack_sdk joins method names onto it


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


# Variables whose text is not the field's value as it stands (the rest msgspec converts).
_PARSERS: dict[str, Callable[[str], Any]] = {
    "rate_limit": RateLimit.parse,
    "webhook_allowed_hosts": _comma_list,
    "local_sandbox": _on_off,
    "slack_base_url": _with_slash,
    "public_url": lambda url: url.rstrip("/") or None,
    "internal_url": lambda url: url.rstrip("/") or None,
    "log_level": str.upper,
}


def _parsed(field: str, text: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(text)
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError(f"{variable(field)}={text!r}: {exc}") from None


_AT_FIELD = re.compile(r" - at `\$\.(\w+)`$")


def _named(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> SettingsError:
    """msgspec's error as one naming the variable and saying what it takes."""
    message = str(exc)
    found = _AT_FIELD.search(message)
    if found is None:  # raised by __post_init__: already names its variable
        return SettingsError(message)
    field = found.group(1)
    given = f"{variable(field)}={raw.get(field)!r}"
    options = _flat(_FIELDS[field])
    choices = [
        repr(v) for option in options if get_origin(option) is Literal for v in get_args(option)
    ]
    if choices:
        return SettingsError(f"{given}: use {', '.join(choices[:-1])} or {choices[-1]}")
    if int in options:
        return SettingsError(f"{given} must be a whole number")
    if float in options:
        return SettingsError(f"{given} must be a number")
    return SettingsError(f"{given}: {message[: found.start()]}")


def _flat(kind: Any) -> list[Any]:
    """The members of a union type (``X | None``), or the type itself."""
    if get_origin(kind) in (Union, types.UnionType):
        return [member for arg in get_args(kind) for member in _flat(arg)]
    return [kind]
