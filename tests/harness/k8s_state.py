"""The in-memory state of the fake cluster, its API semantics, and the controllers it plays.

Everything here runs on the emulator's event-loop thread (see ``k8s.FakeCluster``): there are no
locks, and every method except the ``async`` ones runs without yielding, so each call is atomic.

Stored objects are never mutated in place: every write stores a new dict, so watch events and
list snapshots can share them safely. Callers outside this module get deep copies.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import json
import math
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.harness import k8s_patch
from tests.harness.k8s_selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]

JOB_FAILURE_REASONS = frozenset({"BackoffLimitExceeded", "DeadlineExceeded", "PodFailurePolicy"})
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MSG_COMPLETIONS = "Reached expected number of succeeded pods"
MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
FAKE_NODE = "fake-node"


# ----------------------------------------------------------------------------------------------
# Resource types


@dataclass(frozen=True)
class ResourceType:
    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """As in error messages: ``jobs.batch``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """As in validation messages: ``Job.batch``, ``Pod``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


RESOURCES: dict[str, ResourceType] = {
    "cronjobs": ResourceType(
        "cronjobs", "CronJob", "batch", "v1", True, "cronjob", ("cj",), ("status",)
    ),
    "jobs": ResourceType("jobs", "Job", "batch", "v1", True, "job", (), ("status",)),
    "pods": ResourceType("pods", "Pod", "", "v1", True, "pod", ("po",), ("status", "log")),
    "namespaces": ResourceType(
        "namespaces", "Namespace", "", "v1", False, "namespace", ("ns",), ("status",)
    ),
}


# ----------------------------------------------------------------------------------------------
# Errors rendered as Kubernetes Status objects


class ApiError(Exception):
    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details else None

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str) -> Obj:
    details: Obj = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', _details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        _details(rt, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 with ``causes`` as (field, message) pairs, worded like the API server."""
    text = ", ".join(f"{fld}: {msg}" for fld, msg in causes)
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": msg, "field": fld} for fld, msg in causes
    ]
    if len(causes) > 1:
        text = f"[{text}]"
    return ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {text}', details)


class HarnessError(RuntimeError):
    """A misuse of the harness's controller helpers (e.g. finishing a Job that has finished)."""


class CronJobSkipped(HarnessError):
    """The CronJob controller would not create a Job now (suspended, or Forbid with one active)."""


# ----------------------------------------------------------------------------------------------
# Time helpers


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def go_rfc3339(moment: datetime) -> str:
    """Go's ``time.RFC3339`` layout: ``Z`` for a zero offset, else ``+hh:mm``."""
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's utilrand alphabet


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(length))


# ----------------------------------------------------------------------------------------------
# Behaviour of auto-completed Jobs


@dataclass(frozen=True)
class JobOutcome:
    """How one Job ends when the harness plays its controller."""

    exit_code: int = 0
    logs: str = ""
    duration: float = 0.0
    reason: str | None = None
    delay: float | None = None  # overrides JobBehaviour.delay for this Job


@dataclass(frozen=True)
class JobBehaviour:
    """Auto-completion of every Job created in the fake cluster.

    Each new Job (created through the API, or by ``fire_cronjob``) is run ``delay`` seconds after
    its creation, runs for ``duration`` seconds, and ends with ``exit_code`` / ``reason`` after
    writing ``logs``. ``decide(job)`` may instead return a per-Job ``JobOutcome``, or ``None`` to
    leave that Job alone (so a test can drive it by hand). Suspended Jobs are never auto-run.
    """

    delay: float = 0.0
    exit_code: int = 0
    logs: str = ""
    duration: float = 0.0
    reason: str | None = None
    decide: Callable[[Obj], JobOutcome | None] | None = None

    def outcome_for(self, job: Obj) -> JobOutcome | None:
        if self.decide is not None:
            return self.decide(copy.deepcopy(job))
        return JobOutcome(self.exit_code, self.logs, self.duration, self.reason, self.delay)


# ----------------------------------------------------------------------------------------------
# Watch events and logs


@dataclass
class WatchEvent:
    rv: int
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    prev: (
        Obj | None
    )  # the object before a MODIFIED (to turn selector transitions into ADDED/DELETED)
    _line: bytes | None = None

    @property
    def line(self) -> bytes:
        if self._line is None:
            self._line = encode_event(self.type, self.obj)
        return self._line


def encode_event(event_type: str, obj: Obj) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


@dataclass
class LogLine:
    at: datetime
    text: str  # including its trailing newline, if any


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: str
    continue_token: str | None = None
    remaining: int | None = None


# ----------------------------------------------------------------------------------------------
# Validation of the fields whose real-server checks runyard may run into

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _validate_labels(labels: Any, path: str, causes: list[tuple[str, str]]) -> None:
    if labels is None:
        return
    if not isinstance(labels, Mapping):
        causes.append((path, "Invalid value: must be a map of strings"))
        return
    for key, value in labels.items():
        name = str(key).rsplit("/", 1)[-1]
        if not _LABEL_NAME.match(name) or len(name) > 63:
            causes.append(
                (
                    path,
                    f'Invalid value: "{key}": name part must consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    f"{path}",
                    f'Invalid value: "{value}": a valid label must be an empty '
                    "string or consist of alphanumeric characters, '-', '_' or "
                    "'.', and must start and end with an alphanumeric character "
                    "(at most 63 characters)",
                )
            )


def _validate_pod_spec(spec: Any, path: str, causes: list[tuple[str, str]], *, job: bool) -> None:
    if not isinstance(spec, Mapping):
        causes.append((path, "Required value"))
        return
    containers = spec.get("containers")
    if not containers:
        causes.append((f"{path}.containers", "Required value"))
    else:
        seen: set[str] = set()
        for index, container in enumerate(containers):
            name = container.get("name") if isinstance(container, Mapping) else None
            if not name:
                causes.append((f"{path}.containers[{index}].name", "Required value"))
            elif name in seen:
                causes.append((f"{path}.containers[{index}].name", f'Duplicate value: "{name}"'))
            else:
                seen.add(name)
            if isinstance(container, Mapping) and not container.get("image"):
                causes.append((f"{path}.containers[{index}].image", "Required value"))
    if job:
        policy = spec.get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            causes.append(
                (
                    f"{path}.restartPolicy",
                    f'Unsupported value: "{policy or "Always"}": '
                    'supported values: "OnFailure", "Never"',
                )
            )


