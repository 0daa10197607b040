"""One frozen settings object, read from ``RUNYARD_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

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
    log_cap_bytes: int = 10 * 1024 * 1024
    reconcile_interval_seconds: float = 60.0
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
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: str = "INFO"

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
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"RUNYARD_{name}")
            return value if value not in (None, "") else None

        def integer(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                raise SettingsError(f"RUNYARD_{name}={raw!r} must be a whole number") from None

        executor = get("EXECUTOR")
        if executor not in (None, "local", "kubernetes"):
            raise SettingsError(f"RUNYARD_EXECUTOR={executor!r}: use 'local' or 'kubernetes'")
        missed = get("MISSED_FIRE_POLICY") or "skip"
        if missed not in ("skip", "run_once"):
            raise SettingsError(f"RUNYARD_MISSED_FIRE_POLICY={missed!r}: use 'skip' or 'run_once'")
        template = get("NAMESPACE_TEMPLATE") or "org-{org}"
        if "{org}" not in template:
            raise SettingsError("RUNYARD_NAMESPACE_TEMPLATE must contain '{org}'")
        log_format = get("LOG_FORMAT") or "auto"
        if log_format not in ("auto", "json", "text"):
            raise SettingsError(f"RUNYARD_LOG_FORMAT={log_format!r}: use auto, json or text")
        slack_base = get("SLACK_BASE_URL")
        if slack_base and not slack_base.endswith("/"):
            slack_base += "/"  # slack_sdk joins method names onto the base and needs the slash
        hosts = tuple(
            h.strip() for h in (get("WEBHOOK_ALLOWED_HOSTS") or "").split(",") if h.strip()
        )
        rate = get("RATE_LIMIT")
        sandbox = (get("LOCAL_SANDBOX") or "on").lower()
        if sandbox not in ("on", "off"):
            raise SettingsError(f"RUNYARD_LOCAL_SANDBOX={sandbox!r}: use 'on' or 'off'")
        max_local = integer("LOCAL_MAX_RUNS_PER_ORG", 8)
        if max_local < 1:
            raise SettingsError("RUNYARD_LOCAL_MAX_RUNS_PER_ORG must be at least 1")
        return cls(
            database=get("DATABASE") or "./runyard.db",
            host=get("HOST") or "127.0.0.1",
            port=integer("PORT", 8080),
            executor=executor,  # type: ignore[arg-type]
            namespace_template=template,
            slack_token=get("SLACK_TOKEN"),
            slack_base_url=slack_base,
            slack_default_channel=get("SLACK_DEFAULT_CHANNEL"),
            public_url=(get("PUBLIC_URL") or "").rstrip("/") or None,
            rate_limit=RateLimit.parse(rate) if rate else RateLimit(20_000, 60),
            max_body_bytes=integer("MAX_BODY_BYTES", 1_048_576),
            webhook_allowed_hosts=hosts,
            notify_timeout_seconds=float(integer("NOTIFY_TIMEOUT", 10)),
            notify_workers=integer("NOTIFY_WORKERS", 16),
            notify_per_host=integer("NOTIFY_PER_HOST", 4),
            command_policy=get("COMMAND_POLICY"),
            missed_fire_policy=missed,  # type: ignore[arg-type]
            run_retention_days=integer("RUN_RETENTION_DAYS", 90),
            log_cap_bytes=integer("LOG_CAP_BYTES", 10 * 1024 * 1024),
            reconcile_interval_seconds=float(integer("RECONCILE_INTERVAL", 60)),
            k8s_templates=get("K8S_TEMPLATES"),
            projects_root=get("PROJECTS_ROOT"),
            local_sandbox=sandbox == "on",
            secret_key=get("SECRET_KEY"),
            metrics_token=get("METRICS_TOKEN"),
            local_max_runs_per_org=max_local,
            log_format=log_format,  # type: ignore[arg-type]
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
        )
