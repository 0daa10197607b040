"""Label and field selectors with the Kubernetes API server's syntax and semantics.

Label selectors: ``a=b``, ``a==b``, ``a!=b`` (also matches objects without ``a``),
``a in (x,y)``, ``a notin (x,y)`` (also matches objects without ``a``), ``a`` (exists),
``!a`` (does not exist), ``a>1``, ``a<1``; requirements are ANDed with commas.

Field selectors: ``path=value``, ``path==value``, ``path!=value`` over the field labels
the real server supports for each resource (others are rejected with 400, as there).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector the real API server would reject with 400 Bad Request."""


_KEY = r"[A-Za-z0-9./_-]+"
_VALUE = r"[A-Za-z0-9._-]*"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_OP_RE = re.compile(rf"^({_KEY})\s*(==|=|!=|<|>)\s*({_VALUE})$")
_EXISTS_RE = re.compile(rf"^({_KEY})$")
_NOT_EXISTS_RE = re.compile(rf"^!\s*({_KEY})$")


def _split_top_level(text: str) -> list[str]:
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
    op: str  # exists, !exists, =, !=, in, notin, <, >
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
            case "<" | ">":
                if not present or value is None:
                    return False
                try:
                    number = int(value)
                except ValueError:
                    return False
                bound = int(self.values[0])
                return number < bound if self.op == "<" else number > bound
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
                if op in "<>":
                    try:
                        int(match.group(3))
                    except ValueError as exc:
                        raise SelectorError(
                            f"unable to parse requirement: for 'gt', 'lt' operators, "
                            f"the value must be an integer: {part!r}"
                        ) from exc
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

    @classmethod
    def from_label_selector(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """Build from a structured ``metav1.LabelSelector`` (matchLabels/matchExpressions)."""
        if not selector:
            return cls()
        requirements = [
            _Requirement(key, "=", (str(value),))
            for key, value in (selector.get("matchLabels") or {}).items()
        ]
        ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
        for expr in selector.get("matchExpressions") or []:
            op = ops[expr["operator"]]
            requirements.append(_Requirement(expr["key"], op, tuple(expr.get("values") or ())))
        return cls(tuple(requirements))


def _dig(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _as_field_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
_FIELDS: dict[str, dict[str, Callable[[Mapping[str, Any]], str]]] = {
    "pods": {
        "spec.nodeName": lambda o: _as_field_value(_dig(o, "spec.nodeName")),
        "spec.restartPolicy": lambda o: _as_field_value(_dig(o, "spec.restartPolicy")),
        "spec.schedulerName": lambda o: _as_field_value(_dig(o, "spec.schedulerName")),
        "spec.serviceAccountName": lambda o: _as_field_value(_dig(o, "spec.serviceAccountName")),
        "spec.hostNetwork": lambda o: _as_field_value(bool(_dig(o, "spec.hostNetwork"))),
        "status.phase": lambda o: _as_field_value(_dig(o, "status.phase")),
        "status.podIP": lambda o: _as_field_value(_dig(o, "status.podIP")),
        "status.nominatedNodeName": lambda o: _as_field_value(_dig(o, "status.nominatedNodeName")),
    },
    "jobs": {
        "status.successful": lambda o: _as_field_value(_dig(o, "status.succeeded") or 0),
    },
    "cronjobs": {},
    "namespaces": {
        "status.phase": lambda o: _as_field_value(_dig(o, "status.phase")),
    },
}


@dataclass(frozen=True)
class FieldSelector:
    plural: str = ""
    requirements: tuple[tuple[str, str, str], ...] = ()  # (field, op, value)

    @classmethod
    def parse(cls, plural: str, text: str | None) -> FieldSelector:
        if text is None or not text.strip():
            return cls(plural)
        requirements: list[tuple[str, str, str]] = []
        supported = set(_COMMON_FIELDS) | set(_FIELDS.get(plural, {}))
        for raw in text.split(","):
            part = raw.strip()
            match = re.match(r"^([A-Za-z0-9._-]+)\s*(==|=|!=)\s*(.*)$", part)
            if match is None:
                raise SelectorError(f"invalid selector: {part!r}; can't understand {part!r}")
            field, op, value = match.group(1), match.group(2), match.group(3)
            if field not in supported:
                raise SelectorError(f'field label not supported: "{field}"')
            requirements.append((field, "!=" if op == "!=" else "=", value))
        return cls(plural, tuple(requirements))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for field, op, value in self.requirements:
            getter = _FIELDS.get(self.plural, {}).get(field)
            actual = getter(obj) if getter else _as_field_value(_dig(obj, field))
            if (actual == value) != (op == "="):
                return False
        return True

    def single_name(self) -> str | None:
        """The name if the selector pins ``metadata.name=...`` (the common single-object watch)."""
        for field, op, value in self.requirements:
            if field == "metadata.name" and op == "=":
                return value
        return None
