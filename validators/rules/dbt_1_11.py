"""Rules for dbt-core 1.11 (``dbt.cli.main.cli``).

In dbt 1.11 every global option is accepted both before the subcommand (``dbt --debug run``) and
after it (``dbt run --debug``), so ``GENERAL`` appears in the global flags and in every
subcommand. Options that exist in the CLI but are not listed here are refused as unknown; the
deprecated hidden ones (``--deprecated-*``), ``--version`` and ``--sqlparse`` are left out on
purpose (``LEFT_OUT``). What each accepted option reads, writes or executes is audited in
``dbt_1_11_audit``.
"""

from __future__ import annotations

from validators.rules.dbt_1_11_audit import AUDIT, LEFT_OUT
from validators.rules.model import (
    FlagSpec,
    PositionalSpec,
    RuleSet,
    SubcommandSpec,
    ValueKind,
    multi,
    option,
    switch,
    toggle,
)

PATH = ValueKind.PATH
NAME = ValueKind.NAME
INTEGER = ValueKind.INTEGER

# Reasons for flags refused by default. They change where dbt reads code or credentials from,
# or where it writes what runyard collects afterwards.
NO_PROFILES_DIR = (
    "changes where dbt reads connection profiles (credentials) from; the project's deployment "
    "decides that, not the job"
)
NO_PROJECT_DIR = "runs a different project than the one this job belongs to"
NO_TARGET_PATH = "moves target/, where runyard reads run_results.json to report failed models"
NO_LOG_PATH = "moves dbt's log files out of the logs/ directory runyard collects them from"
NO_PARTIAL_PARSE_FILE = "reads a parse cache from a file outside the project's target/"
NO_USAGE_STATS = "sends usage data to dbt Labs; runyard turns it off"
NO_ARTIFACT_UPLOAD = "uploads the run's artifacts to an external service"
NO_MACRO_DEBUGGING = "opens an interactive debugger, which would hang an unattended run"
NO_WRITE_JSON = "stops dbt writing run_results.json, which runyard reads to report failed models"
NO_INLINE = (
    "runs arbitrary SQL typed into the job with the project's credentials; put the query in a "
    "model or an analysis instead"
)
NO_ADD_PACKAGE = "edits packages.yml; change the project's packages in the project itself"

LOG_FORMATS = ("text", "debug", "json", "default")
LOG_LEVELS = ("debug", "info", "warn", "error", "none")
INDIRECT_SELECTION = ("eager", "cautious", "buildable", "empty")
RESOURCE_TYPES = (
    "metric",
    "semantic_model",
    "saved_query",
    "source",
    "analysis",
    "function",
    "model",
    "test",
    "unit_test",
    "exposure",
    "snapshot",
    "seed",
    "default",
    "all",
)
# ``all`` selects everything and has no meaning as an exclusion, so dbt does not offer it there.
EXCLUDABLE_RESOURCE_TYPES = tuple(t for t in RESOURCE_TYPES if t != "all")

GENERAL: tuple[FlagSpec, ...] = (
    *toggle("--cache-selected-only"),
    *toggle("--debug", "-d"),
    *toggle("--defer"),
    option("--defer-state", value=PATH),
    *toggle("--fail-fast", "-x"),
    *toggle("--favor-state"),
    option("--indirect-selection", choices=INDIRECT_SELECTION),
    *toggle("--log-cache-events"),
    option("--log-file-max-bytes", value=INTEGER),
    option("--log-format", choices=LOG_FORMATS),
    option("--log-format-file", choices=LOG_FORMATS),
    option("--log-level", choices=LOG_LEVELS),
    option("--log-level-file", choices=LOG_LEVELS),
    option("--log-path", value=PATH, denied=NO_LOG_PATH),
    switch("--macro-debugging", denied=NO_MACRO_DEBUGGING),
    switch("--no-macro-debugging"),
    *toggle("--partial-parse"),
    option("--partial-parse-file-path", value=PATH, denied=NO_PARTIAL_PARSE_FILE),
    *toggle("--partial-parse-file-diff"),
    *toggle("--populate-cache"),
    *toggle("--print"),
    option("--printer-width", value=INTEGER),
    option("--profile", value=NAME),
    *toggle("--quiet", "-q"),
    option("--record-timing-info", "-r", value=PATH),
    switch("--send-anonymous-usage-stats", denied=NO_USAGE_STATS),
    switch("--no-send-anonymous-usage-stats"),
    *toggle("--single-threaded"),
    *toggle("--show-all-deprecations"),
    option("--state", value=PATH),
    *toggle("--static-parser"),
    option("--target", "-t", value=NAME),
    *toggle("--use-colors"),
    *toggle("--use-colors-file"),
    *toggle("--use-experimental-parser"),
    *toggle("--version-check"),
    switch("--warn-error"),
    option("--warn-error-options"),
    switch("--write-json"),
    switch("--no-write-json", denied=NO_WRITE_JSON),
    *toggle("--use-fast-test-edges"),
    switch("--upload-to-artifacts-ingest-api", denied=NO_ARTIFACT_UPLOAD),
    switch("--no-upload-to-artifacts-ingest-api"),
)

