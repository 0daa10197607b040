"""Per-project overrides of the Kubernetes templates, checked before they are ever used.

Only the parts that teams need to vary are open: node placement, pull secrets, extra
volumes of safe kinds, and annotations. Anything else (host paths, privileged settings)
stays as runyard's templates set it.

The body is free-form JSON, so every value is type-checked here before it is looked at:
a list where a name belongs, or a number where a path belongs, is a 422 naming the field,
never an exception further down (rendering, the Kubernetes API).
"""

from __future__ import annotations

import re
from typing import Any

from app.errors import FieldError

ALLOWED_KEYS = {
    "node_selector": "a map of node label to value",
    "tolerations": "a list of tolerations ({key, operator, value, effect, tolerationSeconds})",
    "image_pull_secrets": "a list of secret names",
    "volumes": "a list of volumes of kind configMap, secret, persistentVolumeClaim or emptyDir",
    "volume_mounts": "a list of {name, mountPath, readOnly, subPath}",
    "annotations": "a map of pod annotation to value",
}
SAFE_VOLUME_SOURCES = frozenset({"configMap", "secret", "persistentVolumeClaim", "emptyDir"})
RESERVED_VOLUMES = frozenset({"dbt-target", "dbt-logs", "tmp"})
MAX_ITEMS = 50
MAX_PATH = 1024
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_MOUNT_KEYS = {"name", "mountPath", "readOnly", "subPath"}
# Each volume source's fields and the type of each, as Kubernetes defines them.
_SOURCE_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "configMap": {"name": str, "items": list, "defaultMode": int, "optional": bool},
    "secret": {"secretName": str, "items": list, "defaultMode": int, "optional": bool},
    "persistentVolumeClaim": {"claimName": str, "readOnly": bool},
    "emptyDir": {"medium": str, "sizeLimit": (str, int)},
}
_TYPE_NAMES = {str: "a string", list: "a list", int: "a whole number", bool: "true or false"}


def _key(value: object) -> str:
    """A key for a field path: a 500 KB key is not echoed back whole."""
    return str(value)[:64]


def _is_dns_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 253 and bool(_DNS.match(value))


def _list(field: str, value: Any, what: str) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(field, f"must be {what}")]
    if len(value) > MAX_ITEMS:
        return [FieldError(field, f"at most {MAX_ITEMS} entries")]
    return []


def _string_map(field: str, value: Any, what: str, *, label_values: bool) -> list[FieldError]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return [FieldError(field, f"must be {what}")]
    if len(value) > MAX_ITEMS:
        return [FieldError(field, f"at most {MAX_ITEMS} entries")]
    errors = [
        FieldError(f"{field}.{_key(k)}", "not a valid Kubernetes key")
        for k in value
        if len(k) > 253 or not _LABEL_KEY.match(k)
    ]
    for k, v in value.items():
        if label_values and (len(v) > 63 or not _LABEL_VALUE.match(v)):
            errors.append(
                FieldError(
                    f"{field}.{_key(k)}",
                    "a label value has at most 63 letters, digits, '-', '_' or '.', "
                    "starting and ending with a letter or digit",
                )
            )
        elif len(v) > 65_536:
            errors.append(FieldError(f"{field}.{_key(k)}", "at most 65,536 characters"))
    return errors


