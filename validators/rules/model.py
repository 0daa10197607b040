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