PROFILES_DIR = option("--profiles-dir", value=PATH, denied=NO_PROFILES_DIR)
PROJECT_DIR = option("--project-dir", value=PATH, denied=NO_PROJECT_DIR)
TARGET_PATH = option("--target-path", value=PATH, denied=NO_TARGET_PATH)
THREADS = option("--threads", value=INTEGER)
VARS = option("--vars", value=ValueKind.VARS)
PROJECT: tuple[FlagSpec, ...] = (PROFILES_DIR, PROJECT_DIR, TARGET_PATH, THREADS, VARS)

SELECT = multi("--select", "-s", "-m", "--models", "--model")
EXCLUDE = multi("--exclude")
SELECTOR = option("--selector", value=NAME)
SELECTION: tuple[FlagSpec, ...] = (SELECT, EXCLUDE, SELECTOR)
RESOURCE_TYPE_FILTERS: tuple[FlagSpec, ...] = (
    multi("--resource-types", "--resource-type", choices=RESOURCE_TYPES),
    multi("--exclude-resource-types", "--exclude-resource-type", choices=EXCLUDABLE_RESOURCE_TYPES),
)
FULL_REFRESH = switch("--full-refresh", "-f")
EMPTY = toggle("--empty")
EVENT_TIME = (option("--event-time-start"), option("--event-time-end"))
SAMPLE = option("--sample")
SHOW = switch("--show")
STORE_FAILURES = switch("--store-failures")
INLINE = option("--inline", denied=NO_INLINE)


def _flags(*groups: FlagSpec | tuple[FlagSpec, ...]) -> tuple[FlagSpec, ...]:
    flags: list[FlagSpec] = list(GENERAL)
    for group in groups:
        flags.extend(group if isinstance(group, tuple) else (group,))
    return tuple(flags)


