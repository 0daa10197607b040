"""validate_command: from the text a user typed to the argument list runyard may run.

Two steps: ``shell_words`` splits the text as a POSIX shell would (refusing anything a shell
would do more with than split it), then ``_CommandParser`` reads the words against the rule
tables in the way the real click-based CLIs do, so that what is checked here is what dbt or
SQLMesh will see.
"""

from __future__ import annotations

import difflib
from types import MappingProxyType

from validators.policy import CommandPolicy, KindPolicy
from validators.result import CommandError, ParsedCommand, ValidationResult
from validators.rules import Arity, FlagSpec, RuleSet, SubcommandSpec, ValueKind, rules_for
from validators.rules.model import OFF_BY_DEFAULT_EFFECTS, Effect, OptionAudit
from validators.shell_words import split_words
from validators.values import output_problem, value_problem

DEFAULT_POLICY = CommandPolicy()

_VALUE_HINTS = {
    ValueKind.TEXT: "a value that does not start with -",
    ValueKind.NAME: "a name of letters, digits, _ . -",
    ValueKind.PATH: "a relative path inside the project, using / and no '..', e.g. target/state",
    ValueKind.INTEGER: "a whole number such as 4",
    ValueKind.MACRO: "a macro name such as grant_select or my_package.vacuum",
    ValueKind.VARS: (
        'YAML or JSON values without {{ }}, {% %} or {# #}, e.g. \'{"day": "2024-01-01"}\'; '
        "put templated logic in the project's models or macros"
    ),
}

# Why options with an effect that is off by default are refused, when their table gives none.
_OFF_REASONS = {
    Effect.SQL: "carries SQL that runs with the project's credentials",
    Effect.JINJA: "carries Jinja that dbt renders into SQL and runs with the project's credentials",
    Effect.NETWORK: "reaches the internet from the run",
}


def validate_command(kind: str, text: str, policy: CommandPolicy | None = None) -> ValidationResult:
    """Check a dbt or SQLMesh command typed by a user.

    ``kind`` is the project kind (``dbt`` or ``sqlmesh``; anything else is a programming error
    and raises ValueError). The result holds either the parsed command, whose ``argv`` is the
    only thing that may be executed, or every problem found, each naming the offending token.
    """
    rules = rules_for(kind)
    split = split_words(text)
    if split.errors:
        return ValidationResult(None, split.errors)
    parser = _CommandParser(rules, policy if policy is not None else DEFAULT_POLICY, split.words)
    return parser.parse()


