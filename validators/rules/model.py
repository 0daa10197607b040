"""The shapes of the rule tables: flags, positional arguments, subcommands and rule sets.

The tables themselves live next to this module, one per CLI version family. They are data: the
validator reads them, the contract tests check them against the installed CLIs, and the docs
describe them. Change behaviour by changing a table, not the code that reads it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Arity(enum.Enum):
    """How many command-line words a flag consumes after itself."""

    NONE = "none"
    """A switch (``--full-refresh``) or a counter (``-v``): no value."""
    ONE = "one"
    """Exactly one value (``--threads 4`` or ``--threads=4``)."""
    MANY = "many"
    """dbt's multi-value options: one or more values up to the next word starting with ``-``
    (``--select a b c``)."""


class ValueKind(enum.Enum):
    """What a value (of a flag or a positional argument) must look like."""

    TEXT = "text"
    """Any non-empty text that does not start with ``-`` (selectors, YAML, dates, SQL filters)."""
    NAME = "name"
    """A name such as a target, gateway or environment: letters, digits, ``_ . -``."""
    PATH = "path"
    """A relative path inside the project: no absolute paths, no ``..``, no ``~``."""
    INTEGER = "integer"
    """A non-negative whole number."""
    CHOICE = "choice"
    """One of the flag's ``choices``."""
    MACRO = "macro"
    """A dbt macro name (``macro`` or ``package.macro``) that the policy allows to run."""
    VARS = "vars"
    """YAML or JSON values for the project's code, without Jinja delimiters: dbt renders Jinja
    inside ``--vars``, which would give a job the power of the refused ``--inline``."""


class Effect(enum.Enum):
    """What an option (or positional argument) makes the CLI read, write or execute.

    The audit of every accepted option is recorded with one of these, next to the rule tables;
    the validator enforces the rules that follow from it, and the contract tests check that the
    CLI agrees (whatever the CLI types as a path is audited as one).
    """

    NONE = "none"
    """Changes how the command behaves or what it prints; touches nothing the job names."""
    SELECTS = "selects"
    """Chooses which of the project's own resources the command acts on."""
    CONFIG = "config"
    """Chooses among connections, profiles or environments the project itself defines."""
    VALUES = "values"
    """Passes values to the project's code; Jinja in them is refused (``ValueKind.VARS``)."""
    READS_PATH = "reads-path"
    """Reads files at a path the job names: a relative path inside the project."""
    WRITES_PATH = "writes-path"
    """Writes files at a path the job names: only under the rule set's output folders."""
    SQL = "sql"
    """Carries SQL that runs with the project's credentials. Off unless a policy allows it."""
    JINJA = "jinja"
    """Carries Jinja that dbt renders into SQL and runs. Off unless a policy allows it."""
    EXECUTES = "executes"
    """Runs code the job chooses (a macro); only what the operator's policy lists."""
    NETWORK = "network"
    """Sends data to, or fetches code from, the internet. Off unless a policy allows it."""


PATH_EFFECTS = frozenset({Effect.READS_PATH, Effect.WRITES_PATH})
OFF_BY_DEFAULT_EFFECTS = frozenset({Effect.SQL, Effect.JINJA, Effect.NETWORK})
"""Options with these effects are refused unless the operator's policy lists them in
``allow_flags``: they carry code or reach outside, which no command rule can make safe."""


@dataclass(frozen=True, slots=True)
class OptionAudit:
    """One line of the audit: what an option or positional argument touches."""

    effect: Effect
    touches: str
    """What it reads, writes or executes, in a few words, for the docs and error messages."""


@dataclass(frozen=True, slots=True)
class FlagSpec:
    name: str
    """Canonical spelling: the long form where there is one (``--select``)."""
    aliases: tuple[str, ...] = ()
    """Other spellings the CLI accepts for the same option (``-s``, ``--models``)."""
    arity: Arity = Arity.NONE
    repeatable: bool = False
    """May be given more than once (click ``multiple=True`` or a counter)."""
    value: ValueKind = ValueKind.TEXT
    choices: tuple[str, ...] = ()
    denied: str | None = None
    """Why the flag is refused by default (None: allowed). Operators may lift it in a policy."""

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class PositionalSpec:
    name: str
    """The CLI's own name for the argument (``environment``, ``macro``)."""
    required: bool = False
    many: bool = False
    """Takes every remaining positional word (``sqlmesh test [TESTS]...``)."""
    value: ValueKind = ValueKind.TEXT


