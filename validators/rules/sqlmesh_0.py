"""Rules for SQLMesh 0.x (``sqlmesh.cli.main.cli``), written against 0.236.

SQLMesh's global options (``--gateway``, ``--paths`` ...) belong to the ``sqlmesh`` group only:
they must come before the subcommand (``sqlmesh --gateway prod plan``). SQLMesh's multiple-value
options take one value each time they are given (``--select-model a --select-model b``).
What each accepted option reads, writes or executes is audited in ``sqlmesh_0_audit``.
"""

from __future__ import annotations

from validators.rules.model import (
    FlagSpec,
    PositionalSpec,
    RuleSet,
    SubcommandSpec,
    ValueKind,
    counter,
    option,
    switch,
    toggle,
)
from validators.rules.sqlmesh_0_audit import AUDIT, LEFT_OUT

PATH = ValueKind.PATH
NAME = ValueKind.NAME
INTEGER = ValueKind.INTEGER

GLOBAL: tuple[FlagSpec, ...] = (
    option(
        "--paths",
        "-p",
        value=PATH,
        repeatable=True,
        denied="loads a different project than the one this job belongs to",
    ),
    # --config and --gateway only choose among configurations the project itself defines, like
    # dbt's --target; operators who want one fixed connection can deny them in the policy.
    option("--config", value=NAME),
    option("--gateway", value=NAME),
    switch("--ignore-warnings"),
    switch("--debug"),
    switch("--log-to-stdout"),
    option(
        "--log-file-dir",
        value=PATH,
        denied="moves SQLMesh's log files out of the project's logs/ directory",
    ),
    option(
        "--dotenv",
        value=PATH,
        denied="loads environment variables, usually credentials, from another file",
    ),
)

START_END: tuple[FlagSpec, ...] = (option("--start", "-s"), option("--end", "-e"))
EXECUTION_TIME = option("--execution-time")
SELECT_MODEL = option("--select-model", repeatable=True)
VERBOSE = counter("--verbose", "-v")
ENVIRONMENT = PositionalSpec("environment", value=NAME)

UNATTENDED_PLAN = (
    "sqlmesh plan stops to ask for confirmation, and a scheduled run has nobody to answer"
)

SUBCOMMANDS: tuple[SubcommandSpec, ...] = (
    SubcommandSpec(
        "plan",
        (
            *START_END,
            EXECUTION_TIME,
            option("--create-from", value=NAME),
            switch("--skip-tests"),
            switch("--test-changed-only"),
            switch("--skip-linter"),
            option("--restate-model", "-r", repeatable=True),
            switch("--no-gaps"),
            switch("--skip-backfill", "--dry-run"),
            switch("--empty-backfill"),
            switch("--forward-only"),
            option("--allow-destructive-model", repeatable=True),
            option("--allow-additive-model", repeatable=True),
            option("--effective-from"),
            switch("--no-prompts"),
            switch("--auto-apply"),
            switch("--no-auto-categorization"),
            switch("--include-unmodified"),
            SELECT_MODEL,
            option("--backfill-model", repeatable=True),
            switch("--no-diff"),
            switch("--run"),
            switch("--enable-preview"),
            switch("--diff-rendered"),
            switch("--explain"),
            switch("--ignore-cron"),
            option("--min-intervals", value=INTEGER),
            VERBOSE,
        ),
        positionals=(ENVIRONMENT,),
        required_flags=("--auto-apply", "--no-prompts"),
        required_reason=UNATTENDED_PLAN,
        summary="applies model changes to an environment and backfills",
    ),
    SubcommandSpec(
        "run",
        (
            *START_END,
            switch("--skip-janitor"),
            switch("--ignore-cron"),
            SELECT_MODEL,
            option("--exit-on-env-update", value=INTEGER),
            switch("--no-auto-upstream"),
        ),
        positionals=(ENVIRONMENT,),
        summary="evaluates the intervals that are due, by each model's cron",
    ),
    SubcommandSpec(
        "audit",
        (option("--model", repeatable=True), *START_END, EXECUTION_TIME),
        summary="runs audits",
    ),
    SubcommandSpec(
        "test",
        (
            option("-k", repeatable=True),
            VERBOSE,
            switch("--preserve-fixtures"),
            SELECT_MODEL,
            switch("--local"),
        ),
        positionals=(PositionalSpec("tests", many=True, value=PATH),),
        summary="runs unit tests",
    ),
    SubcommandSpec(
        "invalidate",
        (switch("--sync", "-s"),),
        positionals=(PositionalSpec("environment", required=True, value=NAME),),
        enabled=False,
        off_reason=(
            "marks an environment for deletion, so the janitor drops its views and tables; "
            "that is a one-off decision, not a scheduled job"
        ),
        summary="marks an environment for deletion",
    ),
    SubcommandSpec(
        "janitor",
        (
            switch("--ignore-ttl"),
            switch("--force-delete"),
            option("--environment", "-e", value=NAME),
        ),
        summary="cleans up expired environments and snapshots",
    ),
    SubcommandSpec(
        "table_diff",
        (
            option("--on", "-o", repeatable=True),
            option("--skip-columns", "-s", repeatable=True),
            option(
                "--where",
                denied=(
                    "carries SQL that the engine runs with the project's credentials (and DuckDB "
                    "can read any file with it); put the filter in a model or an audit"
                ),
            ),
            option("--limit", value=INTEGER),
            switch("--show-sample"),
            option("--decimals", "-d", value=INTEGER),
            switch("--skip-grain-check"),
            switch("--warn-grain-check"),
            option("--temp-schema", value=NAME),
            option("--select-model", "-m", repeatable=True),
            switch("--schema-diff-ignore-case"),
        ),
        positionals=(PositionalSpec("source_to_target", required=True), PositionalSpec("model")),
        summary="compares a model's data between two environments",
    ),
    SubcommandSpec(
        "migrate",
        (),
        enabled=False,
        off_reason=(
            "upgrades the shared state database to this SQLMesh version for every user of the "
            "project; run it deliberately, once, when upgrading"
        ),
        summary="migrates the state database to the installed SQLMesh version",
    ),
    SubcommandSpec(
        "create_external_models",
        (switch("--strict"),),
        enabled=False,
        off_reason=(
            "rewrites external_models.yaml in the project: in a container the change is lost, "
            "in a local checkout it edits the project"
        ),
        summary="writes the schemas of external models into the project",
    ),
    SubcommandSpec(
        "info",
        (switch("--skip-connection"), VERBOSE),
        summary="prints the project's models, macros and connection status",
    ),
    SubcommandSpec(
        "format",
        (
            option("--transpile", "-t", value=NAME),
            switch("--check"),
            *toggle("--rewrite-casts"),
            switch("--append-newline"),
            option("--max-text-width", value=INTEGER),
            switch("--leading-comma"),
            option("--normalize-functions", value=NAME),
            option("--indent", value=INTEGER),
            option("--pad", value=INTEGER),
            switch("--normalize"),
        ),
        positionals=(PositionalSpec("paths", many=True, value=PATH),),
        required_flags=("--check",),
        required_reason="sqlmesh format without --check rewrites the project's files",
        summary="checks that the SQL files are formatted",
    ),
    SubcommandSpec(
        "lint",
        (
            option("--models", "--model", repeatable=True),
            switch("--use-project-index"),
            switch("--local"),
        ),
        summary="runs the project's linter rules",
    ),
    SubcommandSpec(
        "dag",
        (SELECT_MODEL,),
        positionals=(PositionalSpec("file", required=True, value=PATH),),
        summary="writes the model graph as an HTML file",
    ),
    SubcommandSpec(
        "check_intervals",
        (switch("--no-signals"), SELECT_MODEL, *START_END),
        positionals=(ENVIRONMENT,),
        summary="shows which intervals are missing or blocked by signals",
    ),
)