class _CommandParser:
    def __init__(self, rules: RuleSet, policy: CommandPolicy, words: tuple[str, ...]) -> None:
        self.rules = rules
        self.policy = policy
        self.kind_policy: KindPolicy = policy.for_kind(rules.kind)
        self.words = words
        self.i = 0
        self.errors: list[CommandError] = []
        self.flags: dict[str, list[str]] = {}

    # -- the command as a whole ------------------------------------------------------------------

    def parse(self) -> ValidationResult:
        if not self.words:
            return self._refuse("", "the command is empty", self._usage())
        for index, word in enumerate(self.words):
            if word == "":
                self._error("''", "is an empty argument", "leave out empty quotes", index)
        if self.words[0] != self.rules.program:
            return self._refuse_program()
        self.i = 1
        while self._at_flag():
            self._read_flag(self.rules.global_flags, None)
        position = self.i
        spec = self._read_subcommand()
        if spec is None:
            return ValidationResult(None, tuple(self.errors))
        positionals: list[tuple[int, str]] = []
        while self.i < len(self.words):
            if self._at_flag():
                self._read_flag(spec.flags, spec)
            else:
                positionals.append((self.i, self.words[self.i]))
                self.i += 1
        self._check_positionals(spec, position, positionals)
        missing = [flag for flag in spec.required_flags if flag not in self.flags]
        if missing:
            self._error(spec.name, spec.required_reason, "add " + " ".join(missing), position)
        if self.errors:
            return ValidationResult(None, tuple(self.errors))
        flags = MappingProxyType({name: tuple(values) for name, values in self.flags.items()})
        command = ParsedCommand(self.rules.kind, self.words, spec.name, flags)
        return ValidationResult(command, ())

    def _refuse_program(self) -> ValidationResult:
        first = self.words[0]
        program = self.rules.program
        if first in ("dbt", "sqlmesh"):
            reason = f"this is a {self.rules.kind} project, so its commands start with {program}"
        else:
            reason = f"only {program} commands run in a {self.rules.kind} project"
        return self._refuse(first, reason, self._usage(), 0)

    # -- subcommands -----------------------------------------------------------------------------

    def _read_subcommand(self) -> SubcommandSpec | None:
        program = self.rules.program
        if self.i >= len(self.words):
            self._error(program, "names no subcommand", self._usage(), 0)
            return None
        position = self.i
        first = self.words[self.i]
        pair = " ".join(self.words[self.i : self.i + 2])
        name = pair if self._is_known_name(pair) else first
        if not self._is_known_name(name):
            self._unknown_subcommand(first, position)
            return None
        self.i += len(name.split(" "))
        if name in self.rules.unsupported:
            reason = f"is never run by runyard: it {self.rules.unsupported[name]}"
            self._error(name, reason, self._usage(), position)
            return None
        spec = self.rules.subcommand(name)
        assert spec is not None  # _is_known_name said so
        if not self.policy.subcommand_enabled(self.rules.kind, spec.name):
            if spec.name in self.kind_policy.disable_subcommands:
                reason = "is turned off by this runyard's command policy"
                allowed = self._usage()
            else:
                reason = f"is off by default: it {spec.off_reason}"
                allowed = (
                    "an operator can turn it on with enable_subcommands in the command policy; "
                    + self._usage()
                )
            self._error(name, reason, allowed, position)
            return None
        return spec

    def _is_known_name(self, name: str) -> bool:
        return self.rules.subcommand(name) is not None or name in self.rules.unsupported

    def _unknown_subcommand(self, word: str, position: int) -> None:
        program = self.rules.program
        groups = [s.name for s in self.rules.subcommands if s.name.startswith(word + " ")]
        if groups:
            reason = f"needs a second word, as in {program} {groups[0]}"
        elif word.startswith("-"):
            reason = f"is not an option {program} accepts before the subcommand"
        else:
            reason = f"is not a {program} subcommand runyard runs" + self._did_you_mean(
                word, self._enabled_names()
            )
        self._error(word, reason, self._usage(), position)

    def _enabled_names(self) -> list[str]:
        return [
            name
            for spec in self.rules.subcommands
            if self.policy.subcommand_enabled(self.rules.kind, spec.name)
            for name in spec.names
        ]

    def _usage(self) -> str:
        return f"{self.rules.program} followed by one of: {', '.join(self._enabled_names())}"

    # -- flags -----------------------------------------------------------------------------------

    def _at_flag(self) -> bool:
        # click reads any word of two or more characters starting with '-' as an option; a lone
        # '-' is taken as one here too, so that it is refused like any unknown option.
        return self.i < len(self.words) and self.words[self.i].startswith("-")

    def _read_flag(self, table: tuple[FlagSpec, ...], sub: SubcommandSpec | None) -> None:
        word = self.words[self.i]
        position = self.i
        self.i += 1
        name, inline = word, None
        if word.startswith("--") and "=" in word:
            name, inline = word.split("=", 1)
        spec = next((f for f in table if name in f.spellings), None)
        if spec is None:
            self._unknown_flag(name, position, sub)
            # After the subcommand, skip the words that were probably its values, so one typo
            # gives one error. (Before it, the next plain word is the subcommand.)
            while sub and self.i < len(self.words) and not self.words[self.i].startswith("-"):
                self.i += 1
            return
        audit = self.rules.audit_of(sub.name if sub else None, spec.name)
        self._check_flag_allowed(spec, name, position, audit)
        values = self._read_values(spec, name, inline, position, audit)
        if spec.name in self.flags and not spec.repeatable:
            self._error(name, "is given more than once", f"give {spec.name} once", position)
        self.flags.setdefault(spec.name, []).extend(values)

    def _check_flag_allowed(
        self, spec: FlagSpec, name: str, position: int, audit: OptionAudit | None
    ) -> None:
        if spec.name in self.kind_policy.deny_flags:
            self._error(
                name, "is turned off by this runyard's command policy", "leave it out", position
            )
            return
        if audit is None:
            # The tests keep the audit complete; should an entry be missing, fail closed.
            self._error(
                name,
                "has not been audited for what it reads, writes or executes, so runyard refuses it",
                "leave it out",
                position,
            )
            return
        reason = self._off_reason(spec, audit)
        if reason is not None and spec.name not in self.kind_policy.allow_flags:
            self._error(
                name,
                reason,
                "leave it out (an operator can allow it with allow_flags in the command policy)",
                position,
            )

    @staticmethod
    def _off_reason(spec: FlagSpec, audit: OptionAudit | None) -> str | None:
        """Why the flag is off by default: its table's reason, or its effect's."""
        if spec.denied is not None:
            return spec.denied
        if audit is not None and audit.effect in OFF_BY_DEFAULT_EFFECTS:
            return _OFF_REASONS[audit.effect]
        return None

    def _read_values(
        self,
        spec: FlagSpec,
        name: str,
        inline: str | None,
        position: int,
        audit: OptionAudit | None,
    ) -> list[str]:
        if spec.arity is Arity.NONE:
            if inline is not None:
                self._error(
                    f"{name}={inline}", "is a switch and takes no value", f"{name} alone", position
                )
            return []
        if inline == "":
            hint = f"{name}=VALUE or {name} VALUE, with {self._value_hint(spec)}"
            self._error(f"{name}=", "has an empty value", hint, position)
            return []
        if inline is not None:
            values = [inline]
            value_positions = [position]
        elif self.i < len(self.words):
            values = [self.words[self.i]]
            value_positions = [self.i]
            self.i += 1
        else:
            self._error(
                name, "needs a value", f"{name} followed by {self._value_hint(spec)}", position
            )
            return []
        if spec.arity is Arity.MANY:
            # dbt's multi-value options take words up to the next one starting with '-'.
            while self.i < len(self.words) and not self.words[self.i].startswith("-"):
                values.append(self.words[self.i])
                value_positions.append(self.i)
                self.i += 1
        for value, at in zip(values, value_positions, strict=True):
            self._check_value(spec, name, value, at, audit)
        return values

    def _check_value(
        self, spec: FlagSpec, name: str, value: str, position: int, audit: OptionAudit | None
    ) -> None:
        if value.startswith("-"):
            self._error(
                value,
                f"stands where {name} expects its value, and values may not start with -",
                f"{name} followed by {self._value_hint(spec)}",
                position,
            )
            return
        if value == "":
            return  # reported once for the whole command
        problem = value_problem(spec.value, value, spec.choices)
        if problem is None and audit is not None and audit.effect is Effect.WRITES_PATH:
            problem = self._output_problem(value)
            if problem is not None:
                reason = f"{problem} ({name} {audit.touches})"
                self._error(value, reason, self._output_hint(value), position)
                return
        if problem is not None:
            reason = f"{problem} (the value of {name})"
            self._error(value, reason, self._value_hint(spec), position)

    def _value_hint(self, spec: FlagSpec) -> str:
        if spec.value is ValueKind.CHOICE:
            return "one of " + ", ".join(spec.choices)
        return _VALUE_HINTS[spec.value]

    def _output_problem(self, value: str) -> str | None:
        return output_problem(value, self.rules.output_dirs, self.rules.protected_outputs)

    def _output_hint(self, value: str) -> str:
        folders = " or ".join(f"{d}/" for d in self.rules.output_dirs)
        name = value.rstrip("/").rsplit("/", 1)[-1]
        if f"{self.rules.output_dirs[0]}/{name}" in self.rules.protected_outputs:
            name = "other-" + name
        return f"a relative path inside {folders}, e.g. {self.rules.output_dirs[0]}/{name}"

    def _unknown_flag(self, name: str, position: int, sub: SubcommandSpec | None) -> None:
        program = self.rules.program
        global_names = {s for f in self.rules.global_flags for s in f.spellings}
        if sub is None:
            if self.rules.canonical_flags(name):
                self._error(
                    name,
                    "is not accepted before the subcommand",
                    f"put it after the subcommand, e.g. {program} run {name} ...",
                    position,
                )
            else:
                self._error(name, f"is not a {program} option", self._usage(), position)
            return
        if name in global_names:
            self._error(
                name,
                f"is a global {program} option and goes before the subcommand",
                f"{program} {name} ... {sub.name} ...",
                position,
            )
            return
        allowed = self._allowed_spellings(sub)
        reason = f"is not an option of {program} {sub.name}" + self._did_you_mean(name, allowed)
        self._error(name, reason, self._options_summary(sub), position)

    def _allowed_spellings(self, sub: SubcommandSpec) -> list[str]:
        return [s for f in sub.flags if self._flag_allowed(f, sub) for s in f.spellings]

    def _flag_allowed(self, spec: FlagSpec, sub: SubcommandSpec | None = None) -> bool:
        if spec.name in self.kind_policy.deny_flags:
            return False
        audit = self.rules.audit_of(sub.name if sub else None, spec.name)
        if audit is None:
            return False
        return self._off_reason(spec, audit) is None or spec.name in self.kind_policy.allow_flags

    def _options_summary(self, sub: SubcommandSpec) -> str:
        general = set(self.rules.global_flags)
        own = [f.name for f in sub.flags if f not in general and self._flag_allowed(f, sub)]
        has_general = any(f in general for f in sub.flags)
        parts = []
        if own:
            parts.append(f"options of {self.rules.program} {sub.name}: {', '.join(own)}")
        else:
            parts.append(f"{self.rules.program} {sub.name} has no options of its own")
        if has_general and self.rules.general_hint:
            parts.append(f"plus {self.rules.general_hint}")
        return "; ".join(parts)

    # -- positional arguments --------------------------------------------------------------------

    def _check_positionals(
        self, sub: SubcommandSpec, sub_position: int, given: list[tuple[int, str]]
    ) -> None:
        specs = sub.positionals
        filled = [0] * len(specs)
        slot = 0
        for position, word in given:
            if slot >= len(specs):
                self._unexpected_argument(sub, word, position)
                continue
            spec = specs[slot]
            filled[slot] += 1
            if not spec.many:
                slot += 1
            if word == "":
                continue
            audit = self.rules.audit_of(sub.name, spec.name.upper())
            if audit is None:
                reason = f"(the {spec.name} argument) has not been audited, so runyard refuses it"
                self._error(word, reason, f"leave out the {spec.name} argument", position)
                continue
            if spec.value is ValueKind.MACRO:
                self._check_macro(word, position)
                continue
            problem = value_problem(spec.value, word)
            if problem is None and audit.effect is Effect.WRITES_PATH:
                problem = self._output_problem(word)
                if problem is not None:
                    reason = f"{problem} (the {spec.name} argument {audit.touches})"
                    self._error(word, reason, self._output_hint(word), position)
                    continue
            if problem is not None:
                reason = f"{problem} (the {spec.name} argument)"
                self._error(word, reason, _VALUE_HINTS[spec.value], position)
        for spec, count in zip(specs, filled, strict=True):
            if spec.required and count == 0:
                usage = f"{self.rules.program} {sub.name} {spec.name.upper()}"
                self._error(sub.name, f"needs the {spec.name} argument", usage, sub_position)

    def _unexpected_argument(self, sub: SubcommandSpec, word: str, position: int) -> None:
        program = self.rules.program
        if any(f.name == "--select" for f in sub.flags):
            allowed = f"to choose what runs, use --select {word}"
        elif sub.positionals:
            names = " ".join(f"[{p.name.upper()}]" for p in sub.positionals)
            allowed = f"{program} {sub.name} {names} and options"
        else:
            allowed = f"{program} {sub.name} takes options only"
        self._error(word, f"is not an argument {program} {sub.name} takes", allowed, position)

    def _check_macro(self, macro: str, position: int) -> None:
        problem = value_problem(ValueKind.MACRO, macro)
        if problem is not None:
            self._error(macro, problem, _VALUE_HINTS[ValueKind.MACRO], position)
            return
        allowed_macros = self.kind_policy.run_operation_macros
        if macro in allowed_macros:
            return
        if allowed_macros:
            allowed = "one of " + ", ".join(sorted(allowed_macros))
        else:
            allowed = (
                "no macro yet: an operator can list the macros jobs may run in "
                "run_operation_macros in the command policy"
            )
        self._error(
            macro,
            "is not a macro this runyard lets run-operation run; run-operation can run any macro "
            "with the project's credentials, so operators list the allowed ones",
            allowed,
            position,
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _did_you_mean(self, word: str, candidates: list[str]) -> str:
        close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.75)
        return f" (did you mean {close[0]}?)" if close else ""

    def _error(self, token: str, reason: str, allowed: str, position: int | None = None) -> None:
        self.errors.append(CommandError(token, reason, allowed, position))

    def _refuse(
        self, token: str, reason: str, allowed: str, position: int | None = None
    ) -> ValidationResult:
        self._error(token, reason, allowed, position)
        return ValidationResult(None, tuple(self.errors))
