"""The one place the service meets the command validators (package ``validators``)."""

from __future__ import annotations

from app.errors import FieldError, Invalid
from validators import CommandPolicy, ParsedCommand, load_policy, validate_command


class CommandChecker:
    def __init__(self, policy: CommandPolicy | None = None) -> None:
        self._policy = policy

    @classmethod
    def from_settings(cls, policy_path: str | None) -> CommandChecker:
        return cls(load_policy(policy_path) if policy_path else None)

    def parse(self, kind: str, text: str, field: str = "command") -> ParsedCommand:
        """The argument list to run, or a 422 naming each rejected token."""
        result = validate_command(kind, text, self._policy)
        if result.command is not None and not result.errors:
            return result.command
        errors = [
            FieldError(field, f"{e.token!r}: {e.reason}. Allowed: {e.allowed}")
            for e in result.errors
        ] or [FieldError(field, "the command was not accepted")]
        raise Invalid(f"The {field} was rejected: " + "; ".join(e.message for e in errors), errors)