@dataclass(frozen=True, slots=True)
class SubcommandSpec:
    name: str
    """Canonical name; multi-word for nested commands (``source freshness``)."""
    flags: tuple[FlagSpec, ...]
    aliases: tuple[str, ...] = ()
    """Other names the CLI accepts for the same command (``list`` for ``ls``)."""
    positionals: tuple[PositionalSpec, ...] = ()
    enabled: bool = True
    """On by default. Off subcommands can be turned on by an operator's policy."""
    off_reason: str = ""
    """Why the subcommand is off by default (shown to users and in the docs)."""
    required_flags: tuple[str, ...] = ()
    """Flags without which the command cannot run unattended (sqlmesh plan's --auto-apply)."""
    required_reason: str = ""
    summary: str = ""
    """What the subcommand does, in a few words, for the docs."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class RuleSet:
    kind: str
    """Project kind: ``dbt`` or ``sqlmesh``."""
    family: str
    """CLI version family the tables were written and checked against, e.g. ``dbt 1.11``."""
    version_prefix: str
    """Installed versions starting with this belong to the family (checked by the tests)."""
    program: str
    """The first word of every command."""
    global_flags: tuple[FlagSpec, ...]
    """Flags accepted between the program name and the subcommand."""
    subcommands: tuple[SubcommandSpec, ...]
    unsupported: Mapping[str, str] = field(default_factory=dict)
    """Subcommands of the CLI that runyard never runs, with the reason (no policy can enable)."""
    examples: tuple[str, ...] = ()
    """Commands the default rules accept; the tests parse each one with the real CLI."""
    general_hint: str = ""
    """Names a few of the global options, for error messages that list a subcommand's options."""
    audit: Mapping[str, OptionAudit] = field(default_factory=dict)
    """What every accepted option and positional argument touches. Keys are a canonical flag
    (``--state``) or a positional's name in capitals (``FILE``), for every subcommand, or the
    same preceded by a subcommand (``source freshness --output``) where one subcommand differs."""
    output_dirs: tuple[str, ...] = ("target", "logs")
    """The only folders (relative to the project) that options writing files may name."""
    protected_outputs: tuple[str, ...] = ()
    """Files inside the output folders that runyard reads back, so no option may write them."""
    left_out: Mapping[str, str] = field(default_factory=dict)
    """Options of the CLI's subcommands that the tables leave out on purpose (refused as
    unknown), with the reason; the contract tests require every path-like one to be here."""

    def subcommand(self, name: str) -> SubcommandSpec | None:
        for spec in self.subcommands:
            if name in spec.names:
                return spec
        return None

    def flag_names(self) -> frozenset[str]:
        """Every canonical flag name and alias in the rule set."""
        names: set[str] = set()
        for spec in self.global_flags:
            names.update(spec.spellings)
        for sub in self.subcommands:
            for spec in sub.flags:
                names.update(spec.spellings)
        return frozenset(names)

    def canonical_flags(self, spelling: str) -> frozenset[str]:
        """The canonical names a spelling stands for; short forms may differ by subcommand
        (SQLMesh's ``-s`` is ``--start`` for plan but ``--skip-columns`` for table_diff)."""
        return frozenset(spec.name for spec in self.all_flags() if spelling in spec.spellings)

    def audit_of(self, subcommand: str | None, name: str) -> OptionAudit | None:
        """The audit line for a flag or positional (``FILE``) as used in ``subcommand``."""
        if subcommand is not None:
            specific = self.audit.get(f"{subcommand} {name}")
            if specific is not None:
                return specific
        return self.audit.get(name)

    def all_flags(self) -> tuple[FlagSpec, ...]:
        flags = list(self.global_flags)
        for sub in self.subcommands:
            flags.extend(sub.flags)
        return tuple(flags)


# Small constructors that keep the tables one line per flag.


def switch(name: str, *aliases: str, denied: str | None = None) -> FlagSpec:
    return FlagSpec(name, aliases, Arity.NONE, denied=denied)


def toggle(name: str, *aliases: str) -> tuple[FlagSpec, FlagSpec]:
    """``--x`` and its negation ``--no-x`` (click's ``--x/--no-x``)."""
    return switch(name, *aliases), switch("--no-" + name.removeprefix("--"))


def counter(name: str, *aliases: str) -> FlagSpec:
    return FlagSpec(name, aliases, Arity.NONE, repeatable=True)


def option(
    name: str,
    *aliases: str,
    value: ValueKind = ValueKind.TEXT,
    choices: tuple[str, ...] = (),
    repeatable: bool = False,
    denied: str | None = None,
) -> FlagSpec:
    if choices:
        value = ValueKind.CHOICE
    return FlagSpec(name, aliases, Arity.ONE, repeatable, value, choices, denied)


def multi(
    name: str, *aliases: str, value: ValueKind = ValueKind.TEXT, choices: tuple[str, ...] = ()
) -> FlagSpec:
    if choices:
        value = ValueKind.CHOICE
    return FlagSpec(name, aliases, Arity.MANY, True, value, choices)
