"""The fake cluster's objects and the API server's semantics for writing and reading them.

Everything here runs on the emulator's event-loop thread (see ``k8s.FakeCluster``): there are no
locks, and every method runs without yielding, so each call is atomic.

Stored objects are never mutated in place: every write stores a new dict, so watch events and
list snapshots can share them safely. Callers outside the harness get deep copies.

What is served is what runyard and its tests do: create, read, replace (with resourceVersion
conflicts), the strategic merge patch of a hand edit, delete (with a uid precondition, Orphan or
Background propagation, namespaces with their contents), lists in pages with ``continue`` (410
once the history is compacted), label selectors, watch events with a bounded history, and pod
logs. The controllers that act on these objects are in ``k8s_state``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.harness.k8s_objects import (
    RESOURCES,
    ApiError,
    HarnessError,
    Obj,
    ResourceType,
    already_exists,
    bad_request,
    conflict,
    default_cronjob_spec,
    default_job_spec,
    default_pod_spec,
    invalid,
    labels_of,
    name_of,
    not_found,
    ns_of,
    random_suffix,
    rfc3339,
    uid_of,
    utcnow,
    validate,
)
from tests.harness.k8s_selectors import LabelSelector

# ----------------------------------------------------------------------------------------------
# Watch events and list pages


@dataclass
class WatchEvent:
    rv: int
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    # The object before a MODIFIED, so that a watch can turn an object entering or leaving its
    # label selector into ADDED or DELETED, as the API server does.
    prev: Obj | None
    _line: bytes | None = None

    @property
    def line(self) -> bytes:
        if self._line is None:
            self._line = encode_event(self.type, self.obj)
        return self._line


def encode_event(event_type: str, obj: Obj) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: str
    continue_token: str | None = None
    remaining: int | None = None


# ----------------------------------------------------------------------------------------------
# Strategic merge patch: what the kubernetes client sends for a dict body (a test's hand edit)

# Field name -> patchMergeKey of the lists with patchStrategy "merge" in the served resources.
# An item missing from the patch is KEPT, as on a real cluster: the reason runyard replaces
# CronJobs instead of patching them.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
}


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    """Maps merge recursively and ``null`` deletes a key; lists with a merge key merge item by
    item; other lists and scalars are replaced. (The ``$patch`` directives that kubectl can
    send are not served: runyard's tests send plain objects.)"""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(original) if isinstance(original, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(MERGE_KEYS[key], result[key], value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_list(merge_key: str, original: list[Any], patch: list[Any]) -> list[Any]:
    merged = list(original)
    for item in patch:
        if not isinstance(item, Mapping):
            return copy.deepcopy(patch)
        index = next(
            (
                i
                for i, old in enumerate(merged)
                if isinstance(old, Mapping) and old.get(merge_key) == item.get(merge_key)
            ),
            None,
        )
        if index is None:
            merged.append(copy.deepcopy(dict(item)))
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


# ----------------------------------------------------------------------------------------------
# The store


class Store:
    """All objects, the watch-event history and pod logs; the API server's write semantics."""

    def __init__(
        self,
        *,
        auto_namespaces: bool = True,
        server_defaults: bool = False,
        event_history: int = 10_000,
    ) -> None:
        self.auto_namespaces = auto_namespaces
        self.server_defaults = server_defaults
        self.event_history = max(event_history, 10)
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {plural: {} for plural in RESOURCES}
        self.rv = 0
        self.events: list[WatchEvent] = []
        self.compacted_rv = 0  # watches and list pages from an older resourceVersion get 410
        self.trimmed_rv = 0  # the newest event dropped from the history (watches behind it: 410)
        self.watch_epoch = 0  # bumped to end the open watches (expire_watches)
        self.logs: dict[tuple[str, str, str], list[str]] = {}  # (ns, pod, container) -> lines
        self.owned: dict[str, set[tuple[str, str, str]]] = {}  # owner uid -> (plural, ns, name)
        self._waiter: asyncio.Future[None] | None = None
        self.closing = False
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._create_namespace(name)

    # -- hooks for the controllers (k8s_state.ClusterState) ------------------------------------

    def _on_job_created(self, job: Obj) -> None:
        """A Job was created (through the API or by the CronJob controller)."""

    def _on_removed(self, plural: str, obj: Obj) -> None:
        """An object is gone from the store."""

    # -- change notification -------------------------------------------------------------------

    def notify(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    async def wait_change(self, timeout: float | None) -> None:
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        waiter = self._waiter
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout)

    def _commit(self, plural: str, event_type: str, obj: Obj, prev: Obj | None) -> Obj:
        self.rv += 1
        meta = dict(obj.get("metadata") or {})
        meta["resourceVersion"] = str(self.rv)
        obj = dict(obj)
        obj["metadata"] = meta
        key = (ns_of(obj), name_of(obj))
        stored_before = self.objects[plural].get(key)
        if event_type == "DELETED":
            self.objects[plural].pop(key, None)
        else:
            self.objects[plural][key] = obj
        self._index_owners(plural, key, stored_before, None if event_type == "DELETED" else obj)
        self.events.append(WatchEvent(self.rv, plural, event_type, obj, prev))
        if len(self.events) > self.event_history:
            drop = len(self.events) - self.event_history // 2
            self.trimmed_rv = self.events[drop - 1].rv
            self.compacted_rv = max(self.compacted_rv, self.trimmed_rv)
            del self.events[:drop]
        self.notify()
        return obj

    def _index_owners(
        self, plural: str, key: tuple[str, str], before: Obj | None, after: Obj | None
    ) -> None:
        def owners(obj: Obj | None) -> set[str]:
            if obj is None:
                return set()
            refs = obj["metadata"].get("ownerReferences") or []
            return {str(ref.get("uid")) for ref in refs if ref.get("uid")}

        old, new = owners(before), owners(after)
        for uid in old - new:
            dependents = self.owned.get(uid)
            if dependents is not None:
                dependents.discard((plural, *key))
                if not dependents:
                    del self.owned[uid]
        for uid in new - old:
            self.owned.setdefault(uid, set()).add((plural, *key))

    def owned_by(self, owner_uid: str, plural: str) -> list[Obj]:
        """The objects of ``plural`` with an ownerReference to ``owner_uid``, oldest first."""
        found = []
        for dep_plural, ns, name in self.owned.get(owner_uid, ()):
            if dep_plural == plural and (obj := self.objects[plural].get((ns, name))) is not None:
                found.append(obj)
        found.sort(
            key=lambda o: (
                o["metadata"]["creationTimestamp"],
                int(o["metadata"]["resourceVersion"]),
            )
        )
        return found

    def events_after(self, rv: int) -> list[WatchEvent]:
        index = bisect.bisect_right(self.events, rv, key=lambda event: event.rv)
        return self.events[index:]

    def expire_watches(self, *, close_open: bool = True) -> None:
        """Compact the history: watches from any resourceVersion older than now get 410 Gone."""
        self.rv += 1
        self.compacted_rv = self.rv
        if close_open:
            self.watch_epoch += 1
        self.notify()

    # -- reading -------------------------------------------------------------------------------

    def find(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        return self.objects[plural].get((namespace or "", name))

    def require(self, plural: str, namespace: str | None, name: str) -> Obj:
        obj = self.find(plural, namespace, name)
        if obj is None:
            raise not_found_in(plural, name)
        return obj

    def select(
        self, plural: str, namespace: str | None, labels: LabelSelector | None = None
    ) -> list[Obj]:
        result = []
        for (ns, _), obj in self.objects[plural].items():
            if namespace is not None and ns != namespace:
                continue
            if labels is not None and not labels.matches(labels_of(obj)):
                continue
            result.append(obj)
        result.sort(key=lambda o: (ns_of(o), name_of(o)))
        return result

    def list_page(
        self,
        plural: str,
        namespace: str | None,
        labels: LabelSelector,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """One page of a list. A continued list keeps the resourceVersion of its first page
        and answers 410 Expired once the history behind it is compacted, as etcd does."""
        items = self.select(plural, namespace, labels)
        rv = str(self.rv)
        if continue_token:
            try:
                decoded = json.loads(bytes.fromhex(continue_token).decode())
                start_after = (decoded["ns"], decoded["name"])
                rv = str(decoded["rv"])
            except (ValueError, KeyError) as exc:
                raise bad_request(f"continue key is not valid: {exc}") from exc
            if int(rv) < self.compacted_rv:
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without "
                    "the continue parameter.",
                )
            items = [o for o in items if (ns_of(o), name_of(o)) > start_after]
        token = None
        remaining = None
        if limit and len(items) > limit:
            last = items[limit - 1]
            token = json.dumps({"rv": int(rv), "ns": ns_of(last), "name": name_of(last)})
            token = token.encode().hex()
            if not labels.requirements:  # the API server counts only unfiltered lists
                remaining = len(items) - limit
            items = items[:limit]
        return ListResult(items, rv, token, remaining)

    # -- writing -------------------------------------------------------------------------------

    def _ensure_namespace(self, namespace: str) -> None:
        if self.find("namespaces", None, namespace) is not None:
            return
        if not self.auto_namespaces:
            raise not_found_in("namespaces", namespace)
        self._create_namespace(namespace)

    def _create_namespace(self, name: str) -> Obj:
        return self.create("namespaces", None, {"metadata": {"name": name}})

    def create(
        self,
        plural: str,
        namespace: str | None,
        body: Any,
        *,
        status: Obj | None = None,
        check: bool = True,
    ) -> Obj:
        """POST semantics. ``status`` and ``check=False`` are for the controllers' own pods."""
        rt = RESOURCES[plural]
        if not isinstance(body, Mapping):
            raise bad_request("the body of the request was not a JSON object")
        obj: Obj = copy.deepcopy(dict(body))
        meta: Obj = dict(obj.get("metadata") or {})
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace is None:
                namespace = body_ns
            if not namespace:
                raise bad_request(
                    "the server could not find the requested resource: namespace is required"
                )
            if body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            self._ensure_namespace(namespace)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    rt, "", [("metadata.name", "Required value: name or generateName is required")]
                )
            for _ in range(100):
                name = f"{prefix}{random_suffix()}"
                if self.find(plural, namespace, name) is None:
                    break
            meta["name"] = name
        name = str(name)
        if self.find(plural, namespace, name) is not None:
            raise already_exists(rt, name)
        for server_owned in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(server_owned, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(utcnow())
        meta["generation"] = 1
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        obj["metadata"] = meta
        self._prepare_create(rt, obj, status)
        if check:
            validate(rt, obj, None)
        stored = self._commit(plural, "ADDED", obj, None)
        if plural == "jobs":
            self._on_job_created(stored)
        return stored

    def _prepare_create(self, rt: ResourceType, obj: Obj, status: Obj | None) -> None:
        if rt.plural == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            labels = obj["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            return
        if status is not None:
            obj["status"] = status
        elif rt.plural == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        else:
            obj["status"] = {}
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if rt.plural == "jobs":
            # The API server's Job strategy: a generated selector and the matching template labels.
            uid = obj["metadata"]["uid"]
            name = obj["metadata"]["name"]
            template = spec.setdefault("template", {})
            if isinstance(template, dict) and not spec.get("manualSelector"):
                job_labels = {
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid,
                    "job-name": name,
                }
                template.setdefault("metadata", {}).setdefault("labels", {}).update(job_labels)
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                labels = obj["metadata"].setdefault("labels", {})
                for key, value in job_labels.items():
                    labels.setdefault(key, value)
        if self.server_defaults:
            self._default(rt.plural, spec)

    @staticmethod
    def _default(plural: str, spec: Obj) -> None:
        defaults = {
            "jobs": default_job_spec,
            "cronjobs": default_cronjob_spec,
            "pods": default_pod_spec,
        }.get(plural)
        if defaults is not None:
            defaults(spec)

    def update(self, plural: str, namespace: str | None, name: str, body: Any) -> Obj:
        """PUT semantics (also the last step of a PATCH): a resourceVersion in the body must be
        the stored one (409 Conflict otherwise); the status is kept; a write that changes
        nothing stores nothing, not even a new resourceVersion."""
        rt = RESOURCES[plural]
        old = self.require(plural, namespace, name)
        if not isinstance(body, Mapping):
            raise bad_request("the body of the request was not a JSON object")
        new: Obj = copy.deepcopy(dict(body))
        meta: Obj = dict(new.get("metadata") or {})
        body_name = meta.get("name")
        if body_name and body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        body_ns = meta.get("namespace")
        if rt.namespaced and body_ns and body_ns != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        old_meta = old["metadata"]
        expected_rv = meta.get("resourceVersion")
        if expected_rv and str(expected_rv) != old_meta["resourceVersion"]:
            raise conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the "
                "latest version and try again",
            )
        for kept in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
            else:
                meta.pop(kept, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["metadata"] = meta
        new["status"] = copy.deepcopy(old.get("status", {}))
        new["apiVersion"] = rt.api_version
        new["kind"] = rt.kind
        spec = new.get("spec")
        if self.server_defaults and isinstance(spec, dict):
            self._default(plural, spec)
        validate(rt, new, old)
        if new == old:
            return old
        if any(new.get(k) != old.get(k) for k in set(new) | set(old) if k != "metadata"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        return self._commit(plural, "MODIFIED", new, old)

    def patch(self, plural: str, namespace: str | None, name: str, body: Any) -> Obj:
        """A strategic merge patch; a resourceVersion in it is a precondition."""
        if not isinstance(body, Mapping):
            raise bad_request("the body of a strategic merge patch must be a JSON object")
        patched = strategic_merge_patch(self.require(plural, namespace, name), body)
        if (body.get("metadata") or {}).get("resourceVersion") is None:
            patched["metadata"] = dict(patched.get("metadata") or {})
            patched["metadata"].pop("resourceVersion", None)
        return self.update(plural, namespace, name, patched)

    def delete(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: Mapping[str, Any] | None = None,
    ) -> Obj:
        """Delete at once; returns the deleted object. Without ``propagation`` Jobs orphan
        their pods (the batch/v1 default, kept for compatibility) and everything else
        cascades; a namespace takes its contents along."""
        rt = RESOURCES[plural]
        obj = self.require(plural, namespace, name)
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != uid_of(obj):
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {uid_of(obj)}",
                )
            want_rv = preconditions.get("resourceVersion")
            if want_rv and str(want_rv) != obj["metadata"]["resourceVersion"]:
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {want_rv}, "
                    f"ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
                )
        if propagation is None:
            propagation = "Orphan" if plural == "jobs" else "Background"
        if propagation not in ("Orphan", "Background"):
            raise bad_request(
                f'Unsupported value: "{propagation}": the emulator serves "Background" and '
                '"Orphan" deletion'
            )
        if plural == "namespaces":
            for inner in ("cronjobs", "jobs", "pods"):
                for child in self.select(inner, name):
                    current = self.find(inner, name, name_of(child))
                    if current is not None:
                        self._delete_now(inner, current, "Background")
        return self._delete_now(plural, obj, propagation)

    def _delete_now(self, plural: str, obj: Obj, propagation: str) -> Obj:
        final = copy.deepcopy(obj)
        final["metadata"].setdefault("deletionTimestamp", rfc3339(utcnow()))
        gone = self._commit(plural, "DELETED", final, None)
        if plural == "pods":
            ns, pod = ns_of(obj), name_of(obj)
            for key in [k for k in self.logs if k[0] == ns and k[1] == pod]:
                del self.logs[key]
        self._on_removed(plural, obj)
        for dep_plural in ("jobs", "pods"):
            for dependent in self.owned_by(uid_of(obj), dep_plural):
                current = self.find(dep_plural, ns_of(dependent), name_of(dependent))
                if current is None:
                    continue  # gone with another dependent
                if propagation == "Orphan":
                    self._orphan(dep_plural, current, uid_of(obj))
                else:
                    self._delete_now(dep_plural, current, "Background")
        return gone

    def _orphan(self, plural: str, dependent: Obj, owner_uid: str) -> None:
        orphan = copy.deepcopy(dependent)
        refs = [
            r for r in orphan["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid
        ]
        if refs:
            orphan["metadata"]["ownerReferences"] = refs
        else:
            orphan["metadata"].pop("ownerReferences", None)
        self._commit(plural, "MODIFIED", orphan, dependent)

    def write_status(self, plural: str, obj: Obj, status: Obj) -> Obj:
        """A controller's status write (no validation, no generation change)."""
        current = self.require(plural, ns_of(obj), name_of(obj))
        updated = copy.deepcopy(current)
        updated["status"] = status
        if updated == current:
            return current
        return self._commit(plural, "MODIFIED", updated, current)

    # -- pod logs ------------------------------------------------------------------------------

    def append_logs(self, namespace: str, pod: str, text: str, *, container: str | None) -> None:
        obj = self.find("pods", namespace, pod)
        if obj is None:
            raise HarnessError(f"no pod {namespace}/{pod}")
        container = container or default_container(obj)
        self.logs.setdefault((namespace, pod, container), []).extend(text.splitlines(keepends=True))
        self.notify()

    def read_logs(
        self, namespace: str, pod_name: str, container: str | None, tail_lines: int | None
    ) -> bytes:
        """The container's log as the kubelet serves it: 400 while the container waits to start
        or when the container is ambiguous or unknown, 404 when the pod is gone."""
        pod = self.require("pods", namespace, pod_name)
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if container is None:
            if len(names) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {pod_name}, choose one of: "
                    f"[{' '.join(str(n) for n in names)}]"
                )
            container = str(names[0])
        elif container not in names:
            raise bad_request(f"container {container} is not valid for pod {pod_name}")
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        waiting = [s for s in statuses if s.get("name") == container and "waiting" in s["state"]]
        if waiting or not statuses:
            reason = waiting[0]["state"]["waiting"].get("reason") if waiting else None
            raise bad_request(
                f'container "{container}" in pod "{pod_name}" is waiting to start: '
                f"{reason or 'ContainerCreating'}"
            )
        lines = self.logs.get((namespace, pod_name, container), [])
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        return "".join(lines).encode()


def not_found_in(plural: str, name: str) -> ApiError:
    return not_found(RESOURCES[plural], name)


def default_container(pod: Obj) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0]["name"]) if containers else "main"
