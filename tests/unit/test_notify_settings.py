"""The notification settings read from the environment."""

from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.notify_timeout_seconds, settings.notify_workers) == (10.0, 16)
    assert settings.notify_per_host == 4


def test_from_environment() -> None:
    settings = Settings.from_env(
        {
            "RUNYARD_NOTIFY_TIMEOUT": "3",
            "RUNYARD_NOTIFY_WORKERS": "32",
            "RUNYARD_NOTIFY_PER_HOST": "8",
        }
    )
    assert (settings.notify_timeout_seconds, settings.notify_workers) == (3.0, 32)
    assert settings.notify_per_host == 8


def test_not_a_number_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="RUNYARD_NOTIFY_PER_HOST"):
        Settings.from_env({"RUNYARD_NOTIFY_PER_HOST": "many"})