SUBCOMMANDS: tuple[SubcommandSpec, ...] = (
    SubcommandSpec(
        "build",
        _flags(
            PROJECT,
            SELECTION,
            RESOURCE_TYPE_FILTERS,
            FULL_REFRESH,
            EMPTY,
            EVENT_TIME,
            SAMPLE,
            SHOW,
            STORE_FAILURES,
            toggle("--export-saved-queries"),
            toggle("--include-saved-query"),
        ),
        summary="runs models, tests, seeds and snapshots in DAG order",
    ),
    SubcommandSpec(
        "run",
        _flags(PROJECT, SELECTION, FULL_REFRESH, EMPTY, EVENT_TIME, SAMPLE),
        summary="runs models",
    ),
    SubcommandSpec(
        "test",
        _flags(PROJECT, SELECTION, RESOURCE_TYPE_FILTERS, STORE_FAILURES),
        summary="runs data and unit tests",
    ),
    SubcommandSpec(
        "seed", _flags(PROJECT, SELECTION, FULL_REFRESH, SHOW), summary="loads CSV seeds"
    ),
    SubcommandSpec("snapshot", _flags(PROJECT, SELECTION, EMPTY), summary="runs snapshots"),
    SubcommandSpec(
        "compile",
        _flags(
            PROJECT,
            SELECTION,
            FULL_REFRESH,
            EMPTY,
            INLINE,
            option("--output", choices=("json", "text")),
            toggle("--introspect"),
            toggle("--inject-ephemeral-ctes"),
        ),
        summary="compiles SQL without running it",
    ),
    SubcommandSpec(
        "source freshness",
        _flags(PROJECT, SELECTION, option("--output", "-o", value=PATH)),
        summary="checks how fresh the sources are",
    ),
    SubcommandSpec(
        "docs generate",
        _flags(
            PROJECT,
            SELECTION,
            toggle("--compile"),
            switch("--empty-catalog"),
            switch("--static"),
        ),
        summary="writes the documentation site's files into target/",
    ),
    SubcommandSpec(
        "ls",
        _flags(
            PROFILES_DIR,
            PROJECT_DIR,
            TARGET_PATH,
            VARS,
            # Unlike the other commands, ls keeps --models apart from --select.
            multi("--select", "-s"),
            multi("--models", "-m", "--model"),
            EXCLUDE,
            SELECTOR,
            RESOURCE_TYPE_FILTERS,
            option("--output", choices=("json", "name", "path", "selector")),
            multi("--output-keys"),
        ),
        aliases=("list",),
        summary="lists resources",
    ),
    SubcommandSpec(
        "deps",
        _flags(
            PROFILES_DIR,
            PROJECT_DIR,
            VARS,
            switch("--lock"),
            switch("--upgrade"),
            option("--add-package", denied=NO_ADD_PACKAGE),
            option("--source", choices=("hub", "git", "local"), denied=NO_ADD_PACKAGE),
        ),
        enabled=False,
        off_reason=(
            "downloads packages from the internet while the job runs, so what runs can change "
            "without the project changing; install packages when building the project's image"
        ),
        summary="installs the packages in packages.yml",
    ),
    SubcommandSpec(
        "run-operation",
        _flags(PROJECT, option("--args", value=ValueKind.VARS)),
        positionals=(PositionalSpec("macro", required=True, value=ValueKind.MACRO),),
        summary="runs one macro; only macros the operator lists in the policy",
    ),
    SubcommandSpec(
        "retry",
        _flags(PROJECT, FULL_REFRESH),
        summary="re-runs the nodes that failed in the previous run",
    ),
    SubcommandSpec("parse", _flags(PROJECT), summary="parses the project and writes the manifest"),
    SubcommandSpec(
        "debug",
        _flags(PROFILES_DIR, PROJECT_DIR, VARS, switch("--connection"), switch("--config-dir")),
        summary="checks the project, the profile and the connection (no passwords are printed)",
    ),
    SubcommandSpec(
        "show",
        _flags(
            PROJECT,
            SELECTION,
            FULL_REFRESH,
            INLINE,
            option("--inline-direct", denied=NO_INLINE),
            option("--output", choices=("json", "text")),
            option("--limit", value=INTEGER),
            toggle("--introspect"),
        ),
        summary="previews the rows of a model in the log",
    ),
    SubcommandSpec(
        "clone",
        _flags(PROJECT, SELECTION, RESOURCE_TYPE_FILTERS, FULL_REFRESH),
        summary="clones nodes from the state given with --state",
    ),
)

UNSUPPORTED = {
    "init": "creates a new project interactively",
    "docs serve": "starts a web server that never exits",
    "clean": "deletes directories of the project (target/, dbt_packages/)",
    "source snapshot-freshness": "is the old name of source freshness; use dbt source freshness",
}

EXAMPLES = (
    "dbt build",
    "dbt build --select tag:nightly --exclude tag:slow",
    "dbt build --target prod --fail-fast --threads 8",
    "dbt run --select 'tag:nightly' --full-refresh",
    "dbt run --select stg_orders+ orders --threads=4",
    """dbt run --vars '{"start_date": "2024-01-01", "dry": false}'""",
    "dbt --log-format json run -s marts.finance",
    'dbt test --select "source:raw" --store-failures',
    "dbt test --resource-type unit_test",
    "dbt seed --full-refresh",
    "dbt snapshot",
    "dbt compile --select path:models/staging",
    "dbt source freshness --output target/sources.json",
    "dbt docs generate --no-compile",
    "dbt ls --resource-type model --output json",
    "dbt list --select state:modified+ --state prod-artifacts",
    "dbt retry",
    "dbt parse",
    "dbt debug --connection",
    "dbt show --select orders --limit 10",
    "dbt clone --state prod-artifacts --select state:modified",
)

DBT_1_11 = RuleSet(
    kind="dbt",
    family="dbt 1.11",
    version_prefix="1.11.",
    program="dbt",
    global_flags=GENERAL,
    subcommands=SUBCOMMANDS,
    unsupported=UNSUPPORTED,
    examples=EXAMPLES,
    general_hint="dbt's general options such as --target, --debug, --fail-fast, --log-format",
    audit=AUDIT,
    # runyard reads run_results.json to report failed models; nothing but dbt may write it.
    protected_outputs=("target/run_results.json",),
    left_out=LEFT_OUT,
)
