"""docs/commands.md keeps up with the rule tables: every subcommand, refused option and policy key
it should explain is mentioned."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from validators import KindPolicy
from validators.environment import REFUSED_NAMES, REFUSED_PREFIXES
from validators.rules import RULES

DOC = (Path(__file__).parents[3] / "docs" / "commands.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", sorted(RULES))
def test_every_subcommand_is_documented(kind: str) -> None:
    rules = RULES[kind]
    names = [name for sub in rules.subcommands for name in sub.names] + list(rules.unsupported)
    assert [name for name in names if f"`{name}`" not in DOC] == []


@pytest.mark.parametrize("kind", sorted(RULES))
def test_every_option_refused_by_default_is_documented(kind: str) -> None:
    denied = {flag.name for flag in RULES[kind].all_flags() if flag.denied}
    assert sorted(name for name in denied if f"`{name}`" not in DOC) == []


def test_the_policy_file_is_documented() -> None:
    assert "RUNYARD_COMMAND_POLICY" in DOC
    assert [f.name for f in fields(KindPolicy) if f"`{f.name}`" not in DOC] == []


@pytest.mark.parametrize("kind", sorted(RULES))
def test_every_audit_line_is_in_the_option_table(kind: str) -> None:
    """Each audited option has a row naming it with its effect and what it touches."""
    rows = [line for line in DOC.splitlines() if line.startswith("| `")]
    missing = []
    for key, audit in RULES[kind].audit.items():
        name = key.split(" ")[-1]
        cell = f"| {audit.effect.value}: {audit.touches} |"
        if not any(f"`{name}`" in row.split(" | ")[0] and cell in row for row in rows):
            missing.append(key)
    assert missing == []


def test_the_environment_rules_are_documented() -> None:
    names = [*REFUSED_NAMES, *(prefix.rstrip("_") for prefix, _ in REFUSED_PREFIXES)]
    assert [name for name in names if name not in DOC] == []
