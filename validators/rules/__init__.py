"""The allowlists: which subcommands and flags runyard accepts, per CLI version family.

One module per family holds the tables (``dbt_1_11``, ``sqlmesh_0``); ``RULES`` says which
family each project kind uses. To support a new CLI version, copy the family's module, adjust
it, point ``RULES`` at it, and let the contract tests compare it with the installed CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from validators.rules.dbt_1_11 import DBT_1_11
from validators.rules.model import (
    Arity,
    FlagSpec,
    PositionalSpec,
    RuleSet,
    SubcommandSpec,
    ValueKind,
)
from validators.rules.sqlmesh_0 import SQLMESH_0

RULES: Mapping[str, RuleSet] = MappingProxyType({"dbt": DBT_1_11, "sqlmesh": SQLMESH_0})
"""The rule set in force for each project kind."""

KINDS = tuple(RULES)


def rules_for(kind: str) -> RuleSet:
    try:
        return RULES[kind]
    except KeyError:
        raise ValueError(
            f"unknown project kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


__all__ = [
    "KINDS",
    "RULES",
    "Arity",
    "FlagSpec",
    "PositionalSpec",
    "RuleSet",
    "SubcommandSpec",
    "ValueKind",
    "rules_for",
]
