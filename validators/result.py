"""What validation returns: the accepted command, or the reasons it was refused."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandError:
    """One reason a command was refused, written for the person who typed it."""

    token: str
    """The offending token, or the whole text for errors about the whole command."""
    reason: str
    """Why it is refused, in plain words (no trailing full stop)."""
    allowed: str
    """What is allowed instead."""
    position: int | None = None
    """Index of the word in the tokenised command (0 is ``dbt``/``sqlmesh``), when known."""


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """An accepted command, ready to run as an argument list (never through a shell)."""

    kind: str
    """``"dbt"`` or ``"sqlmesh"``."""
    argv: tuple[str, ...]
    """The exact argument list to execute, starting with ``dbt`` or ``sqlmesh``."""
    subcommand: str
    """The canonical subcommand, e.g. ``"build"``, ``"source freshness"``, ``"plan"``."""
    flags: Mapping[str, tuple[str, ...]]
    """Canonical long flag -> the values given (an empty tuple for flags without a value)."""


@dataclass(frozen=True, slots=True)
class ValidationResult:
    command: ParsedCommand | None
    errors: tuple[CommandError, ...]

    @property
    def ok(self) -> bool:
        return self.command is not None and not self.errors
