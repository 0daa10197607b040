"""Environment variables by allowlist (issue 19): the names dbt 1.11 and SQLMesh actually consult,
read from their installed source, are each decided by validators.environment; and the names that
walked around the command rules are refused with their reason.

If the contract test fails after upgrading dbt or SQLMesh, a newly read variable needs a
decision in validators/environment.py: refuse it (by name or prefix) or list it in
CONSULTED_AND_ALLOWED with the reason it is harmless.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from app.executors.local.process import build_env
from app.models import JobConfig
from tests.factories import run_record, snapshot
from validators.environment import (
    CONSULTED_AND_ALLOWED,
    EnvProblem,
    check_environment,
    is_decided,
    name_problem,
    permitted,
)

ENGINE_PACKAGES = ("dbt", "dbt_common", "sqlmesh", "sqlmesh_dbt")
NAME = r"([A-Za-z_][A-Za-z0-9_]*)"
# os.environ.get("X"), os.getenv("X"), os_getenv("X"), os.environ["X"], os.environ.setdefault(...)
READ = re.compile(r"(?:environ\.get|getenv|environ\.setdefault|environ\.pop|environ\[)\(?\s*"
                  rf"['\"]{NAME}['\"]")  # fmt: skip
IN_ENVIRON = re.compile(rf"['\"]{NAME}['\"]\s+(?:not\s+)?in\s+(?:os\.)?environ")
ENVVAR = re.compile(rf"envvar\s*=\s*\[?\s*['\"]{NAME}['\"]")
ENGINE_CONSTANT = re.compile(r"['\"]((?:DBT|SQLMESH)_[A-Z0-9_]*)['\"]")


def _package_files(package: str) -> Iterator[Path]:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, package
    for location in spec.submodule_search_locations:
        yield from Path(location).rglob("*.py")


@functools.cache
def names_in_source() -> dict[str, str]:
    """Every environment variable name the installed engines read, with one file reading it."""
    found: dict[str, str] = {}
    for package in ENGINE_PACKAGES:
        for path in _package_files(package):
            text = path.read_text(encoding="utf-8", errors="replace")
            for pattern in (READ, IN_ENVIRON, ENVVAR, ENGINE_CONSTANT):
                for match in pattern.finditer(text):
                    found.setdefault(match.group(1), str(path))
    return found


def _cli_envvars(command: click.Command) -> Iterator[str]:
    for param in command.params:
        envvar = param.envvar
        if isinstance(envvar, str):
            yield envvar
        elif envvar:
            yield from envvar
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _cli_envvars(sub)


@functools.cache
def names_of_cli_options() -> frozenset[str]:
    """Environment variables click reads for the options of both CLIs (every command)."""
    from dbt.cli.main import cli as dbt_cli
    from dbt.env_vars import KNOWN_ENGINE_ENV_VARS
    from sqlmesh.cli.main import cli as sqlmesh_cli

    names = {*_cli_envvars(dbt_cli), *_cli_envvars(sqlmesh_cli)}
    for known in KNOWN_ENGINE_ENV_VARS:
        names.add(known.name)
        if known.old_name:
            names.add(known.old_name)
    return frozenset(names)


def test_the_scan_finds_what_it_should() -> None:
    """A scan that finds nothing would pass vacuously: check it sees names we know are read."""
    source = names_in_source()
    for name in ("SQLMESH_DOTENV_PATH", "SQLMESH_HOME", "DBT_PROFILES_DIR", "DO_NOT_TRACK"):
        assert name in source, name
    options = names_of_cli_options()
    for name in ("DBT_ENGINE_PROFILES_DIR", "DBT_ENGINE_TARGET_PATH", "SQLMESH_GATEWAY"):
        assert name in options, name


def test_every_variable_the_engines_read_is_decided() -> None:
    undecided = {
        name: where for name, where in names_in_source().items() if not is_decided(name)
    } | {name: "a click option" for name in names_of_cli_options() if not is_decided(name)}
    assert undecided == {}


def test_dbt_reads_the_engine_names_before_the_old_ones() -> None:
    """Why DBT_ENGINE_* must be refused: dbt 1.11 prefers it to the DBT_* runyard sets."""
    from dbt.cli.main import cli as dbt_cli

    run = dbt_cli.commands["run"]
    by_name = {p.name: p.envvar for p in run.params}
    for option in ("profiles_dir", "project_dir", "target_path", "log_path"):
        envvar = by_name[option]
        assert isinstance(envvar, list)
        assert envvar[0] == "DBT_ENGINE_" + option.upper(), envvar


def test_sqlmesh_takes_configuration_from_variables_in_either_case() -> None:
    """Why SQLMESH_ is refused in any case: SQLMesh lower-cases names before matching."""
    from sqlmesh.core.config.loader import load_config_from_env

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("sqlmesh__gateways__evil__connection__type", "duckdb")
        assert load_config_from_env()["gateways"]["evil"]["connection"]["type"] == "duckdb"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("DBT_ENGINE_PROFILES_DIR", "DBT_ENGINE_"),
        ("DBT_ENGINE_PROJECT_DIR", "DBT_ENGINE_"),
        ("DBT_ENGINE_TARGET_PATH", "DBT_ENGINE_"),
        ("DBT_ENGINE_LOG_PATH", "DBT_ENGINE_"),
        ("DBT_PROFILES_DIR", "command rules"),
        ("DBT_TARGET", "DBT_TARGET is --target"),
        ("DBT_ENV_PRIVATE_X", "hidden"),
        ("SQLMESH_DOTENV_PATH", "SQLMESH_DOTENV_PATH"),
        ("SQLMESH__GATEWAYS__X__CONNECTION__DATABASE", "SQLMESH__"),
        ("sqlmesh__gateways__x__connection__database", "SQLMESH__"),
        ("SQLMESH_HOME", "SQLMESH_HOME"),
        ("GCONV_PATH", "character-set converters"),
        ("HOSTALIASES", "aliases"),
        ("HTTPS_PROXY", "proxy"),
        ("https_proxy", "proxy"),
        ("HTTP_PROXY", "proxy"),
        ("ALL_PROXY", "proxy"),
        ("NO_PROXY", "proxy"),
        ("no_proxy", "proxy"),
        ("SSL_CERT_FILE", "certificates"),
        ("SSL_CERT_DIR", "certificates"),
        ("REQUESTS_CA_BUNDLE", "certificates"),
        ("CURL_CA_BUNDLE", "certificates"),
        ("LD_PRELOAD", "shared libraries"),
        ("DYLD_INSERT_LIBRARIES", "shared libraries"),
        ("PYTHONPATH", "Python starts"),
        ("PYTHONSTARTUP", "Python starts"),
        ("PATH", "programs"),
        ("HOME", "home folder"),
        ("TMPDIR", "temporary"),
        ("SHELL", "shell"),
        ("ENV", "shell"),
        ("BASH_ENV", "bash"),
        ("IFS", "split"),
        ("LOCPATH", "locale"),
        ("NLSPATH", "catalogues"),
        ("RESOLV_HOST_CONF", "host-name"),
        ("GIT_SSH_COMMAND", "git"),
        ("GIT_CONFIG_COUNT", "git"),
        ("DUCKDB_JE_MALLOC_CONF", "DuckDB"),
        ("OPENSSL_CONF", "OpenSSL"),
        ("RUNYARD_DATABASE", "runyard"),
        ("KUBERNETES_SERVICE_HOST", "Kubernetes"),
        ("SSLKEYLOGFILE", "TLS session keys"),
    ],
)
def test_names_that_configure_the_engines_or_the_loader_are_refused(name: str, why: str) -> None:
    problem = name_problem(name)
    assert problem is not None, name
    assert problem.startswith("is refused: it ")
    assert why in problem


@pytest.mark.parametrize(
    "name",
    [
        "DBT_ENV_SECRET_PASSWORD",
        "DBT_ENV_CUSTOM_ENV_TEAM",
        "WAREHOUSE",
        "THREADS",
        "SNOWFLAKE_ACCOUNT",
        "AWS_ACCESS_KEY_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "TZ",
        "LANG",
        "DO_NOT_TRACK",
        "_PRIVATE",
        "A" * 128,
    ],
)
def test_ordinary_names_are_allowed(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["1BAD", "A-B", "A.B", "", "A B", "Ä", "A" * 129, "X=1"])
def test_names_must_match_the_safe_pattern(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None and "letters, digits and underscores" in problem


def test_the_allowed_dbt_prefixes_must_be_written_as_dbt_reads_them() -> None:
    assert name_problem("dbt_env_secret_password") is not None


def test_dbt_refusals_say_what_to_use_instead() -> None:
    problem = name_problem("DBT_PROFILES_DIR")
    assert problem is not None
    assert "DBT_ENV_SECRET_<NAME>" in problem and "in the command instead" in problem


@pytest.mark.parametrize(
    ("name", "value"),
    [("LANG", "../../tmp/x"), ("LC_ALL", "/tmp/locale"), ("LANGUAGE", "a/b"), ("TZ", ":/etc/x")],
)
def test_locale_and_time_zone_values_that_are_paths_are_refused(name: str, value: str) -> None:
    (problem,) = check_environment({name: value})
    assert problem.name == name and "path" in problem.reason


def test_check_environment_lists_every_problem() -> None:
    env = {"OK": "1", "LD_PRELOAD": "/x.so", "BIG": "x" * 40_000, "NUL": "a\x00b", "TZ": "UTC"}
    assert [p.name for p in check_environment(env)] == ["LD_PRELOAD", "BIG", "NUL"]
    too_many = {f"V{i}": "" for i in range(201)}
    assert check_environment(too_many)[0] == EnvProblem("", "at most 200 environment variables")


def test_the_allowed_list_only_names_variables_the_engines_read() -> None:
    """A stale allowance would hide a decision nobody took; every entry is read somewhere."""
    read = set(names_in_source()) | names_of_cli_options()
    assert sorted(set(CONSULTED_AND_ALLOWED) - read) == []


def test_permitted_keeps_only_what_todays_rules_accept() -> None:
    env = {"WAREHOUSE": "prod", "DBT_ENGINE_PROFILES_DIR": "/", "TZ": ":/etc/x"}
    assert permitted(env) == {"WAREHOUSE": "prod"}


def test_a_run_recorded_before_the_rules_gets_no_refused_variable(tmp_path: Path) -> None:
    """A snapshot saved by an older runyard may carry DBT_ENGINE_PROFILES_DIR; neither the
    local process nor the rendered pod receives it."""
    old = {"DBT_ENGINE_PROFILES_DIR": "/", "SQLMESH_DOTENV_PATH": "/x", "WAREHOUSE": "prod"}
    job = JobConfig(name="nightly", command="dbt build", environment={"HTTPS_PROXY": "x"})
    record = run_record(
        org_id="org_1", snapshot_=snapshot(project_environment=old, path=".", job=job)
    )
    env = build_env(record, tmp_path, parent={"PATH": "/usr/bin"})
    assert env["WAREHOUSE"] == "prod"
    assert not {"DBT_ENGINE_PROFILES_DIR", "SQLMESH_DOTENV_PATH", "HTTPS_PROXY"} & set(env)
