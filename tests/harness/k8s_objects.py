"""What the fake cluster's objects are: resource types, API errors, times, validation, defaults.

Plain data and pure functions, shared by the store (``k8s_store``), the controllers
(``k8s_state``) and the HTTP layer (``k8s``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Obj = dict[str, Any]


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


# What runyard reads and writes (CronJobs, Jobs, their pods and logs) and the namespaces they
# live in. Nothing else is served.
RESOURCES: dict[str, ResourceType] = {
    "cronjobs": ResourceType("cronjobs", "CronJob", "batch", "v1", True, "cronjob"),
    "jobs": ResourceType("jobs", "Job", "batch", "v1", True, "job"),
    "pods": ResourceType("pods", "Pod", "", "v1", True, "pod"),
    "namespaces": ResourceType("namespaces", "Namespace", "", "v1", False, "namespace"),
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


def no_such_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


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
# Reading objects


def labels_of(obj: Mapping[str, Any] | None) -> dict[str, str]:
    if not obj:
        return {}
    labels = (obj.get("metadata") or {}).get("labels")
    return dict(labels) if isinstance(labels, Mapping) else {}


def ns_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def job_finished(job: Mapping[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` when the Job has that condition with status True."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


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
