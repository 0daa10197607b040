"""An operator's changes to the shipped rules, read from a JSON file.

The file (its path comes from ``RUNYARD_COMMAND_POLICY`` in the service) looks like::

    {
      "dbt": {
        "enable_subcommands": ["deps"],
        "disable_subcommands": ["show"],
        "allow_flags": ["--inline"],
        "deny_flags": ["--full-refresh"],
        "run_operation_macros": ["grant_select", "my_package.vacuum"]
      },
      "sqlmesh": {"enable_subcommands": ["migrate"], "deny_flags": ["--gateway"]}
    }

Every key is optional; ``{}`` means the shipped rules. Names are checked against the rule tables
when the policy is built, so a typo fails at start-up rather than silently allowing nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from validators.rules import KINDS, RuleSet, rules_for

MACRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True, slots=True)
class KindPolicy:
    """Changes for one project kind. Names are canonicalised (``list`` -> ``ls``, ``-s`` ->
    ``--select``) when the owning CommandPolicy is built."""

    enable_subcommands: frozenset[str] = frozenset()
    """Subcommands that are off by default (dbt deps, sqlmesh migrate ...) to turn on."""
    disable_subcommands: frozenset[str] = frozenset()
    """Subcommands to turn off."""
    allow_flags: frozenset[str] = frozenset()
    """Flags refused by default (dbt --inline, --profiles-dir, sqlmesh --where ...) to accept,
    including those the audit marks as carrying SQL, Jinja or network access. Path values must
    still be relative paths inside the project, and written paths still lie under target/ or
    logs/."""
    deny_flags: frozenset[str] = frozenset()
    """Extra flags to refuse, wherever they appear (before or after the subcommand)."""
    run_operation_macros: frozenset[str] = frozenset()
    """dbt only: macros ``dbt run-operation`` may run (``name`` or ``package.name``)."""


@dataclass(frozen=True)
class CommandPolicy:
    """The operator's loosening and tightening of the rules; ``CommandPolicy()`` is the default."""

    dbt: KindPolicy = field(default_factory=KindPolicy)
    sqlmesh: KindPolicy = field(default_factory=KindPolicy)

    def __post_init__(self) -> None:
        for kind in KINDS:
            checked = _checked(kind, getattr(self, kind))
            object.__setattr__(self, kind, checked)

    def for_kind(self, kind: str) -> KindPolicy:
        rules_for(kind)  # raises ValueError for an unknown kind
        policy: KindPolicy = getattr(self, kind)
        return policy

    def subcommand_enabled(self, kind: str, name: str) -> bool:
        rules = rules_for(kind)
        spec = rules.subcommand(name)
        if spec is None:
            return False
        policy = self.for_kind(kind)
        if spec.name in policy.disable_subcommands:
            return False
        return spec.enabled or spec.name in policy.enable_subcommands

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CommandPolicy:
        """Build a policy from parsed JSON; ValueError with a clear message on bad input."""
        if not isinstance(data, Mapping):
            raise ValueError('the command policy must be a JSON object such as {"dbt": {...}}')
        unknown = sorted(str(key) for key in data if key not in KINDS)
        if unknown:
            raise ValueError(
                f"unknown section(s) {', '.join(map(repr, unknown))} in the command policy; "
                f"expected {' and '.join(map(repr, KINDS))}"
            )
        sections = {kind: _kind_policy(kind, data[kind]) for kind in KINDS if kind in data}
        return cls(**sections)


