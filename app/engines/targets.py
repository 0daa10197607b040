"""An environment's target and gateway, added to a validated command.

dbt: ``--target <target>`` at the end (dbt takes its general options after the subcommand).
SQLMesh: ``--gateway <gateway>`` before the subcommand (a global option), and the target as
the environment argument of the subcommands that take one (plan, run, check_intervals).

What comes out is validated again by the command policy, as text: the target and gateway
pass the same rules as if the user had typed them (a name, no option injection; an operator
who denies ``--target`` or ``--gateway`` denies it here too), and a command that already
names its own ``--target``, ``--gateway`` or SQLMesh environment is refused (the rules refuse
an option given twice and a second environment argument) instead of one silently winning.
"""

from __future__ import annotations

import re
import shlex
from typing import Protocol

from app.errors import FieldError, Invalid
from validators import ParsedCommand

# The SQLMesh subcommands whose one positional argument is the environment.
SQLMESH_ENVIRONMENT_SUBCOMMANDS = frozenset({"plan", "run", "check_intervals"})

# What a target or gateway may be: the validators' NAME values, stricter (no leading '-',
# so a value never reads as an option even before the policy sees it).
TARGET_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")


class Parse(Protocol):
    def parse(self, kind: str, text: str, field: str = "command") -> ParsedCommand: ...


def check_target(field: str, value: str | None) -> list[FieldError]:
    if value is None or TARGET_RE.match(value):
        return []
    return [
        FieldError(
            field,
            "letters, digits, '_', '.' and '-', starting with a letter, digit or '_', at most "
            f"63 characters; got {value[:60]!r}",
        )
    ]


def targeted_argv(
    kind: str, parsed: ParsedCommand, target: str | None, gateway: str | None
) -> list[str]:
    """The argument list with the target and gateway added (not yet validated again)."""
    argv = list(parsed.argv)
    if kind == "dbt":
        if target:
            argv += ["--target", target]
        return argv
    if target and parsed.subcommand in SQLMESH_ENVIRONMENT_SUBCOMMANDS:
        # Right after the subcommand's word: an option before it may take a value.
        at = next((i for i in range(1, len(argv)) if argv[i] == parsed.subcommand), len(argv) - 1)
        argv.insert(at + 1, target)
    if gateway:
        argv[1:1] = ["--gateway", gateway]
    return argv


def with_target(
    commands: Parse,
    kind: str,
    parsed: ParsedCommand,
    target: str | None,
    gateway: str | None,
    environment_name: str,
    field: str = "command",
) -> ParsedCommand:
    """``parsed`` run in an environment: validated again with its target and gateway, or a
    422 saying why the two do not go together."""
    argv = targeted_argv(kind, parsed, target, gateway if kind == "sqlmesh" else None)
    if argv == list(parsed.argv):
        return parsed
    try:
        return commands.parse(kind, shlex.join(argv), field)
    except Invalid as refused:
        given = ", ".join(
            f"{name} {value!r}"
            for name, value in (("target", target), ("gateway", gateway))
            if value
        )
        raise Invalid(
            f"The command cannot run in environment {environment_name!r}, which sets "
            f"{given}: {refused.detail.rstrip('.')}. A command run in an environment with a "
            "target must not name its own (--target, --gateway or a SQLMesh environment): "
            "remove it from the command, or clear the environment's target.",
            refused.errors,
        ) from None