def _tolerations(field: str, value: Any) -> list[FieldError]:
    errors = _list(field, value, ALLOWED_KEYS["tolerations"])
    if errors:
        return errors
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict) or set(item) - _TOLERATION_KEYS:
            errors.append(FieldError(where, "allowed keys: " + ", ".join(sorted(_TOLERATION_KEYS))))
            continue
        for name in ("key", "value"):
            if name in item and (not isinstance(item[name], str) or len(item[name]) > 316):
                errors.append(FieldError(f"{where}.{name}", "a string (label key or value)"))
        seconds = item.get("tolerationSeconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
            errors.append(FieldError(f"{where}.tolerationSeconds", "a whole number of seconds"))
        if item.get("operator", "Equal") not in ("Equal", "Exists") or item.get(
            "effect", "NoSchedule"
        ) not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(
                FieldError(
                    where,
                    "operator is Equal or Exists; effect is "
                    "NoSchedule, PreferNoSchedule or NoExecute",
                )
            )
    return errors


def _source_problems(field: str, kind: str, source: Any) -> list[FieldError]:
    allowed = _SOURCE_FIELDS[kind]
    if not isinstance(source, dict):
        return [FieldError(field, f"must be an object with some of: {', '.join(allowed)}")]
    errors = []
    for name, value in source.items():
        expected = allowed.get(name)
        if expected is None:
            errors.append(
                FieldError(f"{field}.{_key(name)}", "allowed keys: " + ", ".join(allowed))
            )
        elif (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            types = expected if isinstance(expected, tuple) else (expected,)
            wanted = " or ".join(_TYPE_NAMES[t] for t in types)
            errors.append(FieldError(f"{field}.{name}", f"must be {wanted}"))
        elif name == "items" and not all(
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and isinstance(entry.get("path"), str)
            and _relative_path_problem(entry["path"]) is None
            for entry in value
        ):
            errors.append(FieldError(f"{field}.items", "a list of {key, path} with relative paths"))
    for name in ("name", "secretName", "claimName"):
        if name in source and isinstance(source[name], str) and not _is_dns_name(source[name]):
            errors.append(FieldError(f"{field}.{name}", "a Kubernetes object name"))
    return errors


def _volumes(field: str, value: Any) -> list[FieldError]:
    errors = _list(field, value, ALLOWED_KEYS["volumes"])
    if errors:
        return errors
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            errors.append(FieldError(where, "each volume needs a name"))
            continue
        sources = set(item) - {"name"}
        if len(sources) != 1 or not sources <= SAFE_VOLUME_SOURCES:
            errors.append(
                FieldError(
                    where, "exactly one source of: " + ", ".join(sorted(SAFE_VOLUME_SOURCES))
                )
            )
        else:
            (kind,) = sources
            errors += _source_problems(f"{where}.{kind}", kind, item[kind])
        name = item["name"]
        if name in RESERVED_VOLUMES or len(name) > 63 or not _DNS.match(name):
            errors.append(
                FieldError(
                    f"{where}.name",
                    f"a DNS name not used by runyard ({', '.join(sorted(RESERVED_VOLUMES))})",
                )
            )
        elif name in seen:
            errors.append(FieldError(f"{where}.name", "two volumes have this name"))
        seen.add(name)
    return errors


def _relative_path_problem(path: str) -> str | None:
    if not path or len(path) > MAX_PATH or path.startswith("/") or ".." in path.split("/"):
        return "a relative path without '..'"
    return None


def _mounts(field: str, value: Any, volume_names: set[str]) -> list[FieldError]:
    errors = _list(field, value, ALLOWED_KEYS["volume_mounts"])
    if errors:
        return errors
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict) or set(item) - _MOUNT_KEYS:
            errors.append(FieldError(where, ALLOWED_KEYS["volume_mounts"]))
            continue
        path = item.get("mountPath")
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or len(path) > MAX_PATH
            or ".." in path.split("/")
        ):
            errors.append(FieldError(f"{where}.mountPath", "an absolute path without '..'"))
        name = item.get("name")
        if not isinstance(name, str) or name not in volume_names:
            errors.append(FieldError(f"{where}.name", "must name a volume in 'volumes'"))
        sub = item.get("subPath")
        if sub is not None and (not isinstance(sub, str) or _relative_path_problem(sub)):
            errors.append(FieldError(f"{where}.subPath", "a relative path without '..'"))
        if "readOnly" in item and not isinstance(item["readOnly"], bool):
            errors.append(FieldError(f"{where}.readOnly", "true or false"))
    return errors


def check_template_overrides(field: str, overrides: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for key in overrides:
        if key not in ALLOWED_KEYS:
            errors.append(
                FieldError(
                    f"{field}.{_key(key)}",
                    "not an override runyard accepts; allowed: " + ", ".join(ALLOWED_KEYS),
                )
            )
    if "node_selector" in overrides:
        errors += _string_map(
            f"{field}.node_selector",
            overrides["node_selector"],
            ALLOWED_KEYS["node_selector"],
            label_values=True,
        )
    if "annotations" in overrides:
        errors += _string_map(
            f"{field}.annotations",
            overrides["annotations"],
            ALLOWED_KEYS["annotations"],
            label_values=False,
        )
    if "tolerations" in overrides:
        errors += _tolerations(f"{field}.tolerations", overrides["tolerations"])
    if "image_pull_secrets" in overrides:
        secrets = overrides["image_pull_secrets"]
        if _list(f"{field}.image_pull_secrets", secrets, "") or not all(
            _is_dns_name(s) for s in secrets
        ):
            errors.append(FieldError(f"{field}.image_pull_secrets", "a list of secret names"))
    volumes = overrides.get("volumes", [])
    if "volumes" in overrides:
        errors += _volumes(f"{field}.volumes", volumes)
    if "volume_mounts" in overrides:
        names = (
            {v["name"] for v in volumes if isinstance(v, dict) and isinstance(v.get("name"), str)}
            if isinstance(volumes, list)
            else set()
        )
        errors += _mounts(f"{field}.volume_mounts", overrides["volume_mounts"], names)
    return errors