def load_policy(path: str | os.PathLike[str]) -> CommandPolicy:
    """Read a policy JSON file; ValueError (naming the file) if it is missing or invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the command policy file {os.fspath(path)!r}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the command policy file {os.fspath(path)!r} is not valid JSON: {exc}"
        ) from exc
    try:
        return CommandPolicy.from_mapping(data)
    except ValueError as exc:
        raise ValueError(f"the command policy file {os.fspath(path)!r}: {exc}") from exc


_KIND_POLICY_KEYS = tuple(f.name for f in fields(KindPolicy))


def _kind_policy(kind: str, section: object) -> KindPolicy:
    if not isinstance(section, Mapping):
        raise ValueError(f"{kind!r} must be an object with keys such as 'enable_subcommands'")
    unknown = sorted(str(key) for key in section if key not in _KIND_POLICY_KEYS)
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {kind!r}; "
            f"expected some of {', '.join(map(repr, _KIND_POLICY_KEYS))}"
        )
    values = {key: _string_list(kind, key, section[key]) for key in section}
    return KindPolicy(**values)


def _string_list(kind: str, key: str, value: object) -> frozenset[str]:
    # A bare string would be iterated letter by letter: refuse it with a hint instead.
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f'{kind}.{key} must be a list of strings, e.g. ["a", "b"]')
    return frozenset(value)


def _checked(kind: str, policy: object) -> KindPolicy:
    """The policy with canonical names, or ValueError naming what is wrong."""
    if not isinstance(policy, KindPolicy):
        raise ValueError(f"CommandPolicy.{kind} must be a KindPolicy, not {type(policy).__name__}")
    rules = rules_for(kind)
    enable = _subcommands(rules, "enable_subcommands", policy.enable_subcommands, enabling=True)
    disable = _subcommands(rules, "disable_subcommands", policy.disable_subcommands)
    allow = _flags(rules, "allow_flags", policy.allow_flags)
    deny = _flags(rules, "deny_flags", policy.deny_flags)
    _no_overlap(kind, "enable_subcommands", enable, "disable_subcommands", disable)
    _no_overlap(kind, "allow_flags", allow, "deny_flags", deny)
    macros = frozenset(policy.run_operation_macros)
    if macros and rules.subcommand("run-operation") is None:
        raise ValueError(f"{kind}.run_operation_macros: {kind} has no run-operation command")
    bad = sorted(m for m in macros if not MACRO_NAME.match(m))
    if bad:
        raise ValueError(
            f"{kind}.run_operation_macros: {', '.join(map(repr, bad))} is not a macro name "
            "(use name or package.name)"
        )
    return KindPolicy(enable, disable, allow, deny, macros)


def _subcommands(
    rules: RuleSet, key: str, names: Iterable[str], *, enabling: bool = False
) -> frozenset[str]:
    canonical: set[str] = set()
    for name in names:
        spec = rules.subcommand(name)
        if spec is not None:
            canonical.add(spec.name)
        elif name in rules.unsupported:
            verb = "enabled" if enabling else "listed"
            raise ValueError(
                f"{rules.kind}.{key}: {name!r} cannot be {verb}: it {rules.unsupported[name]}"
            )
        else:
            known = ", ".join(s.name for s in rules.subcommands)
            raise ValueError(f"{rules.kind}.{key}: unknown subcommand {name!r}; known: {known}")
    return frozenset(canonical)


def _flags(rules: RuleSet, key: str, names: Iterable[str]) -> frozenset[str]:
    canonical: set[str] = set()
    for name in names:
        meanings = rules.canonical_flags(name)
        if not meanings:
            raise ValueError(
                f"{rules.kind}.{key}: {name!r} is not a {rules.program} option runyard knows "
                "(write flags in full, e.g. '--full-refresh')"
            )
        if len(meanings) > 1:
            raise ValueError(
                f"{rules.kind}.{key}: {name!r} means different options in different "
                f"subcommands ({', '.join(sorted(meanings))}); write the one you mean"
            )
        canonical.update(meanings)
    return frozenset(canonical)


def _no_overlap(kind: str, key_a: str, a: frozenset[str], key_b: str, b: frozenset[str]) -> None:
    both = sorted(a & b)
    if both:
        raise ValueError(f"{kind}: {', '.join(map(repr, both))} is in both {key_a} and {key_b}")
