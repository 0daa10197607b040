"""The audit of dbt 1.11's accepted options: what each one reads, writes or executes.

One entry per canonical flag (and per positional argument, in capitals). The validator enforces
what follows from the effect: paths stay inside the project, written paths stay under
``target/`` or ``logs/``, options carrying SQL, Jinja or network access are off unless the
operator's policy allows them. ``tests/unit/validators/test_option_audit.py`` checks that every
accepted option is here and that the installed CLI agrees (a ``click.Path`` must be audited as a
path); ``docs/commands.md`` shows the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from validators.rules.model import Effect, OptionAudit

NONE, SELECTS, CONFIG, VALUES = Effect.NONE, Effect.SELECTS, Effect.CONFIG, Effect.VALUES
READS, WRITES = Effect.READS_PATH, Effect.WRITES_PATH
SQL, JINJA, EXECUTES, NETWORK = Effect.SQL, Effect.JINJA, Effect.EXECUTES, Effect.NETWORK


def _both(name: str, effect: Effect, touches: str) -> dict[str, OptionAudit]:
    """``--x`` and ``--no-x`` share one audit line."""
    line = OptionAudit(effect, touches)
    return {name: line, "--no-" + name.removeprefix("--"): line}


_GENERAL: dict[str, OptionAudit] = {
    **_both("--cache-selected-only", NONE, "caches the schemas of the selected resources only"),
    **_both("--debug", NONE, "prints debug logging"),
    **_both("--defer", NONE, "resolves unselected references from the --state manifest"),
    "--defer-state": OptionAudit(READS, "reads manifest.json from this folder to defer to"),
    **_both("--fail-fast", NONE, "stops at the first failure"),
    **_both("--favor-state", NONE, "prefers the --state manifest when deferring"),
    "--indirect-selection": OptionAudit(SELECTS, "which tests of selected models also run"),
    **_both("--log-cache-events", NONE, "logs relation-cache events"),
    "--log-file-max-bytes": OptionAudit(NONE, "size at which logs/dbt.log rotates"),
    "--log-format": OptionAudit(NONE, "format of the printed log"),
    "--log-format-file": OptionAudit(NONE, "format of logs/dbt.log"),
    "--log-level": OptionAudit(NONE, "detail of the printed log"),
    "--log-level-file": OptionAudit(NONE, "detail of logs/dbt.log"),
    "--log-path": OptionAudit(WRITES, "writes dbt.log into this folder instead of logs/"),
    "--macro-debugging": OptionAudit(NONE, "opens an interactive debugger in macros"),
    "--no-macro-debugging": OptionAudit(NONE, "keeps the macro debugger closed"),
    **_both("--partial-parse", NONE, "reuses target/partial_parse.msgpack"),
    "--partial-parse-file-path": OptionAudit(READS, "reads the partial-parse cache from this file"),
    **_both("--partial-parse-file-diff", NONE, "compares files to find what to re-parse"),
    **_both("--populate-cache", NONE, "fills the relation cache at the start"),
    **_both("--print", NONE, "whether print() in macros reaches the log"),
    "--printer-width": OptionAudit(NONE, "width of the printed log"),
    "--profile": OptionAudit(CONFIG, "chooses a profile defined in profiles.yml"),
    **_both("--quiet", NONE, "prints errors only"),
    "--record-timing-info": OptionAudit(
        WRITES, "writes a cProfile dump of the run to this file, even when the command fails"
    ),
    "--send-anonymous-usage-stats": OptionAudit(NETWORK, "sends usage data to dbt Labs"),
    "--no-send-anonymous-usage-stats": OptionAudit(NONE, "keeps usage data at home"),
    **_both("--single-threaded", NONE, "runs in one thread"),
    **_both("--show-all-deprecations", NONE, "prints every deprecation warning"),
    "--state": OptionAudit(
        READS, "reads manifest.json (and run_results.json, sources.json) from this folder"
    ),
    **_both("--static-parser", NONE, "parses simple models without Jinja"),
    "--target": OptionAudit(CONFIG, "chooses an output of the profile (a connection)"),
    **_both("--use-colors", NONE, "colours the printed log"),
    **_both("--use-colors-file", NONE, "colours logs/dbt.log"),
    **_both("--use-experimental-parser", NONE, "parses models with the experimental parser"),
    **_both("--version-check", NONE, "compares dbt's version with require-dbt-version"),
    "--warn-error": OptionAudit(NONE, "turns warnings into errors"),
    "--warn-error-options": OptionAudit(NONE, "YAML naming the warnings that become errors"),
    "--write-json": OptionAudit(NONE, "writes run_results.json and manifest.json into target/"),
    "--no-write-json": OptionAudit(NONE, "stops dbt writing run_results.json"),
    **_both("--use-fast-test-edges", NONE, "builds the test graph a faster way"),
    "--upload-to-artifacts-ingest-api": OptionAudit(
        NETWORK, "uploads the run's artifacts to dbt Cloud"
    ),
    "--no-upload-to-artifacts-ingest-api": OptionAudit(NONE, "keeps the artifacts local"),
}

_SUBCOMMANDS: dict[str, OptionAudit] = {
    "--profiles-dir": OptionAudit(READS, "reads profiles.yml (credentials) from this folder"),
    "--project-dir": OptionAudit(
        READS, "reads the project from this folder (and writes its target/, logs/)"
    ),
    "--target-path": OptionAudit(WRITES, "writes compiled SQL and artifacts into this folder"),
    "--threads": OptionAudit(NONE, "how many models run at once"),
    "--vars": OptionAudit(VALUES, "values read by var() in the project; dbt renders Jinja in them"),
    "--select": OptionAudit(SELECTS, "which resources run (state: and result: read --state)"),
    "--models": OptionAudit(SELECTS, "which models ls lists"),
    "--exclude": OptionAudit(SELECTS, "which resources are left out"),
    "--selector": OptionAudit(SELECTS, "a selector defined in the project's selectors.yml"),
    "--resource-types": OptionAudit(SELECTS, "which kinds of resources run"),
    "--exclude-resource-types": OptionAudit(SELECTS, "which kinds of resources are left out"),
    "--full-refresh": OptionAudit(NONE, "rebuilds incremental models and seeds from scratch"),
    **_both("--empty", NONE, "runs models with empty inputs (schema checks)"),
    "--event-time-start": OptionAudit(NONE, "start of the microbatch window"),
    "--event-time-end": OptionAudit(NONE, "end of the microbatch window"),
    "--sample": OptionAudit(NONE, "runs on a time sample of the inputs"),
    "--show": OptionAudit(NONE, "prints a preview of the rows"),
    "--store-failures": OptionAudit(NONE, "stores failing test rows in the warehouse"),
    **_both("--export-saved-queries", NONE, "exports saved queries in the warehouse"),
    **_both("--include-saved-query", NONE, "includes saved queries in the selection"),
    "--inline": OptionAudit(JINJA, "SQL with Jinja typed into the job, compiled and run"),
    "--inline-direct": OptionAudit(SQL, "SQL typed into the job, run without compiling"),
    "--output": OptionAudit(NONE, "format of what is printed (json, text, name ...)"),
    "source freshness --output": OptionAudit(
        WRITES, "writes the freshness results (sources.json) to this file"
    ),
    **_both("--introspect", NONE, "queries the warehouse to compile introspective macros"),
    **_both("--inject-ephemeral-ctes", NONE, "inlines ephemeral models as CTEs"),
    **_both("--compile", NONE, "compiles the project before writing the catalog"),
    "--empty-catalog": OptionAudit(NONE, "skips querying the warehouse for the catalog"),
    "--static": OptionAudit(NONE, "also writes a one-file site, target/static_index.html"),
    "--output-keys": OptionAudit(NONE, "which JSON keys ls prints"),
    "--lock": OptionAudit(NONE, "writes package-lock.yml without installing"),
    "--upgrade": OptionAudit(NONE, "upgrades package-lock.yml"),
    "--add-package": OptionAudit(NETWORK, "downloads a package and adds it to packages.yml"),
    "--source": OptionAudit(NONE, "where --add-package looks (hub, git, local)"),
    "--args": OptionAudit(VALUES, "YAML arguments passed to the macro"),
    "run-operation MACRO": OptionAudit(EXECUTES, "runs this macro with the project's credentials"),
    "--connection": OptionAudit(NONE, "tests the connection only"),
    "--config-dir": OptionAudit(NONE, "prints where profiles.yml is looked for"),
    "--limit": OptionAudit(NONE, "how many rows show prints"),
}

AUDIT: Mapping[str, OptionAudit] = MappingProxyType(_GENERAL | _SUBCOMMANDS)

LEFT_OUT: Mapping[str, str] = MappingProxyType(
    {
        "--deprecated-state": "hidden old spelling of --state",
        "--deprecated-defer": "hidden old spelling of --defer",
        "--deprecated-favor-state": "hidden old spelling of --favor-state",
        "--sqlparse": "tunes sqlparse's limits, which guard against huge SQL",
        "--version": "prints the version and exits",
    }
)
