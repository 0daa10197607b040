"""An environment's target and gateway added to validated commands (app/engines/targets.py):
where they go for dbt and SQLMesh, and what is refused (a value that is not a name, a command
that names its own)."""

from __future__ import annotations

import pytest

from app.engines.targets import check_target, with_target
from app.errors import Invalid
from app.services.commands import CommandChecker

COMMANDS = CommandChecker()


def targeted(kind: str, text: str, target: str | None, gateway: str | None = None) -> list[str]:
    parsed = COMMANDS.parse(kind, text)
    return list(with_target(COMMANDS, kind, parsed, target, gateway, "prod").argv)


@pytest.mark.parametrize(
    ("kind", "text", "target", "gateway", "argv"),
    [
        ("dbt", "dbt build", "prod", None, ["dbt", "build", "--target", "prod"]),
        ("dbt", "dbt build", None, None, ["dbt", "build"]),
        ("dbt", "dbt retry", "prod", None, ["dbt", "retry", "--target", "prod"]),
        (
            "dbt",
            "dbt source freshness",
            "ci",
            None,
            ["dbt", "source", "freshness", "--target", "ci"],
        ),
        (
            "sqlmesh",
            "sqlmesh plan --auto-apply --no-prompts",
            "staging",
            "warehouse",
            [
                "sqlmesh",
                "--gateway",
                "warehouse",
                "plan",
                "staging",
                "--auto-apply",
                "--no-prompts",
            ],
        ),
        ("sqlmesh", "sqlmesh run", "prod", None, ["sqlmesh", "run", "prod"]),
        # audit takes no environment argument: only the gateway applies.
        ("sqlmesh", "sqlmesh audit", "prod", "wh", ["sqlmesh", "--gateway", "wh", "audit"]),
    ],
)
def test_where_the_target_goes(
    kind: str, text: str, target: str | None, gateway: str | None, argv: list[str]
) -> None:
    assert targeted(kind, text, target, gateway) == argv


@pytest.mark.parametrize(
    ("kind", "text", "target", "gateway"),
    [
        ("dbt", "dbt build --target dev", "prod", None),
        ("dbt", "dbt build -t dev", "prod", None),
        ("sqlmesh", "sqlmesh run dev", "prod", None),
        ("sqlmesh", "sqlmesh --gateway other run", None, "wh"),
        # A value that would read as an option is refused by the command policy too.
        ("dbt", "dbt build", "--profiles-dir=/etc", None),
    ],
)
def test_a_command_naming_its_own_or_a_bad_value_is_refused(
    kind: str, text: str, target: str | None, gateway: str | None
) -> None:
    with pytest.raises(Invalid, match="cannot run in environment 'prod'"):
        targeted(kind, text, target, gateway)


@pytest.mark.parametrize("value", ["-x", "--target", "a b", "prod;rm", "", "x" * 64, "é"])
def test_targets_are_plain_names(value: str) -> None:
    assert check_target("target", value)


@pytest.mark.parametrize("value", [None, "prod", "dev_2", "eu.prod-1", "_x"])
def test_plain_names_pass(value: str | None) -> None:
    assert check_target("target", value) == []