def _validate_job_spec(spec: Any, path: str, causes: list[tuple[str, str]]) -> None:
    if not isinstance(spec, Mapping):
        causes.append((path, "Required value"))
        return
    template = spec.get("template")
    if not isinstance(template, Mapping):
        causes.append((f"{path}.template", "Required value"))
    else:
        _validate_labels(
            (template.get("metadata") or {}).get("labels"),
            f"{path}.template.metadata.labels",
            causes,
        )
        _validate_pod_spec(template.get("spec"), f"{path}.template.spec", causes, job=True)
    for name in ("activeDeadlineSeconds",):
        value = spec.get(name)
        if value is not None and (not isinstance(value, int) or value <= 0):
            causes.append((f"{path}.{name}", f"Invalid value: {value}: must be greater than 0"))
    for name in ("backoffLimit", "ttlSecondsAfterFinished", "completions", "parallelism"):
        value = spec.get(name)
        if value is not None and (not isinstance(value, int) or value < 0):
            causes.append(
                (f"{path}.{name}", f"Invalid value: {value}: must be greater than or equal to 0")
            )
    pfp = spec.get("podFailurePolicy")
    if pfp is not None and isinstance(template, Mapping):
        if (template.get("spec") or {}).get("restartPolicy") != "Never":
            causes.append(
                (
                    f"{path}.template.spec.restartPolicy",
                    'Invalid value: "OnFailure": only "Never" is supported when '
                    "podFailurePolicy is specified",
                )
            )
        for index, rule in enumerate(pfp.get("rules") or []):
            action = rule.get("action")
            if action not in ("FailJob", "Ignore", "Count", "FailIndex"):
                causes.append(
                    (
                        f"{path}.podFailurePolicy.rules[{index}].action",
                        f'Unsupported value: "{action}": supported values: '
                        '"Count", "FailIndex", "FailJob", "Ignore"',
                    )
                )
            on_codes = rule.get("onExitCodes")
            if on_codes is not None and on_codes.get("operator") not in ("In", "NotIn"):
                causes.append(
                    (
                        f"{path}.podFailurePolicy.rules[{index}].onExitCodes.operator",
                        f'Unsupported value: "{on_codes.get("operator")}": '
                        'supported values: "In", "NotIn"',
                    )
                )


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[tuple[str, str]] = []
    pattern = _DNS_LABEL if rt.plural == "namespaces" else _DNS_SUBDOMAIN
    max_len = {"namespaces": 63, "cronjobs": 52, "jobs": 63}.get(rt.plural, 253)
    if not pattern.match(name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 '
                f"{'label' if rt.plural == 'namespaces' else 'subdomain'} must consist "
                "of lower case alphanumeric characters, '-' or '.', and must start and "
                "end with an alphanumeric character",
            )
        )
    if len(name) > max_len:
        causes.append(
            ("metadata.name", f'Invalid value: "{name}": must be no more than {max_len} characters')
        )
    _validate_labels(meta.get("labels"), "metadata.labels", causes)
    spec = obj.get("spec")
    if rt.plural == "cronjobs":
        if not isinstance(spec, Mapping):
            causes.append(("spec", "Required value"))
        else:
            if not spec.get("schedule"):
                causes.append(("spec.schedule", "Required value"))
            tz = spec.get("timeZone")
            if tz is not None:
                try:
                    ZoneInfo(tz)
                except (ZoneInfoNotFoundError, ValueError):
                    causes.append(
                        ("spec.timeZone", f'Invalid value: "{tz}": unknown time zone {tz}')
                    )
            policy = spec.get("concurrencyPolicy")
            if policy is not None and policy not in ("Allow", "Forbid", "Replace"):
                causes.append(
                    (
                        "spec.concurrencyPolicy",
                        f'Unsupported value: "{policy}": supported values: '
                        '"Allow", "Forbid", "Replace"',
                    )
                )
            for limit in (
                "successfulJobsHistoryLimit",
                "failedJobsHistoryLimit",
                "startingDeadlineSeconds",
            ):
                value = spec.get(limit)
                if value is not None and (not isinstance(value, int) or value < 0):
                    causes.append(
                        (
                            f"spec.{limit}",
                            f"Invalid value: {value}: must be greater than or equal to 0",
                        )
                    )
            job_template = spec.get("jobTemplate")
            if not isinstance(job_template, Mapping):
                causes.append(("spec.jobTemplate", "Required value"))
            else:
                _validate_labels(
                    (job_template.get("metadata") or {}).get("labels"),
                    "spec.jobTemplate.metadata.labels",
                    causes,
                )
                _validate_job_spec(job_template.get("spec"), "spec.jobTemplate.spec", causes)
    elif rt.plural == "jobs":
        _validate_job_spec(spec, "spec", causes)
        if old is not None and isinstance(spec, Mapping):
            old_spec = old.get("spec") or {}
            for immutable in (
                "template",
                "selector",
                "completionMode",
                "podFailurePolicy",
                "backoffLimitPerIndex",
            ):
                if spec.get(immutable) != old_spec.get(immutable):
                    causes.append((f"spec.{immutable}", "Invalid value: field is immutable"))
    elif rt.plural == "pods":
        _validate_pod_spec(spec, "spec", causes, job=False)
    if causes:
        raise invalid(rt, name, causes)


# ----------------------------------------------------------------------------------------------
# Server-side defaulting (opt-in: FakeCluster(server_defaults=True))


def _default_container(container: Obj) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        _default_container(container)
    if spec.get("serviceAccountName") and "serviceAccount" not in spec:
        spec["serviceAccount"] = spec["serviceAccountName"]


