"""The patch flavours of the Kubernetes API: JSON merge patch, strategic merge patch, JSON patch.

Strategic merge patch follows the API server for the fields of batch/v1 Jobs and CronJobs,
v1 Pods and Namespaces: lists with a ``patchMergeKey`` (containers by name, env by name,
volumeMounts by mountPath, conditions by type, ownerReferences by uid, ...) are merged item by
item, so an item missing from the patch is KEPT (as on a real cluster); other lists are replaced;
``finalizers`` is merged as a set. The directives ``$patch: replace|delete|merge``,
``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>`` are
honoured. The merge keys are looked up by field name, not by the full schema path, which is
exact for the resources served here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class PatchError(ValueError):
    """A patch the real API server would reject (422 or 400)."""


# Field name -> patchMergeKey for lists with patchStrategy "merge" in the served resources.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
}
# Lists of scalars with patchStrategy "merge" (set semantics).
PRIMITIVE_MERGE: frozenset[str] = frozenset({"finalizers"})

_DELETE = object()  # a sentinel: the patched map asks to be deleted ($patch: delete)


def merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(original) if isinstance(original, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(original: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = _smp_map(copy.deepcopy(dict(original)), patch)
    if merged is _DELETE:
        return {}
    assert isinstance(merged, dict)
    return merged


def _smp_map(original: dict[str, Any], patch: Mapping[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive!r}")

    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key)
        if isinstance(value, Mapping):
            merged = _smp_map(current if isinstance(current, dict) else {}, value)
            if merged is _DELETE:
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list):
            original[key] = _smp_list(key, current if isinstance(current, list) else [], value)
        else:
            original[key] = copy.deepcopy(value)

    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(original.get(field), list):
                original[field] = [item for item in original[field] if item not in value]
        elif key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if isinstance(original.get(field), list):
                original[field] = _reorder(field, original[field], value)
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"] or [])
        original = {k: v for k, v in original.items() if k in keep}
    return original


def _smp_list(field: str, original: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [
            _strip(item) for item in patch if not (isinstance(item, Mapping) and "$patch" in item)
        ]
    merge_key = MERGE_KEYS.get(field)
    if field in PRIMITIVE_MERGE:
        result = list(original)
        for item in patch:
            if item not in result:
                result.append(copy.deepcopy(item))
        return result
    if merge_key is None or not all(isinstance(item, Mapping) for item in patch):
        return [_strip(item) for item in patch]
    result = list(original)
    for item in patch:
        key = item.get(merge_key)
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, Mapping) and old.get(merge_key) == key
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(_strip(item))
        else:
            merged = _smp_map(dict(result[index]), item)
            if merged is _DELETE:
                del result[index]
            else:
                result[index] = merged
    return result


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    merge_key = MERGE_KEYS.get(field)

    def identity(item: Any) -> Any:
        if merge_key is not None and isinstance(item, Mapping):
            return item.get(merge_key)
        return item

    wanted = [identity(item) for item in order]
    ordered = [item for key in wanted for item in items if identity(item) == key]
    rest = [item for item in items if identity(item) not in wanted]
    return ordered + rest


def _strip(value: Any) -> Any:
    """Remove SMP directives from a value that is inserted as new."""
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return copy.deepcopy(value)


# ----------------------------------------------------------------------------------------------
# RFC 6902 JSON patch


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {pointer!r}")
    return [_unescape(token) for token in pointer[1:].split("/")]


def _resolve_parent(doc: Any, tokens: list[str]) -> Any:
    target = doc
    for token in tokens[:-1]:
        if isinstance(target, dict):
            if token not in target:
                raise PatchError(f"path not found: {token!r}")
            target = target[token]
        elif isinstance(target, list):
            try:
                target = target[int(token)]
            except (ValueError, IndexError) as exc:
                raise PatchError(f"invalid list index: {token!r}") from exc
        else:
            raise PatchError(f"cannot descend into a scalar at {token!r}")
    return target


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path not found: {last!r}")
        return parent[last]
    if isinstance(parent, list):
        try:
            return parent[int(last)]
        except (ValueError, IndexError) as exc:
            raise PatchError(f"invalid list index: {last!r}") from exc
    raise PatchError("cannot index a scalar")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError as exc:
                raise PatchError(f"invalid list index: {last!r}") from exc
            if not 0 <= index <= len(parent):
                raise PatchError(f"list index out of range: {index}")
            parent.insert(index, value)
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path not found: {last!r}")
        del parent[last]
    elif isinstance(parent, list):
        try:
            del parent[int(last)]
        except (ValueError, IndexError) as exc:
            raise PatchError(f"invalid list index: {last!r}") from exc
    else:
        raise PatchError("cannot remove from a scalar")
    return doc


def json_patch(original: Mapping[str, Any], operations: list[Any]) -> dict[str, Any]:
    doc: Any = copy.deepcopy(dict(original))
    for op in operations:
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation: {op!r}")
        tokens = _split_pointer(op["path"])
        match op["op"]:
            case "add":
                doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
            case "remove":
                doc = _remove(doc, tokens)
            case "replace":
                if tokens:
                    _get(doc, tokens)  # must exist
                    doc = _remove(doc, tokens)
                doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
            case "move":
                source = _split_pointer(op["from"])
                value = _get(doc, source)
                doc = _remove(doc, source)
                doc = _add(doc, tokens, value)
            case "copy":
                value = copy.deepcopy(_get(doc, _split_pointer(op["from"])))
                doc = _add(doc, tokens, value)
            case "test":
                if _get(doc, tokens) != op.get("value"):
                    raise PatchError(f"testing value {op['path']} failed")
            case other:
                raise PatchError(f"unknown JSON patch operation: {other!r}")
    if not isinstance(doc, dict):
        raise PatchError("the patched document is not an object")
    return doc


# ----------------------------------------------------------------------------------------------
# Server-side apply (simplified: one field manager's view)


def apply_patch(
    live: Mapping[str, Any],
    applied: Mapping[str, Any],
    previously_applied: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Approximate server-side apply for a single field manager.

    The applied configuration is merged like a strategic merge patch (keyed lists by their merge
    key, other lists replaced), then fields that the same manager applied last time and omits
    now are removed. Fields set by others (e.g. status, or other managers) are kept.
    """
    merged = strategic_merge_patch(live, applied)
    if previously_applied:
        _prune(merged, previously_applied, applied)
    return merged


