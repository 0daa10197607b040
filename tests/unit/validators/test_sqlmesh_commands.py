"""The SQLMesh rules: accepted commands and refused ones, with what the user is told."""

from __future__ import annotations

import pytest

from validators import CommandError, CommandPolicy, KindPolicy, validate_command
from validators.rules import RULES


def accepted(
    text: str, policy: CommandPolicy | None = None
) -> tuple[str, dict[str, tuple[str, ...]]]:
    result = validate_command("sqlmesh", text, policy)
    assert result.ok, result.errors
    assert result.command is not None
    assert result.command.kind == "sqlmesh"
    return result.command.subcommand, dict(result.command.flags)


def only_error(text: str, policy: CommandPolicy | None = None) -> CommandError:
    result = validate_command("sqlmesh", text, policy)
    assert result.command is None
    (error,) = result.errors
    return error


def test_the_contract_example_is_accepted() -> None:
    result = validate_command("sqlmesh", "sqlmesh run --select-model '*'")
    assert result.command is not None
    assert result.command.argv == ("sqlmesh", "run", "--select-model", "*")
    assert dict(result.command.flags) == {"--select-model": ("*",)}


@pytest.mark.parametrize(
    ("text", "subcommand"),
    [
        ("sqlmesh plan --auto-apply --no-prompts", "plan"),
        ("sqlmesh run", "run"),
        ("sqlmesh audit", "audit"),
        ("sqlmesh test", "test"),
        ("sqlmesh janitor --ignore-ttl", "janitor"),
        ("sqlmesh table_diff prod:dev", "table_diff"),
        ("sqlmesh info", "info"),
        ("sqlmesh format --check", "format"),
        ("sqlmesh lint", "lint"),
        ("sqlmesh dag target/dag.html", "dag"),
        ("sqlmesh check_intervals", "check_intervals"),
    ],
)
def test_default_subcommands(text: str, subcommand: str) -> None:
    assert accepted(text)[0] == subcommand


def test_plan_needs_auto_apply_and_no_prompts() -> None:
    error = only_error("sqlmesh plan")
    assert (error.token, error.position) == ("plan", 1)
    assert error.reason.startswith("sqlmesh plan stops to ask for confirmation")
    assert error.allowed == "add --auto-apply --no-prompts"
    assert only_error("sqlmesh plan dev --auto-apply").allowed == "add --no-prompts"
    assert only_error("sqlmesh plan --no-prompts").allowed == "add --auto-apply"
    _, flags = accepted("sqlmesh plan dev --no-prompts --auto-apply -r a -r b")
    assert flags["--restate-model"] == ("a", "b")


def test_format_only_checks() -> None:
    error = only_error("sqlmesh format")
    assert error.reason == "sqlmesh format without --check rewrites the project's files"
    assert error.allowed == "add --check"
    assert accepted("sqlmesh format --check models/a.sql models/b.sql")[0] == "format"
    assert only_error("sqlmesh format --check /etc/passwd").reason.startswith("is an absolute")


def test_repeatable_options_take_one_value_each_time() -> None:
    result = validate_command("sqlmesh", "sqlmesh run --select-model a b")
    # 'b' is not a second model but run's environment argument, exactly as click reads it.
    assert result.command is not None
    assert dict(result.command.flags) == {"--select-model": ("a",)}
    assert "b" in result.command.argv
    assert only_error("sqlmesh run --select-model a b c").token == "c"


def test_global_options_go_before_the_subcommand() -> None:
    _, flags = accepted("sqlmesh --gateway prod --debug run")
    assert flags == {"--gateway": ("prod",), "--debug": ()}
    error = only_error("sqlmesh run --gateway prod")
    assert error.reason == "is a global sqlmesh option and goes before the subcommand"
    assert error.allowed == "sqlmesh --gateway ... run ..."


@pytest.mark.parametrize(
    ("text", "token", "reason_start"),
    [
        ("sqlmesh --paths other run", "--paths", "loads a different project"),
        ("sqlmesh -p other run", "-p", "loads a different project"),
        ("sqlmesh --dotenv .env.prod run", "--dotenv", "loads environment variables"),
        ("sqlmesh --log-file-dir logs/2 run", "--log-file-dir", "moves SQLMesh's log files"),
    ],
)
def test_denied_global_flags(text: str, token: str, reason_start: str) -> None:
    error = only_error(text)
    assert error.token == token
    assert error.reason.startswith(reason_start)


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("sqlmesh migrate", "migrate"),
        ("sqlmesh invalidate dev", "invalidate"),
        ("sqlmesh create_external_models", "create_external_models"),
    ],
)
def test_off_by_default(text: str, token: str) -> None:
    error = only_error(text)
    assert error.token == token
    assert error.reason.startswith("is off by default")
    policy = CommandPolicy(sqlmesh=KindPolicy(enable_subcommands=frozenset({token})))
    assert accepted(text, policy)[0] == token


@pytest.mark.parametrize(
    "text",
    [
        "sqlmesh destroy",
        "sqlmesh ui",
        "sqlmesh fetchdf 'select 1'",
        "sqlmesh rollback",
        "sqlmesh state export -o x.json",
        "sqlmesh init duckdb",
    ],
)
def test_unsupported_subcommands(text: str) -> None:
    assert only_error(text).reason.startswith("is never run by runyard")


def test_positional_arguments() -> None:
    assert only_error("sqlmesh dag").reason == "needs the file argument"
    assert only_error("sqlmesh dag ../dag.html").reason.startswith("leaves the project")
    assert only_error("sqlmesh table_diff").reason == "needs the source_to_target argument"
    error = only_error("sqlmesh janitor now")
    assert error.allowed == "sqlmesh janitor takes options only"
    error = only_error("sqlmesh run 'prod env'")
    assert error.reason == "is not a valid name (the environment argument)"
    assert accepted("sqlmesh test tests/test_orders.yaml::test_full tests/b.yaml")[0] == "test"


def test_short_options_mean_what_the_subcommand_says() -> None:
    assert accepted("sqlmesh plan --auto-apply --no-prompts -s 2024-01-01")[1]["--start"] == (
        "2024-01-01",
    )
    assert accepted("sqlmesh table_diff a:b -s col")[1]["--skip-columns"] == ("col",)
    assert accepted("sqlmesh test -v -v")[1] == {"--verbose": ()}


def test_sqlmesh_commands_are_not_dbt_commands() -> None:
    error = only_error("dbt run")
    assert error.reason == "this is a sqlmesh project, so its commands start with sqlmesh"


def test_every_shipped_example_is_accepted() -> None:
    for text in RULES["sqlmesh"].examples:
        assert validate_command("sqlmesh", text).ok, text