def default_job_spec(spec: Obj) -> None:
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault(
        "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    spec.setdefault("manualSelector", None)
    if spec.get("manualSelector") is None:
        spec.pop("manualSelector")
    template = spec.setdefault("template", {})
    default_pod_spec(template.setdefault("spec", {}))


def default_cronjob_spec(spec: Obj) -> None:
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    template = spec.setdefault("jobTemplate", {}).setdefault("spec", {}).setdefault("template", {})
    default_pod_spec(template.setdefault("spec", {}))


# ----------------------------------------------------------------------------------------------
# The state


def _labels(obj: Mapping[str, Any] | None) -> dict[str, str]:
    if not obj:
        return {}
    labels = (obj.get("metadata") or {}).get("labels")
    return dict(labels) if isinstance(labels, Mapping) else {}


def _ns_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _uid_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _without_rv(obj: Mapping[str, Any]) -> Obj:
    clone = dict(obj)
    meta = dict(clone.get("metadata") or {})
    meta.pop("resourceVersion", None)
    clone["metadata"] = meta
    return clone


def condition(ctype: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = rfc3339(now)
    return {
        "type": ctype,
        "status": "True",
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def job_finished(job: Mapping[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` when the Job has that condition with status True."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _omit_zero(status: Obj) -> Obj:
    for key in ("active", "succeeded", "failed"):
        if not status.get(key):
            status.pop(key, None)
    return status


class ClusterState:
    """All objects, the watch-event history, pod logs, and the controllers' behaviour."""

    def __init__(
        self,
        *,
        auto_namespaces: bool = True,
        auto_complete: JobBehaviour | None = None,
        server_defaults: bool = False,
        validation: bool = True,
        event_history: int = 10_000,
    ) -> None:
        self.auto_namespaces = auto_namespaces
        self.auto_complete = auto_complete
        self.server_defaults = server_defaults
        self.validation = validation
        self.event_history = max(event_history, 10)
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {plural: {} for plural in RESOURCES}
        self.rv = 0
        self.events: list[WatchEvent] = []
        self.compacted_rv = 0  # watches from an older resourceVersion get 410 Gone
        self.trimmed_rv = (
            0  # the newest event dropped from the history (open watches behind it: 410)
        )
        self.watch_epoch = 0  # bumped to end the open watches (expire_watches)
        self.logs: dict[tuple[str, str, str], list[LogLine]] = {}
        self.previous_logs: dict[tuple[str, str, str], list[LogLine]] = {}
        self.applied: dict[tuple[str, str, str, str], Obj] = {}
        self.owned: dict[str, set[tuple[str, str, str]]] = {}  # owner uid -> (plural, ns, name)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.deadlines: dict[str, asyncio.TimerHandle] = {}  # job uid -> timer
        self._waiter: asyncio.Future[None] | None = None
        self.closing = False
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._create_namespace(name)

    # ------------------------------------------------------------------------------------------
    # change notification

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
        key = (_ns_of(obj), _name_of(obj))
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

    # ------------------------------------------------------------------------------------------
    # reading

    def find(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        return self.objects[plural].get((namespace or "", name))

    def require(self, plural: str, namespace: str | None, name: str) -> Obj:
        obj = self.find(plural, namespace, name)
        if obj is None:
            raise not_found(RESOURCES[plural], name)
        return obj

    def select(
        self,
        plural: str,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> list[Obj]:
        result = []
        for (ns, _), obj in self.objects[plural].items():
            if namespace is not None and ns != namespace:
                continue
            if labels is not None and not labels.matches(_labels(obj)):
                continue
            if fields is not None and not fields.matches(obj):
                continue
            result.append(obj)
        result.sort(key=lambda o: (_ns_of(o), _name_of(o)))
        return result

    def list_page(
        self,
        plural: str,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        items = self.select(plural, namespace, labels, fields)
        start_after: tuple[str, str] | None = None
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
            items = [o for o in items if (_ns_of(o), _name_of(o)) > start_after]
        token = None
        remaining = None
        if limit and len(items) > limit:
            last = items[limit - 1]
            token = (
                json.dumps({"rv": int(rv), "ns": _ns_of(last), "name": _name_of(last)})
                .encode()
                .hex()
            )
            if not labels.requirements and not fields.requirements:
                remaining = len(items) - limit
            items = items[:limit]
        return ListResult(items, rv, token, remaining)

    # ------------------------------------------------------------------------------------------
    # writing through the API

    def _ensure_namespace(self, namespace: str) -> None:
        if self.find("namespaces", None, namespace) is not None:
            return
        if not self.auto_namespaces:
            raise not_found(RESOURCES["namespaces"], namespace)
        self._create_namespace(namespace)

    def _create_namespace(self, name: str) -> Obj:
        return self.create("namespaces", None, {"metadata": {"name": name}})

    def create(
        self,
        plural: str,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        status: Obj | None = None,
    ) -> Obj:
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
        for server_owned in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            meta.pop(server_owned, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(utcnow())
        meta["generation"] = 1
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        obj["metadata"] = meta
        self._prepare_create(rt, obj, status)
        if self.validation:
            validate(rt, obj, None)
        if dry_run:
            return obj
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
                tmeta = template.setdefault("metadata", {})
                tlabels = tmeta.setdefault("labels", {})
                tlabels.update(
                    {
                        "batch.kubernetes.io/controller-uid": uid,
                        "batch.kubernetes.io/job-name": name,
                        "controller-uid": uid,
                        "job-name": name,
                    }
                )
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                labels = obj["metadata"].setdefault("labels", {})
                labels.setdefault("batch.kubernetes.io/controller-uid", uid)
                labels.setdefault("batch.kubernetes.io/job-name", name)
                labels.setdefault("controller-uid", uid)
                labels.setdefault("job-name", name)
            if self.server_defaults:
                default_job_spec(spec)
        elif rt.plural == "cronjobs" and self.server_defaults:
            default_cronjob_spec(spec)
        elif rt.plural == "pods" and self.server_defaults:
            default_pod_spec(spec)

    def update(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """PUT semantics (also the last step of every PATCH)."""
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
        if subresource == "status":
            result = copy.deepcopy(old)
            result["status"] = new.get("status") or {}
        else:
            result = new
            for kept in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
                "generation",
                "resourceVersion",
            ):
                if kept in old_meta:
                    meta[kept] = old_meta[kept]
                else:
                    meta.pop(kept, None)
            result["metadata"] = meta
            if rt.has_status:
                result["status"] = copy.deepcopy(old.get("status", {}))
        result["apiVersion"] = rt.api_version
        result["kind"] = rt.kind
        if self.server_defaults and subresource is None:
            spec = result.get("spec")
            if isinstance(spec, dict):
                {
                    "jobs": default_job_spec,
                    "cronjobs": default_cronjob_spec,
                    "pods": default_pod_spec,
                }.get(plural, lambda _: None)(spec)
        if self.validation and subresource is None:
            validate(rt, result, old)
        if _without_rv(result) == _without_rv(old):
            return old  # a no-op write changes nothing, not even the resourceVersion
        spec_changed = {k: v for k, v in result.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }
        if spec_changed:
            result["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        if dry_run:
            return result
        stored = self._commit(plural, "MODIFIED", result, old)
        meta_now = stored["metadata"]
        if meta_now.get("deletionTimestamp") and not meta_now.get("finalizers"):
            return self._finalize_delete(plural, stored)
        return stored

    def patch(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        body: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Returns the stored object and whether it was created (server-side apply only)."""
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/apply-patch+yaml":
            return self._apply(plural, namespace, name, body, subresource, field_manager, dry_run)
        old = self.require(plural, namespace, name)
        try:
            if kind == "application/merge-patch+json":
                if not isinstance(body, Mapping):
                    raise bad_request("the body of a merge patch must be a JSON object")
                patched = k8s_patch.merge_patch(old, body)
            elif kind == "application/strategic-merge-patch+json":
                if not isinstance(body, Mapping):
                    raise bad_request("the body of a strategic merge patch must be a JSON object")
                patched = k8s_patch.strategic_merge_patch(old, body)
            elif kind == "application/json-patch+json":
                if not isinstance(body, list):
                    raise bad_request("the body of a JSON patch must be a JSON array")
                patched = k8s_patch.json_patch(old, body)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown "
                    "format - accepted media types include: "
                    "application/json-patch+json, "
                    "application/merge-patch+json, "
                    "application/apply-patch+yaml",
                )
        except k8s_patch.PatchError as exc:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {exc}",
            ) from exc
        # A resourceVersion in the patch is a precondition; without it the patch always applies.
        patch_rv = None
        if isinstance(body, Mapping):
            patch_rv = (body.get("metadata") or {}).get("resourceVersion")
        meta = dict(patched.get("metadata") or {})
        if patch_rv is None:
            meta.pop("resourceVersion", None)
        patched["metadata"] = meta
        return self.update(
            plural, namespace, name, patched, subresource=subresource, dry_run=dry_run
        ), False

    def _apply(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None,
        field_manager: str | None,
        dry_run: bool,
    ) -> tuple[Obj, bool]:
        if not field_manager:
            raise bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        if not isinstance(body, Mapping):
            raise bad_request("the body of an apply patch must be an object")
        key = (plural, namespace or "", name, field_manager)
        old = self.find(plural, namespace, name)
        if old is None:
            if subresource:
                raise not_found(RESOURCES[plural], name)
            created = self.create(plural, namespace, body, dry_run=dry_run)
            if not dry_run:
                self.applied[key] = copy.deepcopy(dict(body))
            return created, True
        merged = k8s_patch.apply_patch(old, body, self.applied.get(key))
        meta = dict(merged.get("metadata") or {})
        if (body.get("metadata") or {}).get("resourceVersion") is None:
            meta.pop("resourceVersion", None)
        merged["metadata"] = meta
        result = self.update(
            plural, namespace, name, merged, subresource=subresource, dry_run=dry_run
        )
        if not dry_run:
            self.applied[key] = copy.deepcopy(dict(body))
        return result, False

    def delete(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Returns (the object, whether it is gone); a pending deletion returns the object."""
        rt = RESOURCES[plural]
        obj = self.require(plural, namespace, name)
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != _uid_of(obj):
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {_uid_of(obj)}",
                )
            want_rv = preconditions.get("resourceVersion")
            if want_rv and str(want_rv) != obj["metadata"]["resourceVersion"]:
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {want_rv}, "
                    f"ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
                )
        if dry_run:
            return obj, True
        if obj["metadata"].get("deletionTimestamp"):
            return obj, False
        if propagation is None:
            # batch/v1 Jobs orphan their pods by default (for backwards compatibility);
            # everything else cascades.
            propagation = "Orphan" if plural == "jobs" else "Background"
        if propagation not in ("Orphan", "Background", "Foreground"):
            raise bad_request(
                f'Unsupported value: "{propagation}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if plural == "namespaces":
            terminating = copy.deepcopy(obj)
            terminating["metadata"]["deletionTimestamp"] = rfc3339(utcnow())
            terminating["status"] = {"phase": "Terminating"}
            self._commit(plural, "MODIFIED", terminating, obj)
            for inner in ("cronjobs", "jobs", "pods"):
                for child in self.select(inner, name):
                    if self.find(inner, name, _name_of(child)) is not None:
                        self._delete_now(
                            inner, self.objects[inner][(name, _name_of(child))], "Background"
                        )
            gone = self._commit(plural, "DELETED", self.require("namespaces", None, name), None)
            return gone, True
        if propagation == "Foreground":
            pending = copy.deepcopy(obj)
            pending["metadata"]["deletionTimestamp"] = rfc3339(utcnow())
            pending["metadata"]["deletionGracePeriodSeconds"] = 0
            pending["metadata"]["finalizers"] = [*finalizers, "foregroundDeletion"]
            pending = self._commit(plural, "MODIFIED", pending, obj)
            self._delete_dependents(_uid_of(obj), "Background")
            released = copy.deepcopy(self.require(plural, namespace, name))
            released["metadata"]["finalizers"] = finalizers
            released = self._commit(plural, "MODIFIED", released, pending)
            if finalizers:
                return released, False
            self._finalize_delete(plural, released)
            return pending, False
        if finalizers:
            pending = copy.deepcopy(obj)
            pending["metadata"]["deletionTimestamp"] = rfc3339(utcnow())
            pending["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit(plural, "MODIFIED", pending, obj), False
        return self._delete_now(plural, obj, propagation), True

    def _delete_now(self, plural: str, obj: Obj, propagation: str) -> Obj:
        gone = self._finalize_delete(plural, obj)
        if propagation == "Orphan":
            self._orphan_dependents(_uid_of(obj))
        else:
            self._delete_dependents(_uid_of(obj), "Background")
        return gone

    def _finalize_delete(self, plural: str, obj: Obj) -> Obj:
        final = copy.deepcopy(obj)
        final["metadata"].setdefault("deletionTimestamp", rfc3339(utcnow()))
        gone = self._commit(plural, "DELETED", final, None)
        ns, name = _ns_of(obj), _name_of(obj)
        if plural == "pods":
            for key in [k for k in self.logs if k[0] == ns and k[1] == name]:
                self.logs.pop(key, None)
                self.previous_logs.pop(key, None)
        if plural == "jobs":
            handle = self.deadlines.pop(_uid_of(obj), None)
            if handle is not None:
                handle.cancel()
        for applied in [k for k in self.applied if k[:3] == (plural, ns, name)]:
            self.applied.pop(applied, None)
        return gone

    def _dependents(self, owner_uid: str) -> list[tuple[str, Obj]]:
        return [
            (plural, obj) for plural in ("jobs", "pods") for obj in self.owned_by(owner_uid, plural)
        ]

    def _delete_dependents(self, owner_uid: str, propagation: str) -> None:
        for plural, dependent in self._dependents(owner_uid):
            current = self.find(plural, _ns_of(dependent), _name_of(dependent))
            if current is not None and not current["metadata"].get("deletionTimestamp"):
                if current["metadata"].get("finalizers"):
                    self.delete(plural, _ns_of(current), _name_of(current), propagation=propagation)
                else:
                    self._delete_now(plural, current, propagation)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for plural, dependent in self._dependents(owner_uid):
            orphan = copy.deepcopy(dependent)
            refs = [
                r
                for r in orphan["metadata"].get("ownerReferences") or []
                if r.get("uid") != owner_uid
            ]
            if refs:
                orphan["metadata"]["ownerReferences"] = refs
            else:
                orphan["metadata"].pop("ownerReferences", None)
            self._commit(plural, "MODIFIED", orphan, dependent)

    def _write_status(self, plural: str, obj: Obj, status: Obj) -> Obj:
        """A controller's status write (no validation, no generation change)."""
        current = self.require(plural, _ns_of(obj), _name_of(obj))
        updated = copy.deepcopy(current)
        updated["status"] = status
        if updated == current:
            return current
        return self._commit(plural, "MODIFIED", updated, current)

    # ------------------------------------------------------------------------------------------
    # pod logs

    def append_logs(
        self,
        namespace: str,
        pod: str,
        text: str,
        *,
        container: str | None = None,
        previous: bool = False,
    ) -> None:
        obj = self.find("pods", namespace, pod)
        if obj is None:
            raise HarnessError(f"no pod {namespace}/{pod}")
        container = container or self._default_container(obj)
        store = self.previous_logs if previous else self.logs
        lines = store.setdefault((namespace, pod, container), [])
        now = utcnow()
        for piece in text.splitlines(keepends=True):
            lines.append(LogLine(now, piece))
        self.notify()

    @staticmethod
    def _default_container(pod: Obj) -> str:
        containers = (pod.get("spec") or {}).get("containers") or []
        return str(containers[0]["name"]) if containers else "main"

    def log_lines(
        self,
        namespace: str,
        pod_name: str,
        container: str | None,
        *,
        previous: bool = False,
    ) -> tuple[str, list[LogLine]]:
        pod = self.find("pods", namespace, pod_name)
        if pod is None:
            raise not_found(RESOURCES["pods"], pod_name)
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in spec.get("containers") or []]
        init_names = [c.get("name") for c in spec.get("initContainers") or []]
        if container is None:
            if len(names) == 1:
                container = str(names[0])
            else:
                raise bad_request(
                    f"a container name must be specified for pod {pod_name}, choose one of: "
                    f"[{' '.join(str(n) for n in names)}]"
                )
        elif container not in names and container not in init_names:
            raise bad_request(f"container {container} is not valid for pod {pod_name}")
        key = (namespace, pod_name, container)
        if previous:
            if key not in self.previous_logs:
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{pod_name}" not found'
                )
            return container, self.previous_logs[key]
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == container and "waiting" in (status.get("state") or {}):
                reason = status["state"]["waiting"].get("reason", "ContainerCreating")
                raise bad_request(
                    f'container "{container}" in pod "{pod_name}" is waiting to start: {reason}'
                )
        if not (pod.get("status") or {}).get("containerStatuses"):
            raise bad_request(
                f'container "{container}" in pod "{pod_name}" is waiting to start: '
                "ContainerCreating"
            )
        return container, self.logs.get(key, [])

    def container_running(self, namespace: str, pod_name: str, container: str) -> bool:
        pod = self.find("pods", namespace, pod_name)
        if pod is None:
            return False
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == container:
                return "running" in (status.get("state") or {}) or "waiting" in (
                    status.get("state") or {}
                )
        return False

    @staticmethod
    def render_logs(
        lines: Iterable[LogLine],
        *,
        tail_lines: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
        limit_bytes: int | None = None,
    ) -> bytes:
        selected = [line for line in lines if since is None or line.at >= since]
        if tail_lines is not None:
            selected = selected[-tail_lines:] if tail_lines > 0 else []
        if timestamps:
            text = "".join(f"{rfc3339_nano(line.at)} {line.text}" for line in selected)
        else:
            text = "".join(line.text for line in selected)
        data = text.encode()
        if limit_bytes is not None:
            data = data[:limit_bytes]
        return data

    # ------------------------------------------------------------------------------------------
    # the Job controller and the kubelet

    def _job_pods(self, job: Obj) -> list[Obj]:
        return self.owned_by(_uid_of(job), "pods")

    @staticmethod
    def _pod_active(pod: Obj) -> bool:
        return (pod.get("status") or {}).get("phase") in ("Pending", "Running", None)

    def active_pod(self, namespace: str, job_name: str) -> Obj | None:
        job = self.find("jobs", namespace, job_name)
        if job is None:
            return None
        active = [p for p in self._job_pods(job) if self._pod_active(p)]
        return active[-1] if active else None

    def _require_job(self, namespace: str, name: str) -> Obj:
        job = self.find("jobs", namespace, name)
        if job is None:
            raise HarnessError(f"no Job {namespace}/{name}")
        return job

    def _create_job_pod(self, job: Obj, *, running: bool) -> Obj:
        ns, job_name, uid = _ns_of(job), _name_of(job), _uid_of(job)
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        labels.setdefault("batch.kubernetes.io/job-name", job_name)
        labels.setdefault("controller-uid", uid)
        labels.setdefault("job-name", job_name)
        spec = template.get("spec") or {}
        spec["nodeName"] = FAKE_NODE
        pod_body: Obj = {
            "metadata": {
                "generateName": f"{job_name}-",
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }
        if tmeta.get("annotations"):
            pod_body["metadata"]["annotations"] = dict(tmeta["annotations"])
        saved_validation, self.validation = self.validation, False
        try:
            pod = self.create("pods", ns, pod_body, status=self._pod_status(spec, running=running))
        finally:
            self.validation = saved_validation
        return pod

    @staticmethod
    def _pod_conditions(
        now: str, *, ready: bool, done_reason: str | None, scheduled: bool = True
    ) -> list[Obj]:
        def cond(ctype: str, ok: bool, reason: str | None = None) -> Obj:
            item: Obj = {
                "type": ctype,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            }
            if reason:
                item["reason"] = reason
            return item

        return [
            cond("PodReadyToStartContainers", done_reason is None),
            cond("Initialized", True, done_reason),
            cond(
                "Ready",
                ready,
                done_reason if done_reason else (None if ready else "ContainersNotReady"),
            ),
            cond(
                "ContainersReady",
                ready,
                done_reason if done_reason else (None if ready else "ContainersNotReady"),
            ),
            cond("PodScheduled", scheduled),
        ]

    @staticmethod
    def _container_id() -> str:
        return "containerd://" + secrets.token_hex(32)

    def _pod_status(self, spec: Obj, *, running: bool) -> Obj:
        now = rfc3339(utcnow())
        statuses = []
        for container in spec.get("containers") or []:
            image = container.get("image", "")
            item: Obj = {
                "name": container.get("name"),
                "image": image,
                "imageID": "",
                "ready": running,
                "started": running,
                "restartCount": 0,
                "lastState": {},
            }
            if running:
                item["imageID"] = f"{image.split('@')[0]}@sha256:{secrets.token_hex(32)}"
                item["containerID"] = self._container_id()
                item["state"] = {"running": {"startedAt": now}}
            else:
                item["state"] = {"waiting": {"reason": "ContainerCreating"}}
            statuses.append(item)
        return {
            "phase": "Running" if running else "Pending",
            "conditions": self._pod_conditions(now, ready=running, done_reason=None),
            "hostIP": "10.0.0.10",
            "hostIPs": [{"ip": "10.0.0.10"}],
            "podIP": f"10.244.0.{secrets.randbelow(250) + 2}",
            "startTime": now,
            "qosClass": "BestEffort",
            "containerStatuses": statuses,
        }

    def _set_pod_running(self, pod: Obj) -> Obj:
        status = self._pod_status(pod.get("spec") or {}, running=True)
        status["startTime"] = (pod.get("status") or {}).get("startTime", status["startTime"])
        status["podIP"] = (pod.get("status") or {}).get("podIP", status["podIP"])
        return self._write_status("pods", pod, status)

    def _terminate_pod(
        self,
        pod: Obj,
        *,
        container: str,
        exit_code: int,
        reason: str | None,
        deadline: bool = False,
    ) -> Obj:
        now = utcnow()
        stamp = rfc3339(now)
        status = copy.deepcopy(pod.get("status") or {})
        spec_containers = {
            c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []
        }
        if container not in spec_containers and spec_containers:
            container = next(iter(spec_containers))
        phase = "Succeeded"
        new_statuses = []
        for item in status.get("containerStatuses") or []:
            name = item.get("name")
            code = exit_code if (name == container or deadline) else 0
            why = (
                reason if name == container and reason else ("Completed" if code == 0 else "Error")
            )
            started = (item.get("state") or {}).get("running", {}).get("startedAt", stamp)
            terminated: Obj = {
                "exitCode": code,
                "reason": why,
                "startedAt": started,
                "finishedAt": stamp,
                "containerID": item.get("containerID") or self._container_id(),
            }
            spec_c = spec_containers.get(name) or {}
            if code != 0 and spec_c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
                lines = self.logs.get((_ns_of(pod), _name_of(pod), str(name)), [])
                message = "".join(line.text for line in lines[-80:])[-2048:]
                if message:
                    terminated["message"] = message
            if code != 0:
                phase = "Failed"
            new_item = dict(item)
            new_item.update(
                {
                    "state": {"terminated": terminated},
                    "ready": False,
                    "started": False,
                    "containerID": terminated["containerID"],
                }
            )
            if not new_item.get("imageID"):
                new_item["imageID"] = f"{new_item.get('image', '')}@sha256:{secrets.token_hex(32)}"
            new_statuses.append(new_item)
        status["containerStatuses"] = new_statuses
        status["phase"] = phase
        done_reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        status["conditions"] = self._pod_conditions(stamp, ready=False, done_reason=done_reason)
        return self._write_status("pods", pod, status)

    def _job_status_running(self, job: Obj) -> Obj:
        status = copy.deepcopy(job.get("status") or {})
        pods = self._job_pods(job)
        now = utcnow()
        status.setdefault("startTime", rfc3339(now))
        status["active"] = sum(1 for p in pods if self._pod_active(p))
        status["ready"] = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        return _omit_zero(status)

    def start_job(
        self,
        namespace: str,
        name: str,
        *,
        logs: str = "",
        container: str | None = None,
        pending: bool = False,
    ) -> str:
        """Create (or promote to Running) the Job's pod, set the Job's running status.

        Returns the pod name.
        """
        job = self._require_job(namespace, name)
        if job_finished(job):
            raise HarnessError(f"Job {namespace}/{name} has already finished ({job_finished(job)})")
        pod = self.active_pod(namespace, name)
        if pod is None:
            pod = self._create_job_pod(job, running=not pending)
        elif not pending and (pod.get("status") or {}).get("phase") == "Pending":
            pod = self._set_pod_running(pod)
        job = self._require_job(namespace, name)
        first_start = "startTime" not in (job.get("status") or {})
        job = self._write_status("jobs", job, self._job_status_running(job))
        if first_start:
            self._arm_deadline(job)
        if logs:
            if pending:
                raise HarnessError("a pending container has no logs yet; start it first")
            self.append_logs(namespace, _name_of(pod), logs, container=container)
        return _name_of(pod)

    def _arm_deadline(self, job: Obj) -> None:
        seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
        if not seconds:
            return
        started = parse_time(job["status"]["startTime"])
        remaining = max(0.0, (started + timedelta(seconds=seconds) - utcnow()).total_seconds())
        uid = _uid_of(job)
        ns, name = _ns_of(job), _name_of(job)
        loop = asyncio.get_running_loop()
        self.deadlines[uid] = loop.call_later(remaining, self._deadline_exceeded, ns, name, uid)

    def _deadline_exceeded(self, namespace: str, name: str, uid: str) -> None:
        self.deadlines.pop(uid, None)
        job = self.find("jobs", namespace, name)
        if job is None or _uid_of(job) != uid or job_finished(job):
            return
        self._fail_job(job, "DeadlineExceeded", MSG_DEADLINE, exit_code=143)

    def _fail_job(self, job: Obj, reason: str, message: str, *, exit_code: int = 143) -> None:
        """Fail a Job whose pods may still run: terminate them (the controller deletes them)."""
        ns, name = _ns_of(job), _name_of(job)
        active = [p for p in self._job_pods(job) if self._pod_active(p)]
        for pod in active:
            container = self._default_container(pod)
            self._terminate_pod(
                pod, container=container, exit_code=exit_code, reason="Error", deadline=True
            )
        job = self.require("jobs", ns, name)
        status = copy.deepcopy(job.get("status") or {})
        status["failed"] = int(status.get("failed", 0)) + len(active)
        status["active"] = 0
        status["ready"] = 0
        status.setdefault("startTime", rfc3339(utcnow()))
        status["terminating"] = len(active)
        status["uncountedTerminatedPods"] = {}
        status["conditions"] = [
            *status.get("conditions", []),
            condition("FailureTarget", reason, message, utcnow()),
        ]
        job = self._write_status("jobs", job, _omit_zero(status))
        for pod in active:
            current = self.find("pods", ns, _name_of(pod))
            if current is not None:
                self.delete("pods", ns, _name_of(pod), propagation="Background")
        self._finish_failed(job, reason, message)

    def _finish_failed(self, job: Obj, reason: str, message: str) -> None:
        job = self.require("jobs", _ns_of(job), _name_of(job))
        status = copy.deepcopy(job.get("status") or {})
        status["terminating"] = 0
        status["ready"] = 0
        status["active"] = 0
        status["conditions"] = [
            *status.get("conditions", []),
            condition("Failed", reason, message, utcnow()),
        ]
        job = self._write_status("jobs", job, _omit_zero(status))
        self._job_done(job)

    @staticmethod
    def _match_pod_failure_policy(job: Obj, pod: Obj) -> tuple[str, int, str, int] | None:
        """(action, rule index, container, exit code) of the first matching onExitCodes rule."""
        rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for index, rule in enumerate(rules):
            on_codes = rule.get("onExitCodes")
            if not on_codes:
                continue
            values = set(on_codes.get("values") or [])
            for item in statuses:
                terminated = (item.get("state") or {}).get("terminated")
                if not terminated or terminated.get("exitCode", 0) == 0:
                    continue
                if on_codes.get("containerName") and on_codes["containerName"] != item.get("name"):
                    continue
                code = int(terminated["exitCode"])
                hit = code in values if on_codes.get("operator") == "In" else code not in values
                if hit:
                    return str(rule.get("action")), index, str(item.get("name")), code
        return None

    def finish_job(
        self,
        namespace: str,
        name: str,
        *,
        exit_code: int = 0,
        logs: str = "",
        reason: str | None = None,
        container: str | None = None,
    ) -> bool:
        """End the Job's current pod. Returns True if the Job reached Complete or Failed.

        A failed pod of a Job with retries left (``backoffLimit``, default 6) makes the controller
        create a replacement pod (running), and the Job stays active: call again to end that one.
        ``reason`` in {BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy} forces that Job
        failure; any other ``reason`` is the container's termination reason (e.g. ``OOMKilled``).
        """
        job = self._require_job(namespace, name)
        if job_finished(job):
            raise HarnessError(f"Job {namespace}/{name} has already finished ({job_finished(job)})")
        pod = self.active_pod(namespace, name)
        if pod is None:
            self.start_job(namespace, name)
            pod = self.active_pod(namespace, name)
            assert pod is not None
        elif (pod.get("status") or {}).get("phase") == "Pending":
            pod = self._set_pod_running(pod)
        container = container or self._default_container(pod)
        if logs:
            self.append_logs(namespace, _name_of(pod), logs, container=container)
        job_reason = reason if reason in JOB_FAILURE_REASONS else None
        if job_reason == "DeadlineExceeded":
            self._fail_job(
                self._require_job(namespace, name),
                "DeadlineExceeded",
                MSG_DEADLINE,
                exit_code=exit_code or 143,
            )
            return True
        container_reason = None if job_reason else reason
        if job_reason and exit_code == 0:
            exit_code = 1
        pod = self._terminate_pod(
            pod, container=container, exit_code=exit_code, reason=container_reason
        )
        job = self._require_job(namespace, name)
        now = utcnow()
        status = copy.deepcopy(job.get("status") or {})
        status["active"] = 0
        status["ready"] = 0
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        if exit_code == 0:
            status["succeeded"] = int(status.get("succeeded", 0)) + 1
            status["conditions"] = [
                *status.get("conditions", []),
                condition("SuccessCriteriaMet", "CompletionsReached", MSG_COMPLETIONS, now),
            ]
            job = self._write_status("jobs", job, _omit_zero(status))
            status = copy.deepcopy(job["status"])
            status["conditions"] = [
                *status["conditions"],
                condition("Complete", "CompletionsReached", MSG_COMPLETIONS, now),
            ]
            status["completionTime"] = rfc3339(now)
            job = self._write_status("jobs", job, _omit_zero(status))
            self._job_done(job)
            return True
        match = self._match_pod_failure_policy(job, pod)
        action = match[0] if match else None
        if job_reason == "PodFailurePolicy" or action == "FailJob":
            index, cname, code = (
                (match[1], match[2], match[3]) if match else (0, container, exit_code)
            )
            message = (
                f"Container {cname} for pod {namespace}/{_name_of(pod)} failed with exit code "
                f"{code} matching FailJob rule at index {index}"
            )
            failure = ("PodFailurePolicy", message)
        elif action == "Ignore":
            failure = None
        else:
            status["failed"] = int(status.get("failed", 0)) + 1
            limit = (job.get("spec") or {}).get("backoffLimit")
            limit = 6 if limit is None else int(limit)
            failure = (
                ("BackoffLimitExceeded", MSG_BACKOFF)
                if (job_reason == "BackoffLimitExceeded" or status["failed"] > limit)
                else None
            )
        if failure is None:
            attempts = len(self._job_pods(job))
            if attempts >= 50:  # a safety net against endless Ignore loops
                failure = ("BackoffLimitExceeded", MSG_BACKOFF)
            else:
                self._write_status("jobs", job, _omit_zero(status))
                self._create_job_pod(self._require_job(namespace, name), running=True)
                job = self._require_job(namespace, name)
                self._write_status("jobs", job, self._job_status_running(job))
                return False
        reason_text, message = failure
        status["conditions"] = [
            *status.get("conditions", []),
            condition("FailureTarget", reason_text, message, now),
        ]
        job = self._write_status("jobs", job, _omit_zero(status))
        self._finish_failed(job, reason_text, message)
        return True

    async def run_job(
        self,
        namespace: str,
        name: str,
        *,
        exit_code: int = 0,
        logs: str = "",
        duration: float = 0.0,
        reason: str | None = None,
        container: str | None = None,
    ) -> None:
        uid = _uid_of(self._require_job(namespace, name))
        while True:
            current_job = self.find("jobs", namespace, name)
            if current_job is None or _uid_of(current_job) != uid or job_finished(current_job):
                return
            pod = self.active_pod(namespace, name)
            if pod is None or (pod.get("status") or {}).get("phase") == "Pending":
                pod_name = self.start_job(namespace, name, logs=logs, container=container)
            else:
                pod_name = _name_of(pod)
                if logs:
                    self.append_logs(namespace, pod_name, logs, container=container)
            if duration > 0:
                await asyncio.sleep(duration)
            current_job = self.find("jobs", namespace, name)
            if current_job is None or _uid_of(current_job) != uid or job_finished(current_job):
                return
            current = self.active_pod(namespace, name)
            if current is None or _name_of(current) != pod_name:
                continue
            if self.finish_job(
                namespace, name, exit_code=exit_code, reason=reason, container=container
            ):
                return

    def _on_job_created(self, job: Obj) -> None:
        behaviour = self.auto_complete
        if behaviour is None or (job.get("spec") or {}).get("suspend"):
            return
        outcome = behaviour.outcome_for(job)
        if outcome is None:
            return
        delay = behaviour.delay if outcome.delay is None else outcome.delay
        self.spawn(self._auto_run(_ns_of(job), _name_of(job), _uid_of(job), outcome, delay))

    async def _auto_run(
        self, namespace: str, name: str, uid: str, outcome: JobOutcome, delay: float
    ) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        job = self.find("jobs", namespace, name)
        if job is None or _uid_of(job) != uid or job_finished(job):
            return
        await self.run_job(
            namespace,
            name,
            exit_code=outcome.exit_code,
            logs=outcome.logs,
            duration=outcome.duration,
            reason=outcome.reason,
        )

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------------------------------------
    # the CronJob controller

    def _job_done(self, job: Obj) -> None:
        """CronJob bookkeeping when one of its Jobs ends: active, lastSuccessfulTime, history."""
        owner = next(
            (
                ref
                for ref in job["metadata"].get("ownerReferences") or []
                if ref.get("kind") == "CronJob"
            ),
            None,
        )
        if owner is None:
            return
        ns = _ns_of(job)
        cronjob = self.find("cronjobs", ns, owner["name"])
        if cronjob is None or _uid_of(cronjob) != owner.get("uid"):
            return
        status = copy.deepcopy(cronjob.get("status") or {})
        active = [ref for ref in status.get("active") or [] if ref.get("uid") != _uid_of(job)]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)
        if job_finished(job) == "Complete":
            status["lastSuccessfulTime"] = job["status"].get("completionTime")
        cronjob = self._write_status("cronjobs", cronjob, status)
        self._cleanup_history(cronjob)

    def _cleanup_history(self, cronjob: Obj) -> None:
        spec = cronjob.get("spec") or {}
        uid = _uid_of(cronjob)
        owned = self.owned_by(uid, "jobs")
        for state, limit in (
            ("Complete", spec.get("successfulJobsHistoryLimit", 3)),
            ("Failed", spec.get("failedJobsHistoryLimit", 1)),
        ):
            if limit is None:
                continue
            finished = [job for job in owned if job_finished(job) == state]
            finished.sort(
                key=lambda j: (
                    j["status"].get("startTime") or "",
                    j["metadata"]["creationTimestamp"],
                )
            )
            for job in finished[: max(0, len(finished) - int(limit))]:
                if self.find("jobs", _ns_of(job), _name_of(job)) is not None:
                    self.delete("jobs", _ns_of(job), _name_of(job), propagation="Background")

    def fire_cronjob(
        self, namespace: str, cronjob_name: str, scheduled: datetime, *, honour_policy: bool = True
    ) -> str:
        cronjob = self.find("cronjobs", namespace, cronjob_name)
        if cronjob is None:
            raise HarnessError(f"no CronJob {namespace}/{cronjob_name}")
        spec = cronjob.get("spec") or {}
        if scheduled.tzinfo is None:
            scheduled = scheduled.replace(tzinfo=UTC)
        uid = _uid_of(cronjob)
        active = [job for job in self.owned_by(uid, "jobs") if not job_finished(job)]
        if honour_policy:
            if spec.get("suspend"):
                raise CronJobSkipped(f"CronJob {namespace}/{cronjob_name} is suspended")
            policy = spec.get("concurrencyPolicy") or "Allow"
            if policy == "Forbid" and active:
                raise CronJobSkipped(
                    f"CronJob {namespace}/{cronjob_name} forbids concurrent runs and "
                    f"{_name_of(active[0])} is active"
                )
            if policy == "Replace":
                for job in active:
                    self.delete("jobs", namespace, _name_of(job), propagation="Background")
        job_name = f"{cronjob_name}-{math.floor(scheduled.timestamp() / 60)}"
        if self.find("jobs", namespace, job_name) is not None:
            return job_name  # the controller treats AlreadyExists as "already scheduled"
        template = copy.deepcopy(spec.get("jobTemplate") or {})
        tmeta = template.get("metadata") or {}
        tz_name = spec.get("timeZone")
        zone = ZoneInfo(tz_name) if tz_name else UTC
        annotations = dict(tmeta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = go_rfc3339(scheduled.astimezone(zone))
        body: Obj = {
            "metadata": {
                "name": job_name,
                "namespace": namespace,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": cronjob_name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        if not body["metadata"]["labels"]:
            del body["metadata"]["labels"]
        job = self.create("jobs", namespace, body)
        cronjob = self.require("cronjobs", namespace, cronjob_name)
        status = copy.deepcopy(cronjob.get("status") or {})
        status["active"] = [
            *(status.get("active") or []),
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": job_name,
                "namespace": namespace,
                "resourceVersion": job["metadata"]["resourceVersion"],
                "uid": _uid_of(job),
            },
        ]
        status["lastScheduleTime"] = rfc3339(scheduled)
        self._write_status("cronjobs", cronjob, status)
        return job_name

    # ------------------------------------------------------------------------------------------
    # the TTL-after-finished controller

    def run_ttl_controller(self, at: datetime | None = None) -> list[str]:
        """Delete finished Jobs whose ttlSecondsAfterFinished passed at ``at`` (default: all)."""
        deleted = []
        for job in self.select("jobs", None):
            ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
            state = job_finished(job)
            if ttl is None or state is None:
                continue
            finished_at = None
            for cond in job["status"].get("conditions") or []:
                if cond.get("type") == state:
                    finished_at = parse_time(cond["lastTransitionTime"])
            if (
                at is not None
                and finished_at is not None
                and finished_at + timedelta(seconds=ttl) > at
            ):
                continue
            self.delete("jobs", _ns_of(job), _name_of(job), propagation="Background")
            deleted.append(f"{_ns_of(job)}/{_name_of(job)}")
        return deleted