def _prune(target: dict[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for key, old_value in old.items():
        if key not in new:
            target.pop(key, None)
            continue
        new_value = new[key]
        current = target.get(key)
        if (
            isinstance(old_value, Mapping)
            and isinstance(new_value, Mapping)
            and isinstance(current, dict)
        ):
            _prune(current, old_value, new_value)
        elif (
            isinstance(old_value, list)
            and isinstance(new_value, list)
            and isinstance(current, list)
        ):
            merge_key = MERGE_KEYS.get(key)
            if merge_key is None:
                continue
            new_keys = {item.get(merge_key) for item in new_value if isinstance(item, Mapping)}
            old_keys = {item.get(merge_key) for item in old_value if isinstance(item, Mapping)}
            dropped = old_keys - new_keys
            target[key] = [
                item
                for item in current
                if not (isinstance(item, Mapping) and item.get(merge_key) in dropped)
            ]
            for item in target[key]:
                if not isinstance(item, dict):
                    continue
                ident = item.get(merge_key)
                old_item = next(
                    (o for o in old_value if isinstance(o, Mapping) and o.get(merge_key) == ident),
                    None,
                )
                new_item = next(
                    (n for n in new_value if isinstance(n, Mapping) and n.get(merge_key) == ident),
                    None,
                )
                if old_item is not None and new_item is not None:
                    _prune(item, old_item, new_item)
