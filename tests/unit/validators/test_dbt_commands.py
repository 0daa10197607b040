"""The dbt rules: accepted commands and refused ones, with what the user is told."""

from __future__ import annotations

import pytest

from validators import CommandError, CommandPolicy, KindPolicy, validate_command
from validators.rules import RULES


def accepted(
    text: str, policy: CommandPolicy | None = None
) -> tuple[str, dict[str, tuple[str, ...]]]:
    result = validate_command("dbt", text, policy)
    assert result.ok, result.errors
    assert result.command is not None
    return result.command.subcommand, dict(result.command.flags)


def refused(text: str, policy: CommandPolicy | None = None) -> list[CommandError]:
    result = validate_command("dbt", text, policy)
    assert not result.ok
    assert result.command is None
    assert result.errors
    return list(result.errors)


def only_error(text: str, policy: CommandPolicy | None = None) -> CommandError:
    (error,) = refused(text, policy)
    return error


def test_argv_is_the_split_command_and_flags_are_canonical() -> None:
    result = validate_command("dbt", "dbt run -s 'tag:nightly' b -x --threads=4 -t prod")
    assert result.command is not None
    assert result.command.kind == "dbt"
    assert result.command.argv == (
        "dbt", "run", "-s", "tag:nightly", "b", "-x", "--threads=4", "-t", "prod",
    )  # fmt: skip
    assert result.command.subcommand == "run"
    assert dict(result.command.flags) == {
        "--select": ("tag:nightly", "b"),
        "--fail-fast": (),
        "--threads": ("4",),
        "--target": ("prod",),
    }


@pytest.mark.parametrize(
    ("text", "subcommand"),
    [
        ("dbt build", "build"),
        ("dbt run", "run"),
        ("dbt test", "test"),
        ("dbt seed", "seed"),
        ("dbt snapshot", "snapshot"),
        ("dbt compile", "compile"),
        ("dbt source freshness", "source freshness"),
        ("dbt docs generate", "docs generate"),
        ("dbt ls", "ls"),
        ("dbt list", "ls"),
        ("dbt retry", "retry"),
        ("dbt parse", "parse"),
        ("dbt debug", "debug"),
        ("dbt show --select orders", "show"),
        ("dbt clone --state prod-state", "clone"),
    ],
)
def test_default_subcommands(text: str, subcommand: str) -> None:
    assert accepted(text)[0] == subcommand


def test_select_takes_several_values_up_to_the_next_flag() -> None:
    _, flags = accepted("dbt build --select a b+ tag:x --exclude c d --select e")
    assert flags["--select"] == ("a", "b+", "tag:x", "e")
    assert flags["--exclude"] == ("c", "d")


def test_global_options_go_before_or_after_the_subcommand_but_only_once() -> None:
    assert accepted("dbt --log-format json --debug run")[1] == {
        "--log-format": ("json",),
        "--debug": (),
    }
    assert accepted("dbt run --log-format json")[1] == {"--log-format": ("json",)}
    error = only_error("dbt --debug run --debug")
    assert (error.token, error.reason) == ("--debug", "is given more than once")


def test_subcommand_options_are_refused_before_the_subcommand() -> None:
    error = refused("dbt --select x run")[0]
    assert error.reason == "is not accepted before the subcommand"
    assert error.allowed.startswith("put it after the subcommand")


def test_first_word_must_be_dbt() -> None:
    error = only_error("sqlmesh plan")
    assert (error.token, error.position) == ("sqlmesh", 0)
    assert "commands start with dbt" in error.reason
    assert only_error("bash -c 'dbt run'").token == "bash"
    assert only_error("/usr/bin/dbt run").token == "/usr/bin/dbt"
    assert only_error("DBT_TARGET=prod dbt run").token == "DBT_TARGET=prod"


def test_empty_and_missing_subcommand() -> None:
    assert only_error("").reason == "the command is empty"
    assert only_error("   ").reason == "the command is empty"
    assert only_error("dbt").reason == "names no subcommand"
    assert only_error("dbt --debug").reason == "names no subcommand"


