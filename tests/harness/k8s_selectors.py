"""Label selectors with the Kubernetes API server's syntax and semantics.

Equality-based ``a=b``, ``a==b``, ``a!=b`` (also matches objects without ``a``) and set-based
``a in (x,y)``, ``a notin (x,y)`` (also matches objects without ``a``), ``a`` (exists),
``!a`` (does not exist); requirements are ANDed with commas. runyard selects with ``=`` and
``in`` (its finished-run pipeline lists the pods of many Jobs by controller uid); the numeric
``a>1`` and ``a<1`` are refused with 400 rather than misread, and so are field selectors (see
``k8s.UNSERVED_PARAMETERS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


class SelectorError(ValueError):
    """A selector the real API server would reject with 400 Bad Request."""


_KEY = r"[A-Za-z0-9./_-]+"
_VALUE = r"[A-Za-z0-9._-]*"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_OP_RE = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS_RE = re.compile(rf"^({_KEY})$")
_NOT_EXISTS_RE = re.compile(rf"^!\s*({_KEY})$")


def _split_top_level(text: str) -> list[str]:
    """Split on the commas between requirements, not those inside ``in (x,y)``."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # exists, !exists, =, !=, in, notin
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return present
            case "!exists":
                return not present
            case "=":
                return present and value == self.values[0]
            case "!=":
                return not present or value != self.values[0]
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
        return False  # pragma: no cover


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[_Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if text is None or not text.strip():
            return cls()
        requirements: list[_Requirement] = []
        for raw in _split_top_level(text):
            part = raw.strip()
            if not part:
                raise SelectorError(f"unable to parse requirement: empty requirement in {text!r}")
            if match := _SET_RE.match(part):
                values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
                requirements.append(_Requirement(match.group(1), match.group(2), values))
            elif match := _OP_RE.match(part):
                op = "=" if match.group(2) == "==" else match.group(2)
                requirements.append(_Requirement(match.group(1), op, (match.group(3),)))
            elif match := _NOT_EXISTS_RE.match(part):
                requirements.append(_Requirement(match.group(1), "!exists"))
            elif match := _EXISTS_RE.match(part):
                requirements.append(_Requirement(match.group(1), "exists"))
            else:
                raise SelectorError(f"unable to parse requirement: {part!r}")
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(req.matches(labels) for req in self.requirements)
