from __future__ import annotations

import pytest

from app.container import choose_executor
from app.settings import RateLimit, Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database == "./runyard.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.executor is None
    assert settings.namespace_for("acme") == "org-acme"


def test_reads_environment() -> None:
    settings = Settings.from_env(
        {
            "RUNYARD_DATABASE": "/data/r.db",
            "RUNYARD_PORT": "9000",
            "RUNYARD_EXECUTOR": "kubernetes",
            "RUNYARD_NAMESPACE_TEMPLATE": "tenant-{org}",
            "RUNYARD_SLACK_BASE_URL": "http://x/api",
            "RUNYARD_RATE_LIMIT": "10/second",
            "RUNYARD_WEBHOOK_ALLOWED_HOSTS": "hooks.internal, 10.0.0.0/8",
            "RUNYARD_PUBLIC_URL": "https://runyard.example.com/",
        }
    )
    assert settings.database == "/data/r.db" and settings.port == 9000
    assert settings.executor == "kubernetes"
    assert settings.namespace_for("acme") == "tenant-acme"
    assert settings.slack_base_url == "http://x/api/"  # slack_sdk needs the trailing slash
    assert settings.rate_limit == RateLimit(10, 1)
    assert settings.webhook_allowed_hosts == ("hooks.internal", "10.0.0.0/8")
    assert settings.public_url == "https://runyard.example.com"


@pytest.mark.parametrize(
    "env",
    [
        {"RUNYARD_EXECUTOR": "docker"},
        {"RUNYARD_PORT": "eighty"},
        {"RUNYARD_RATE_LIMIT": "lots"},
        {"RUNYARD_RATE_LIMIT": "0/second"},
        {"RUNYARD_NAMESPACE_TEMPLATE": "fixed"},
        {"RUNYARD_MISSED_FIRE_POLICY": "always"},
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_executor_choice(tmp_path: object) -> None:
    assert choose_executor(Settings(executor="local"), {}) == "local"
    assert choose_executor(Settings(), {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "kubernetes"
    assert choose_executor(Settings(), {"KUBECONFIG": "/nonexistent/config"}) == "local"