UNSUPPORTED = {
    "init": "creates a new project",
    "ui": "starts a web server that never exits",
    "destroy": "drops every table and view the project owns",
    "rollback": "rolls the state database back to before the last migration",
    "clean": "deletes the project's cache",
    "fetchdf": "runs arbitrary SQL typed into the job",
    "evaluate": "prints a model's rows into the log; use it on a workstation",
    "render": "only prints SQL; use it on a workstation",
    "diff": "only prints differences; use it on a workstation",
    "environments": "only prints the environments; use it on a workstation",
    "table_name": "only prints a table name; use it on a workstation",
    "create_test": "writes test files into the project",
    "rewrite": "only prints rewritten SQL; use it on a workstation",
    "state export": "writes the state database to a file",
    "state import": "overwrites the state database from a file",
    "dlt_refresh": "regenerates models from a dlt pipeline inside the project",
}

EXAMPLES = (
    "sqlmesh plan --auto-apply --no-prompts",
    "sqlmesh plan dev --auto-apply --no-prompts --include-unmodified",
    "sqlmesh --gateway prod plan --no-prompts --auto-apply --restate-model sushi.orders",
    "sqlmesh run",
    "sqlmesh run --select-model '*'",
    "sqlmesh run prod --ignore-cron",
    "sqlmesh audit --model sushi.orders --start 2024-01-01 --end 2024-01-31",
    "sqlmesh test",
    "sqlmesh test tests/test_orders.yaml -v",
    "sqlmesh janitor",
    "sqlmesh table_diff prod:dev sushi.orders --on id --show-sample",
    "sqlmesh info --skip-connection",
    "sqlmesh format --check",
    "sqlmesh lint",
    "sqlmesh dag target/dag.html --select-model 'sushi.*'",
    "sqlmesh check_intervals prod --no-signals",
    "sqlmesh run --start '2 days ago' --end yesterday",
)

SQLMESH_0 = RuleSet(
    kind="sqlmesh",
    family="sqlmesh 0.x",
    version_prefix="0.",
    program="sqlmesh",
    global_flags=GLOBAL,
    subcommands=SUBCOMMANDS,
    unsupported=UNSUPPORTED,
    examples=EXAMPLES,
    audit=AUDIT,
    left_out=LEFT_OUT,
)