def test_unknown_subcommands_are_refused_with_the_list_and_a_suggestion() -> None:
    error = only_error("dbt biuld")
    assert error.reason == "is not a dbt subcommand runyard runs (did you mean build?)"
    assert error.allowed.startswith("dbt followed by one of: build, run, test")
    assert "deps" not in error.allowed  # off by default
    assert only_error("dbt source").reason == "needs a second word, as in dbt source freshness"


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("dbt init my_project", "init"),
        ("dbt docs serve", "docs serve"),
        ("dbt clean", "clean"),
        ("dbt source snapshot-freshness", "source snapshot-freshness"),
    ],
)
def test_unsupported_subcommands_are_refused(text: str, token: str) -> None:
    error = only_error(text)
    assert error.token == token
    assert error.reason.startswith("is never run by runyard")


def test_deps_is_off_by_default_and_an_operator_can_turn_it_on() -> None:
    error = only_error("dbt deps")
    assert error.reason.startswith("is off by default: it downloads packages")
    assert "enable_subcommands" in error.allowed
    policy = CommandPolicy(dbt=KindPolicy(enable_subcommands=frozenset({"deps"})))
    assert accepted("dbt deps --lock", policy)[0] == "deps"
    assert only_error("dbt deps --add-package x", policy).token == "--add-package"


def test_run_operation_runs_only_macros_the_policy_lists() -> None:
    error = only_error("dbt run-operation grant_select")
    assert error.token == "grant_select"
    assert "no macro yet" in error.allowed
    policy = CommandPolicy(
        dbt=KindPolicy(run_operation_macros=frozenset({"grant_select", "ops.vacuum"}))
    )
    assert accepted("dbt run-operation grant_select --args '{role: r}'", policy)[0] == (
        "run-operation"
    )
    assert accepted("dbt run-operation ops.vacuum", policy)[0] == "run-operation"
    error = only_error("dbt run-operation drop_everything", policy)
    assert error.allowed == "one of grant_select, ops.vacuum"
    assert only_error("dbt run-operation", policy).reason == "needs the macro argument"
    assert only_error("dbt run-operation 'a b'", policy).reason.startswith("is not a macro name")
    assert refused("dbt run-operation grant_select other", policy)[0].token == "other"


@pytest.mark.parametrize(
    ("text", "token", "reason_start"),
    [
        ("dbt run --profiles-dir profiles", "--profiles-dir", "changes where dbt reads"),
        ("dbt run --project-dir other", "--project-dir", "runs a different project"),
        ("dbt run --target-path target/elsewhere", "--target-path", "moves target/"),
        ("dbt run --log-path logs/2", "--log-path", "moves dbt's log files"),
        ("dbt --log-path logs/2 run", "--log-path", "moves dbt's log files"),
        ("dbt run --partial-parse-file-path x.msgpack", "--partial-parse-file-path", "reads"),
        ("dbt run --send-anonymous-usage-stats", "--send-anonymous-usage-stats", "sends"),
        ("dbt run --upload-to-artifacts-ingest-api", "--upload-to-artifacts-ingest-api", "up"),
        ("dbt run --macro-debugging", "--macro-debugging", "opens an interactive debugger"),
        ("dbt run --no-write-json", "--no-write-json", "stops dbt writing run_results"),
        ("dbt show --inline 'select 1'", "--inline", "runs arbitrary SQL"),
        ("dbt show --inline-direct 'select 1'", "--inline-direct", "runs arbitrary SQL"),
        ("dbt compile --inline 'select 1'", "--inline", "runs arbitrary SQL"),
    ],
)
def test_denied_flags(text: str, token: str, reason_start: str) -> None:
    error = only_error(text)
    assert error.token == token
    assert error.reason.startswith(reason_start)
    assert "allow_flags" in error.allowed


def test_the_opposite_spellings_of_denied_switches_are_fine() -> None:
    assert accepted("dbt run --no-send-anonymous-usage-stats --no-macro-debugging --write-json")


