"""The option audit: what each accepted option reads, writes or executes, checked against the
installed CLIs, and the rules that follow from it (issue 19).

If a contract test here fails after upgrading dbt or SQLMesh, an option that takes a path (or a
new option) needs an audit line in validators/rules/<family>_audit.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from tests.unit.validators.cli_trees import audit_problems, cli_for, dry_parse
from validators import CommandError, CommandPolicy, KindPolicy, validate_command
from validators.rules import RULES, rules_for
from validators.rules.model import OFF_BY_DEFAULT_EFFECTS, Effect, OptionAudit


@pytest.fixture(scope="module", autouse=True)
def cli_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """click checks that dbt's default profiles and project directories exist while parsing."""
    workdir = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_PROFILES_DIR", str(workdir))
        patch.chdir(workdir)
        yield workdir


def errors(kind: str, text: str, policy: CommandPolicy | None = None) -> tuple[CommandError, ...]:
    result = validate_command(kind, text, policy)
    assert not result.ok, f"{text!r} was accepted"
    return result.errors


def only_error(kind: str, text: str, policy: CommandPolicy | None = None) -> CommandError:
    (error,) = errors(kind, text, policy)
    return error


def accepted(kind: str, text: str, policy: CommandPolicy | None = None) -> tuple[str, ...]:
    result = validate_command(kind, text, policy)
    assert result.command is not None, result.errors
    return result.command.argv


# -- the audit against the installed CLIs ------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RULES))
def test_every_option_is_audited_and_the_cli_agrees_about_paths(kind: str) -> None:
    assert audit_problems(rules_for(kind), cli_for(kind)) == []


def _without_audit_line(kind: str, key: str) -> dict[str, OptionAudit]:
    audit = dict(rules_for(kind).audit)
    del audit[key]
    return audit


def test_the_checker_notices_an_option_without_an_audit_line() -> None:
    drifted = dataclasses.replace(
        rules_for("dbt"), audit=MappingProxyType(_without_audit_line("dbt", "--threads"))
    )
    problems = audit_problems(drifted, cli_for("dbt"))
    assert "dbt run: --threads has no audit line" in problems


def test_the_checker_notices_a_path_audited_as_something_else() -> None:
    audit = dict(rules_for("dbt").audit)
    audit["--record-timing-info"] = OptionAudit(Effect.NONE, "mistaken")
    drifted = dataclasses.replace(rules_for("dbt"), audit=MappingProxyType(audit))
    problems = audit_problems(drifted, cli_for("dbt"))
    assert "dbt debug: --record-timing-info takes a path but is audited none" in problems
    assert "dbt (global): --record-timing-info is audited none, checked as path" in problems


def test_the_checker_notices_a_new_cli_option_that_takes_a_path() -> None:
    # As if dbt grew --deprecated-state tomorrow: a click.Path option the tables do not know.
    drifted = dataclasses.replace(rules_for("dbt"), left_out=MappingProxyType({}))
    problems = audit_problems(drifted, cli_for("dbt"))
    assert "dbt build: --deprecated-state takes a path but is not audited" in problems


def test_the_checker_notices_a_stale_audit_line() -> None:
    audit = dict(rules_for("sqlmesh").audit) | {"--no-such-option": OptionAudit(Effect.NONE, "x")}
    drifted = dataclasses.replace(rules_for("sqlmesh"), audit=MappingProxyType(audit))
    problems = audit_problems(drifted, cli_for("sqlmesh"))
    assert "sqlmesh: audit line '--no-such-option' names nothing" in problems


@pytest.mark.parametrize("kind", sorted(RULES))
def test_options_carrying_code_or_reaching_out_are_off_by_default(kind: str) -> None:
    rules = rules_for(kind)
    places = [(None, rules.global_flags)] + [(s.name, s.flags) for s in rules.subcommands]
    for sub, flags in places:
        for flag in flags:
            audit = rules.audit_of(sub, flag.name)
            assert audit is not None
            if audit.effect in OFF_BY_DEFAULT_EFFECTS:
                assert flag.denied, f"{sub} {flag.name} is {audit.effect.value} but on by default"


def test_an_unaudited_option_is_refused_at_run_time() -> None:
    """Fail closed: should an audit line go missing, the option is refused, not let through."""
    rules = rules_for("dbt")
    stripped = dataclasses.replace(
        rules, audit=MappingProxyType(_without_audit_line("dbt", "--threads"))
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("validators.command.rules_for", lambda kind: stripped)
        error = only_error("dbt", "dbt run --threads 4")
    assert error.token == "--threads"
    assert "has not been audited" in error.reason


# -- paths that options write ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "dbt -r victim.txt debug",
        "dbt --record-timing-info runyard.db debug",
        "dbt --record-timing-info=profiles.yml run",
        "dbt debug -r dbt_project.yml",
        "dbt source freshness -o profiles.yml",
        "dbt source freshness --output dbt_project.yml",
        "dbt source freshness --output=models/x.sql",
        "dbt source freshness -o targetx/sources.json",
    ],
)
def test_options_that_write_files_stay_in_target_and_logs(text: str) -> None:
    error = only_error("dbt", text)
    assert "outside target/ and logs/, the only folders an option may write into" in error.reason
    assert error.token in text
    assert error.allowed.startswith("a relative path inside target/ or logs/, e.g. target/")


