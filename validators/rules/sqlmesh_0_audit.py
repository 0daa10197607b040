"""The audit of SQLMesh 0.x's accepted options: what each one reads, writes or executes.

Same layout as ``dbt_1_11_audit``: one entry per canonical flag, positional arguments by their
name in capitals, and ``subcommand NAME`` where one subcommand differs from the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from validators.rules.model import Effect, OptionAudit

NONE, SELECTS, CONFIG = Effect.NONE, Effect.SELECTS, Effect.CONFIG
READS, WRITES, SQL = Effect.READS_PATH, Effect.WRITES_PATH, Effect.SQL

_MODEL_SELECTION = (
    "which models; a git:BRANCH selector runs git diff in the project to find changed models"
)

_FORMATTING = OptionAudit(NONE, "a formatting preference")

_GLOBAL: dict[str, OptionAudit] = {
    "--paths": OptionAudit(READS, "loads the project (config, models, .env) from this folder"),
    "--config": OptionAudit(CONFIG, "chooses a configuration object the project defines"),
    "--gateway": OptionAudit(CONFIG, "chooses a gateway (connection) the project defines"),
    "--ignore-warnings": OptionAudit(NONE, "hides warnings"),
    "--debug": OptionAudit(NONE, "prints debug logging and tracebacks"),
    "--log-to-stdout": OptionAudit(NONE, "prints the log"),
    "--log-file-dir": OptionAudit(WRITES, "writes the log files into this folder"),
    "--dotenv": OptionAudit(READS, "loads environment variables from this file"),
}

_SUBCOMMANDS: dict[str, OptionAudit] = {
    "--start": OptionAudit(NONE, "start of the time range"),
    "--end": OptionAudit(NONE, "end of the time range"),
    "--execution-time": OptionAudit(NONE, "the time the run pretends to happen at"),
    "--create-from": OptionAudit(CONFIG, "the environment a new environment starts from"),
    "--skip-tests": OptionAudit(NONE, "skips unit tests"),
    "--test-changed-only": OptionAudit(NONE, "runs the unit tests of changed models only"),
    "--skip-linter": OptionAudit(NONE, "skips the linter"),
    "--restate-model": OptionAudit(SELECTS, "models whose data is rebuilt"),
    "--no-gaps": OptionAudit(NONE, "refuses plans that leave gaps in the data"),
    "--skip-backfill": OptionAudit(NONE, "applies without backfilling"),
    "--empty-backfill": OptionAudit(NONE, "marks intervals as done without computing them"),
    "--forward-only": OptionAudit(NONE, "applies changes to new data only"),
    "--allow-destructive-model": OptionAudit(SELECTS, "models allowed destructive changes"),
    "--allow-additive-model": OptionAudit(SELECTS, "models allowed additive changes"),
    "--effective-from": OptionAudit(NONE, "from when forward-only changes apply"),
    "--no-prompts": OptionAudit(NONE, "never asks questions"),
    "--auto-apply": OptionAudit(NONE, "applies the plan without confirmation"),
    "--no-auto-categorization": OptionAudit(NONE, "leaves changes uncategorised"),
    "--include-unmodified": OptionAudit(NONE, "includes unmodified models in the environment"),
    "--select-model": OptionAudit(SELECTS, _MODEL_SELECTION),
    "--backfill-model": OptionAudit(SELECTS, "models to backfill"),
    "--no-diff": OptionAudit(NONE, "does not print the diff"),
    "--run": OptionAudit(NONE, "runs due intervals after applying"),
    "--enable-preview": OptionAudit(NONE, "previews forward-only changes in development"),
    "--diff-rendered": OptionAudit(NONE, "prints the diff of rendered SQL"),
    "--explain": OptionAudit(NONE, "explains the plan instead of applying it"),
    "--ignore-cron": OptionAudit(NONE, "runs intervals whatever the models' cron"),
    "--min-intervals": OptionAudit(NONE, "a minimum number of intervals to backfill"),
    "--verbose": OptionAudit(NONE, "prints more"),
    "--skip-janitor": OptionAudit(NONE, "skips the clean-up after the run"),
    "--exit-on-env-update": OptionAudit(NONE, "exit code when the environment changes meanwhile"),
    "--no-auto-upstream": OptionAudit(NONE, "does not add upstream models to the selection"),
    "--model": OptionAudit(SELECTS, "models whose audits run"),
    "-k": OptionAudit(SELECTS, "which unit tests run, by name pattern"),
    "--preserve-fixtures": OptionAudit(NONE, "keeps the test fixture tables"),
    "--local": OptionAudit(NONE, "uses the project's files only, without loading state"),
    "--sync": OptionAudit(NONE, "deletes the environment's objects at once"),
    "--ignore-ttl": OptionAudit(NONE, "cleans up regardless of the time-to-live"),
    "--force-delete": OptionAudit(NONE, "deletes even when cleaning up fails midway"),
    "--environment": OptionAudit(CONFIG, "the environment to clean up"),
    "--on": OptionAudit(NONE, "names of the columns to join on"),
    "--skip-columns": OptionAudit(NONE, "names of the columns to leave out"),
    "--where": OptionAudit(SQL, "a SQL condition the engine runs, with the project's credentials"),
    "--limit": OptionAudit(NONE, "how many sample rows"),
    "--show-sample": OptionAudit(NONE, "prints sample rows that differ"),
    "--decimals": OptionAudit(NONE, "precision of float comparisons"),
    "--skip-grain-check": OptionAudit(NONE, "skips the grain check"),
    "--warn-grain-check": OptionAudit(NONE, "warns instead of failing the grain check"),
    "--temp-schema": OptionAudit(CONFIG, "the schema for temporary tables"),
    "--schema-diff-ignore-case": OptionAudit(NONE, "ignores case when comparing column names"),
    "--skip-connection": OptionAudit(NONE, "does not test the connection"),
    "--transpile": OptionAudit(NONE, "the SQL dialect to check against"),
    "--check": OptionAudit(NONE, "only checks, writes nothing"),
    **dict.fromkeys(
        (
            "--rewrite-casts",
            "--no-rewrite-casts",
            "--append-newline",
            "--max-text-width",
            "--leading-comma",
            "--normalize-functions",
            "--indent",
            "--pad",
            "--normalize",
        ),
        _FORMATTING,
    ),
    "--models": OptionAudit(SELECTS, "models to lint"),
    "--use-project-index": OptionAudit(NONE, "lints with the project's index of models"),
    "--strict": OptionAudit(NONE, "fails when a model's schema cannot be found"),
    "--no-signals": OptionAudit(NONE, "ignores the models' signals"),
    # Positional arguments.
    "ENVIRONMENT": OptionAudit(CONFIG, "the environment the command acts on"),
    "TESTS": OptionAudit(READS, "reads unit-test files at these paths"),
    "SOURCE_TO_TARGET": OptionAudit(CONFIG, "the two environments to compare"),
    "MODEL": OptionAudit(SELECTS, "the model to compare"),
    "PATHS": OptionAudit(READS, "reads SQL files at these paths"),
    "FILE": OptionAudit(WRITES, "writes the model graph (HTML) to this file"),
}

AUDIT: Mapping[str, OptionAudit] = MappingProxyType(_GLOBAL | _SUBCOMMANDS)

LEFT_OUT: Mapping[str, str] = MappingProxyType({"--version": "prints the version and exits"})
