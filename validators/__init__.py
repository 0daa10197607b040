"""Command validation for dbt and SQLMesh jobs: runyard's first line of defence.

Every command a user saves on a job, or passes as ``command_override``, goes through
``validate_command``; only the ``argv`` it returns is ever run, as an argument list and never
through a shell. This package is pure: it imports nothing from ``app`` and does not import dbt
or SQLMesh either (their CLIs are only loaded by the contract tests).
"""

from validators.command import validate_command
from validators.policy import CommandPolicy, KindPolicy, load_policy
from validators.result import CommandError, ParsedCommand, ValidationResult

__all__ = [
    "CommandError",
    "CommandPolicy",
    "KindPolicy",
    "ParsedCommand",
    "ValidationResult",
    "load_policy",
    "validate_command",
]
