"""What ``runyard apply`` compares and plans: the changes, the secrets resolved up front, and
the field-by-field comparison of the file with the server (app/cli/apply.py sends them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.jobfile import FromEnv, JobFileError, ProjectSpec, references, resolve
from app.models import DependencyCondition

NOT_COMPARED = {
    "name", "jobs", "environments", "deployed", "depends_on", "defer_to", "environment_name",
}  # fmt: skip
UNCHANGED = object()


@dataclass
class FieldChange:
    field: str
    old: Any  # for a secret: never a value, only "set" / "changed" / "removed" / None
    new: Any
    secret: bool = False


@dataclass
class Change:
    resource: str  # "project", "environment" or "job"
    name: str  # "analytics" or "analytics/build"
    action: str  # "create", "update", "delete", "unlisted" (not in the file, no --prune)
    fields: list[FieldChange] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)
    project_id: str | None = None
    job_id: str | None = None
    deploy: bool | None = None
    # (job name or id, condition) to set
    depends_on: list[tuple[str, DependencyCondition]] | None = None
    # the job (name or id) to defer to, None to stop deferring; _UNCHANGED: leave it
    defer_to: object = UNCHANGED
    # the environment (an id, or the name of one this apply creates; None: the default)
    environment: object = UNCHANGED

    @property
    def changes_something(self) -> bool:
        return self.action in ("create", "delete") or bool(self.fields)


class Secrets:
    """The file's secret references resolved against the environment, all up front: an unset
    variable stops the apply before anything is sent."""

    def __init__(self, specs: list[ProjectSpec], environ: dict[str, str]) -> None:
        self._values: dict[str, str] = {}
        problems: list[str] = []
        for spec in specs:
            for where, ref in references(spec):
                try:
                    self._values[where] = resolve(ref, where, environ)
                except JobFileError as exc:
                    problems += exc.problems
        if problems:
            raise JobFileError(problems)

    def value(self, where: str) -> str:
        return self._values[where]


def plain(spec: msgspec.Struct, secret_fields: tuple[str, ...]) -> dict[str, Any]:
    """The non-secret fields the server stores, with the file's value (or its default)."""
    skip = NOT_COMPARED | set(secret_fields)
    return {
        name: msgspec.to_builtins(getattr(spec, name))
        for name in spec.__struct_fields__
        if name not in skip
    }


def secret_changes(
    where: str,
    spec: msgspec.Struct,
    current: dict[str, Any] | None,
    maps: tuple[str, ...],
    values: tuple[str, ...],
    secrets: Secrets,
    update_secrets: bool,
) -> tuple[list[FieldChange], dict[str, Any]]:
    """What to send of the secrets, and how to show it (never the values)."""
    changes: list[FieldChange] = []
    body: dict[str, Any] = {}
    for name in maps:
        wanted: dict[str, FromEnv] = getattr(spec, name)
        have = set((current or {}).get(name) or {})
        sent: dict[str, str | None] = {}
        for key in sorted(wanted):
            if key not in have:
                changes.append(FieldChange(f"{name}.{key}", None, "set", True))
            elif update_secrets:
                changes.append(FieldChange(f"{name}.{key}", "set", "replaced", True))
            else:
                continue
            sent[key] = secrets.value(f"{where}.{name}.{key}")
        for key in sorted(have - set(wanted)):
            changes.append(FieldChange(f"{name}.{key}", "set", "removed", True))
            sent[key] = None
        if sent:
            body[name] = sent
    for name in values:
        ref = getattr(spec, name)
        is_set = bool((current or {}).get(f"{name}_set"))
        if ref is not None and (not is_set or update_secrets):
            changes.append(FieldChange(name, "set" if is_set else None, "set", True))
            body[name] = secrets.value(f"{where}.{name}")
        elif ref is None and is_set:
            changes.append(FieldChange(name, "set", "removed", True))
            body[name] = None
    return changes, body


def compare(
    spec: msgspec.Struct, wanted: dict[str, Any], current: dict[str, Any] | None
) -> tuple[list[FieldChange], dict[str, Any]]:
    """The fields to send and show. A create sends every field but shows only those the file
    sets (the specs omit defaults when encoded)."""
    given = msgspec.to_builtins(spec)
    changes, body = [], {}
    for name, value in wanted.items():
        old = None if current is None else current.get(name)
        if current is None or old != value:
            body[name] = value
            if current is not None or name in given:
                changes.append(FieldChange(name, old, value))
    return changes, body
