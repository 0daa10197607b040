"""The rule tables against the real dbt and SQLMesh CLIs installed in this environment.

If one of these fails after upgrading dbt or SQLMesh, the allowlist has drifted from the CLI:
update the family's table in validators/rules/ (or add a new family) until they agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.unit.validators.cli_trees import (
    cli_for,
    dry_parse,
    installed_version,
    reading_differences,
    rule_problems,
)
from validators import CommandPolicy, KindPolicy, validate_command
from validators.rules import RULES, Arity, FlagSpec, RuleSet, rules_for
from validators.rules.model import option, switch

EXAMPLES = [(kind, text) for kind, rules in RULES.items() for text in rules.examples]


@pytest.fixture(scope="module", autouse=True)
def cli_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """click checks that dbt's default profiles and project directories exist while parsing."""
    workdir = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_PROFILES_DIR", str(workdir))
        patch.chdir(workdir)
        yield workdir


@pytest.mark.parametrize("kind", sorted(RULES))
def test_installed_cli_belongs_to_the_rules_family(kind: str) -> None:
    rules = rules_for(kind)
    assert installed_version(kind).startswith(rules.version_prefix), (
        f"{kind} {installed_version(kind)} is installed but the rules are for {rules.family}"
    )


@pytest.mark.parametrize("kind", sorted(RULES))
def test_every_allowed_subcommand_and_flag_exists_in_the_cli(kind: str) -> None:
    assert rule_problems(rules_for(kind), cli_for(kind)) == []


def _with_flag(rules: RuleSet, subcommand: str, flag: FlagSpec) -> RuleSet:
    subs = tuple(
        dataclasses.replace(s, flags=(*s.flags, flag)) if s.name == subcommand else s
        for s in rules.subcommands
    )
    return dataclasses.replace(rules, subcommands=subs)


def test_checker_notices_a_made_up_flag() -> None:
    drifted = _with_flag(rules_for("dbt"), "build", switch("--made-up-flag"))
    assert rule_problems(drifted, cli_for("dbt")) == [
        "dbt build: --made-up-flag is not an option of the CLI"
    ]


def test_checker_notices_a_wrong_arity() -> None:
    dbt = rules_for("dbt")
    flag_threads_as_switch = _with_flag(dbt, "run", switch("--threads"))
    run = flag_threads_as_switch.subcommand("run")
    assert run is not None
    # The table now lists --threads twice; the switch entry is the drifted one.
    problems = rule_problems(flag_threads_as_switch, cli_for("dbt"))
    assert "dbt run: --threads arity is none, CLI: one" in problems


def test_checker_notices_a_single_value_flag_that_takes_many() -> None:
    drifted = _with_flag(rules_for("dbt"), "test", option("--select", repeatable=True))
    problems = rule_problems(drifted, cli_for("dbt"))
    assert "dbt test: --select arity is one, CLI: many" in problems


def test_checker_notices_a_wrong_alias_a_missing_subcommand_and_an_unchecked_path() -> None:
    sqlmesh = rules_for("sqlmesh")
    plan = sqlmesh.subcommand("plan")
    assert plan is not None
    renamed = dataclasses.replace(plan, name="plan-all")
    drifted = dataclasses.replace(
        sqlmesh,
        subcommands=(renamed, *(s for s in sqlmesh.subcommands if s is not plan)),
        global_flags=(
            FlagSpec("--gateway", ("-g",), Arity.ONE),
            FlagSpec("--dotenv", (), Arity.ONE),  # a click.Path, so it must be checked as one
        ),
    )
    problems = rule_problems(drifted, cli_for("sqlmesh"))
    assert "sqlmesh plan-all: no such subcommand in the CLI" in problems
    assert "sqlmesh (global): -g is not a spelling of --gateway in the CLI" in problems
    assert "sqlmesh (global): --dotenv is a path in the CLI but not checked as one" in problems


@pytest.mark.parametrize(("kind", "text"), EXAMPLES)
def test_every_example_is_accepted_and_parses_the_same_in_the_real_cli(
    kind: str, text: str
) -> None:
    result = validate_command(kind, text)
    assert result.ok, result.errors
    assert result.command is not None
    parsed = dry_parse(kind, result.command.argv)
    assert reading_differences(rules_for(kind), result.command, parsed) == []


def test_run_operation_with_an_allowed_macro_parses_in_the_real_cli() -> None:
    policy = CommandPolicy(dbt=KindPolicy(run_operation_macros=frozenset({"grant_select"})))
    text = "dbt run-operation grant_select --args '{role: reporter}'"
    result = validate_command("dbt", text, policy)
    assert result.command is not None, result.errors
    parsed = dry_parse("dbt", result.command.argv)
    assert parsed.contexts[-1].params["macro"] == "grant_select"
    assert reading_differences(rules_for("dbt"), result.command, parsed) == []


def test_dry_parse_refuses_what_the_cli_refuses() -> None:
    with pytest.raises(click.UsageError):
        dry_parse("dbt", ("dbt", "build", "--no-such-flag"))
    with pytest.raises(click.UsageError):
        dry_parse("sqlmesh", ("sqlmesh", "dag"))
