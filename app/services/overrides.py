"""Per-project overrides of the Kubernetes templates, checked before they are ever used.

Only the parts that teams need to vary are open: node placement, pull secrets, extra
volumes of safe kinds, and annotations. Anything else (host paths, privileged settings)
stays as runyard's templates set it.
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
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_MOUNT_KEYS = {"name", "mountPath", "readOnly", "subPath"}


def _string_map(field: str, value: Any, what: str) -> list[FieldError]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return [FieldError(field, f"must be {what}")]
    return [
        FieldError(f"{field}.{k}", "not a valid Kubernetes key")
        for k in value
        if len(k) > 253 or not _LABEL_KEY.match(k)
    ]


def _tolerations(field: str, value: Any) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(field, ALLOWED_KEYS["tolerations"])]
    errors = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - _TOLERATION_KEYS:
            errors.append(
                FieldError(f"{field}[{i}]", "allowed keys: " + ", ".join(sorted(_TOLERATION_KEYS)))
            )
        elif item.get("operator", "Equal") not in ("Equal", "Exists") or item.get(
            "effect", "NoSchedule"
        ) not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(
                FieldError(
                    f"{field}[{i}]",
                    "operator is Equal or Exists; effect is "
                    "NoSchedule, PreferNoSchedule or NoExecute",
                )
            )
    return errors


def _volumes(field: str, value: Any) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(field, ALLOWED_KEYS["volumes"])]
    errors = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            errors.append(FieldError(f"{field}[{i}]", "each volume needs a name"))
            continue
        sources = set(item) - {"name"}
        if len(sources) != 1 or not sources <= SAFE_VOLUME_SOURCES:
            errors.append(
                FieldError(
                    f"{field}[{i}]",
                    "exactly one source of: " + ", ".join(sorted(SAFE_VOLUME_SOURCES)),
                )
            )
        if item["name"] in RESERVED_VOLUMES or not _DNS.match(item["name"]):
            errors.append(
                FieldError(
                    f"{field}[{i}].name",
                    f"a DNS name not used by runyard ({', '.join(sorted(RESERVED_VOLUMES))})",
                )
            )
    return errors


def _mounts(field: str, value: Any, volume_names: set[str]) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(field, ALLOWED_KEYS["volume_mounts"])]
    errors = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - _MOUNT_KEYS:
            errors.append(FieldError(f"{field}[{i}]", ALLOWED_KEYS["volume_mounts"]))
            continue
        path = item.get("mountPath")
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
            errors.append(FieldError(f"{field}[{i}].mountPath", "an absolute path without '..'"))
        if item.get("name") not in volume_names:
            errors.append(FieldError(f"{field}[{i}].name", "must name a volume in 'volumes'"))
        sub = item.get("subPath")
        if sub is not None and (
            not isinstance(sub, str) or sub.startswith("/") or ".." in sub.split("/")
        ):
            errors.append(FieldError(f"{field}[{i}].subPath", "a relative path without '..'"))
    return errors


def check_template_overrides(field: str, overrides: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for key in overrides:
        if key not in ALLOWED_KEYS:
            errors.append(
                FieldError(
                    f"{field}.{key}",
                    "not an override runyard accepts; allowed: " + ", ".join(ALLOWED_KEYS),
                )
            )
    if "node_selector" in overrides:
        errors += _string_map(
            f"{field}.node_selector", overrides["node_selector"], ALLOWED_KEYS["node_selector"]
        )
    if "annotations" in overrides:
        errors += _string_map(
            f"{field}.annotations", overrides["annotations"], ALLOWED_KEYS["annotations"]
        )
    if "tolerations" in overrides:
        errors += _tolerations(f"{field}.tolerations", overrides["tolerations"])
    if "image_pull_secrets" in overrides:
        secrets = overrides["image_pull_secrets"]
        if not isinstance(secrets, list) or not all(
            isinstance(s, str) and _DNS.match(s) for s in secrets
        ):
            errors.append(FieldError(f"{field}.image_pull_secrets", "a list of secret names"))
    volumes = overrides.get("volumes", [])
    if "volumes" in overrides:
        errors += _volumes(f"{field}.volumes", volumes)
    if "volume_mounts" in overrides:
        names = (
            {v.get("name") for v in volumes if isinstance(v, dict)}
            if isinstance(volumes, list)
            else set()
        )
        errors += _mounts(
            f"{field}.volume_mounts",
            overrides["volume_mounts"],
            {n for n in names if isinstance(n, str)},
        )
    return errors