def test_the_refusal_says_what_the_option_writes_and_suggests_a_path() -> None:
    error = only_error("dbt", "dbt -r victim.txt debug")
    assert error.token == "victim.txt"
    assert "-r writes a cProfile dump of the run to this file" in error.reason
    assert error.allowed == "a relative path inside target/ or logs/, e.g. target/victim.txt"


@pytest.mark.parametrize(
    "text",
    [
        "dbt -r target/timing.prof debug",
        "dbt run --record-timing-info logs/run.prof",
        "dbt source freshness -o target/sources.json",
        "dbt source freshness --output ./target/fresh/sources.json",
    ],
)
def test_written_paths_inside_target_or_logs_are_accepted_and_parse_in_the_cli(text: str) -> None:
    argv = accepted("dbt", text)
    dry_parse("dbt", argv)


def test_the_file_runyard_reads_back_cannot_be_written() -> None:
    error = only_error("dbt", "dbt -r target/run_results.json run")
    assert "a file runyard reads back after the run" in error.reason
    assert error.allowed.endswith("e.g. target/other-run_results.json")


def test_paths_still_refuse_traversal_and_absolute_paths() -> None:
    assert "'..'" in only_error("dbt", "dbt -r target/../x debug").reason
    assert "absolute" in only_error("dbt", "dbt -r /tmp/x debug").reason
    assert "home directory" in only_error("dbt", "dbt source freshness -o '~/x'").reason


def test_sqlmesh_dag_writes_only_into_target_or_logs() -> None:
    error = only_error("sqlmesh", "sqlmesh dag dag.html")
    assert error.token == "dag.html"
    assert "the file argument writes the model graph" in error.reason
    accepted("sqlmesh", "sqlmesh dag logs/dag.html")


def test_a_write_option_allowed_by_policy_still_writes_only_into_the_output_folders() -> None:
    policy = CommandPolicy(dbt=KindPolicy(allow_flags=frozenset({"--target-path", "--log-path"})))
    accepted("dbt", "dbt run --target-path target/ci --log-path logs/ci", policy)
    error = only_error("dbt", "dbt run --target-path models", policy)
    assert error.token == "models" and "outside target/ and logs/" in error.reason
    sqlmesh = CommandPolicy(sqlmesh=KindPolicy(allow_flags=frozenset({"--log-file-dir"})))
    assert only_error("sqlmesh", "sqlmesh --log-file-dir config run", sqlmesh).token == "config"


# -- SQL and Jinja carried by options ------------------------------------------------------------


def test_sqlmesh_table_diff_where_is_off_by_default() -> None:
    error = only_error("sqlmesh", 'sqlmesh table_diff prod:dev sushi.orders --where "1=1"')
    assert error.token == "--where"
    assert "carries SQL" in error.reason
    assert "allow_flags" in error.allowed


def test_an_operator_can_turn_where_on() -> None:
    policy = CommandPolicy(sqlmesh=KindPolicy(allow_flags=frozenset({"--where"})))
    argv = accepted("sqlmesh", "sqlmesh table_diff prod:dev sushi.orders --where 'id > 1'", policy)
    dry_parse("sqlmesh", argv)


def test_refused_options_are_not_offered_as_alternatives() -> None:
    error = only_error("sqlmesh", "sqlmesh table_diff prod:dev m --wher x")
    assert "--where" not in error.allowed


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("""dbt run --vars '{"x": "{{ run_query(1) }}"}'""", "'{{'"),
        ("""dbt run --vars '{x: "{% do run_query(1) %}"}'""", "'{%'"),
        ("""dbt build --vars '{x: "{# note #}"}'""", "'{#'"),
        ("""dbt run --vars='{{ run_query("select 1") }}'""", "'{{'"),
        ("""dbt run --vars '{"x": "\\u007b\\u007b run_query(1) }}"}'""", "once its escapes"),
        ("""dbt run --vars '{"x": "\\x7b% set y = 1 %}"}'""", "once its escapes"),
    ],
)
def test_vars_with_jinja_are_refused(text: str, delimiter: str) -> None:
    error = only_error("dbt", text)
    assert error.token.startswith(("{", "--vars=")) or "{" in error.token
    assert delimiter in error.reason
    assert "dbt renders Jinja inside these values" in error.reason
    assert "--inline" in error.reason
    assert "without {{ }}" in error.allowed


def test_run_operation_args_with_jinja_are_refused() -> None:
    policy = CommandPolicy(dbt=KindPolicy(run_operation_macros=frozenset({"grant_select"})))
    text = """dbt run-operation grant_select --args '{role: "{{ env_var('X') }}"}'"""
    assert "Jinja delimiter" in only_error("dbt", text, policy).reason


@pytest.mark.parametrize(
    "value",
    ['{"a": {"b": 1}}', "{a: {b: [1, 2]}}", '{"note": "use { and } freely"}', "{}"],
)
def test_vars_without_jinja_are_accepted(value: str) -> None:
    argv = accepted("dbt", f"dbt run --vars '{value}'")
    dry_parse("dbt", argv)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("dbt", "dbt show --inline 'select 1'"),
        ("dbt", "dbt compile --inline 'select 1'"),
        ("dbt", "dbt show --inline-direct 'select 1'"),
        ("dbt", "dbt run --send-anonymous-usage-stats"),
        ("sqlmesh", "sqlmesh table_diff a:b m --where x"),
    ],
)
def test_every_option_with_an_off_effect_is_refused(kind: str, text: str) -> None:
    error = errors(kind, text)[0]
    assert error.token.startswith("--")
    assert "allow_flags" in error.allowed