@pytest.mark.parametrize(
    ("text", "token", "reason"),
    [
        ("dbt run --state ../prod", "../prod", "leaves the project directory with '..'"),
        ("dbt run --state a/../../b", "a/../../b", "leaves the project directory with '..'"),
        ("dbt run --defer-state /etc", "/etc", "is an absolute path"),
        ("dbt run --state '~root/x'", "~root/x", "starts with ~, a home directory"),
        ("dbt run --record-timing-info ..", "..", "leaves the project directory with '..'"),
        ("dbt source freshness -o /tmp/x.json", "/tmp/x.json", "is an absolute path"),
        ("dbt run --state '．．/x'", "．．/x", "leaves the project directory with '..'"),
        ("dbt run --state 'a\\b'", "a\\b", "contains a backslash"),
    ],
)
def test_path_values_stay_inside_the_project(text: str, token: str, reason: str) -> None:
    error = only_error(text)
    assert error.token == token
    assert error.reason.startswith(reason)


def test_paths_inside_the_project_are_fine() -> None:
    _, flags = accepted("dbt run --defer --state prod-state/manifest --favor-state")
    assert flags["--state"] == ("prod-state/manifest",)


@pytest.mark.parametrize(
    ("text", "token", "reason"),
    [
        ("dbt run --select", "--select", "needs a value"),
        ("dbt run --threads", "--threads", "needs a value"),
        ("dbt run --select --full-refresh", "--full-refresh", "stands where --select expects"),
        ("dbt run --target -x", "-x", "stands where --target expects its value"),
        ("dbt run --vars '-1'", "-1", "stands where --vars expects its value"),
        ("dbt run --vars=-x", "-x", "stands where --vars expects its value"),
        ("dbt run --threads four", "four", "is not a whole number (the value of --threads)"),
        (
            "dbt run --log-level loud",
            "loud",
            "is not one of the accepted values (the value of --log-level)",
        ),
        ("dbt run --target 'prod eu'", "prod eu", "is not a valid name"),
        ("dbt run --full-refresh=true", "--full-refresh=true", "is a switch and takes no value"),
        ("dbt run --threads 4 --threads 8", "--threads", "is given more than once"),
        ("dbt run --select ''", "''", "is an empty argument"),
        ("dbt run --select=", "--select=", "has an empty value"),
        ("dbt run --target= prod", "--target=", "has an empty value"),
    ],
)
def test_flag_values(text: str, token: str, reason: str) -> None:
    error = refused(text)[0]
    assert error.token == token
    assert error.reason.startswith(reason)


def test_choice_errors_list_the_choices() -> None:
    error = only_error("dbt ls --output xml")
    assert error.allowed == "one of json, name, path, selector"


def test_a_flag_the_subcommand_does_not_take_is_refused_with_its_options() -> None:
    error = only_error("dbt seed --store-failures")
    assert error.reason == "is not an option of dbt seed"
    assert error.allowed.startswith("options of dbt seed: --threads, --vars, --select")
    assert error.allowed.endswith("plus dbt's general options such as --target, --debug, "
                                  "--fail-fast, --log-format")  # fmt: skip
    assert "--profiles-dir" not in error.allowed  # denied flags are not advertised
    error = only_error("dbt build --ful-refresh")
    assert error.reason == "is not an option of dbt build (did you mean --full-refresh?)"


def test_words_after_the_subcommand_must_be_options_or_its_arguments() -> None:
    error = only_error("dbt build my_model")
    assert (error.token, error.position) == ("my_model", 2)
    assert error.allowed == "to choose what runs, use --select my_model"
    assert only_error("dbt build --help").token == "--help"
    assert only_error("dbt build -- x").token == "--"
    assert only_error("dbt build -").token == "-"


def test_short_option_clusters_and_attached_values_are_not_guessed() -> None:
    assert only_error("dbt run -xf").token == "-xf"
    assert only_error("dbt run -tprod").token == "-tprod"
    assert only_error("dbt run -t=prod").token == "-t=prod"


def test_shell_errors_come_back_as_command_errors() -> None:
    error = only_error("dbt run; rm -rf /")
    assert (error.token, error.position) == (";", 1)
    assert "single quotes" in error.allowed


def test_every_shipped_example_is_accepted() -> None:
    for text in RULES["dbt"].examples:
        assert validate_command("dbt", text).ok, text


def test_unknown_project_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown project kind 'spark'"):
        validate_command("spark", "spark-submit x")
