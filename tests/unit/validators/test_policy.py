"""CommandPolicy and load_policy: operators loosen and tighten the shipped rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from validators import CommandPolicy, KindPolicy, load_policy, validate_command


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_the_default_policy_is_the_shipped_rules() -> None:
    assert CommandPolicy() == CommandPolicy.from_mapping({})
    assert validate_command("dbt", "dbt build", CommandPolicy()).ok
    assert not validate_command("dbt", "dbt deps", CommandPolicy()).ok


def test_load_policy_reads_every_setting(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "dbt": {
                "enable_subcommands": ["deps", "list"],
                "disable_subcommands": ["show"],
                "allow_flags": ["--inline"],
                "deny_flags": ["-f", "--target"],
                "run_operation_macros": ["grant_select"],
            },
            "sqlmesh": {"enable_subcommands": ["migrate"], "deny_flags": ["--gateway"]},
        },
    )
    policy = load_policy(path)
    assert policy.dbt == KindPolicy(
        enable_subcommands=frozenset({"deps", "ls"}),  # names are made canonical
        disable_subcommands=frozenset({"show"}),
        allow_flags=frozenset({"--inline"}),
        deny_flags=frozenset({"--full-refresh", "--target"}),
        run_operation_macros=frozenset({"grant_select"}),
    )
    assert load_policy(str(path)) == policy  # a str path works as well


def test_a_policy_changes_what_is_accepted(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            {
                "dbt": {
                    "enable_subcommands": ["deps"],
                    "disable_subcommands": ["show"],
                    "allow_flags": ["--inline"],
                    "deny_flags": ["--full-refresh", "--target"],
                },
                "sqlmesh": {"enable_subcommands": ["migrate"], "deny_flags": ["--gateway"]},
            },
        )
    )
    assert validate_command("dbt", "dbt deps", policy).ok
    assert validate_command("dbt", "dbt compile --inline 'select 1'", policy).ok
    (error,) = validate_command("dbt", "dbt show --select x", policy).errors
    assert error.reason == "is turned off by this runyard's command policy"
    assert "show" not in error.allowed
    for text in ("dbt run -f", "dbt run --full-refresh", "dbt -t prod run", "dbt run -t prod"):
        (error,) = validate_command("dbt", text, policy).errors
        assert error.reason == "is turned off by this runyard's command policy", text
    assert validate_command("sqlmesh", "sqlmesh migrate", policy).ok
    assert not validate_command("sqlmesh", "sqlmesh --gateway prod run", policy).ok


def test_allowed_path_flags_still_stay_inside_the_project() -> None:
    policy = CommandPolicy(dbt=KindPolicy(allow_flags=frozenset({"--profiles-dir"})))
    assert validate_command("dbt", "dbt run --profiles-dir config", policy).ok
    (error,) = validate_command("dbt", "dbt run --profiles-dir /root/.dbt", policy).errors
    assert error.reason.startswith("is an absolute path")


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ValueError, match="unknown subcommand 'frobnicate'"):
        CommandPolicy(dbt=KindPolicy(enable_subcommands=frozenset({"frobnicate"})))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({"spark": {}}, "unknown section(s) 'spark' in the command policy"),
        ({"dbt": []}, "'dbt' must be an object"),
        ({"dbt": {"enable": ["deps"]}}, "unknown key(s) 'enable' in 'dbt'"),
        ({"dbt": {"enable_subcommands": "deps"}}, "dbt.enable_subcommands must be a list"),
        ({"dbt": {"deny_flags": [1]}}, "dbt.deny_flags must be a list of strings"),
        ({"dbt": {"enable_subcommands": ["frob"]}}, "unknown subcommand 'frob'; known: build"),
        ({"dbt": {"enable_subcommands": ["docs serve"]}}, "cannot be enabled: it starts a web"),
        ({"sqlmesh": {"enable_subcommands": ["destroy"]}}, "cannot be enabled: it drops"),
        ({"dbt": {"allow_flags": ["--frob"]}}, "'--frob' is not a dbt option runyard knows"),
        ({"dbt": {"deny_flags": ["full-refresh"]}}, "is not a dbt option runyard knows"),
        ({"sqlmesh": {"deny_flags": ["-s"]}}, "'-s' means different options"),
        ({"dbt": {"deny_flags": ["-m"]}}, "'-m' means different options"),
        (
            {"dbt": {"enable_subcommands": ["deps"], "disable_subcommands": ["deps"]}},
            "'deps' is in both enable_subcommands and disable_subcommands",
        ),
        (
            {"dbt": {"allow_flags": ["--inline"], "deny_flags": ["--inline"]}},
            "'--inline' is in both allow_flags and deny_flags",
        ),
        ({"dbt": {"run_operation_macros": ["drop table x"]}}, "is not a macro name"),
        ({"sqlmesh": {"run_operation_macros": ["x"]}}, "sqlmesh has no run-operation command"),
    ],
)
def test_bad_policies_raise_a_clear_value_error(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        CommandPolicy.from_mapping(data)
    assert message in str(raised.value)


def test_bad_policy_files_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"dbt": {"enable_subcommands": ["frob"]}})
    with pytest.raises(ValueError, match=r"policy.json.*unknown subcommand 'frob'"):
        load_policy(path)
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_policy(write(tmp_path, "{'dbt': {}}"))
    with pytest.raises(ValueError, match="cannot read the command policy file"):
        load_policy(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="must be a JSON object"):
        load_policy(write(tmp_path, "[]"))


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown project kind"):
        CommandPolicy().for_kind("spark")
