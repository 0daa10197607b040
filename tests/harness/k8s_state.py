"""The controllers the fake cluster plays on top of its store: the Job controller and the kubelet
(pods, exit codes, logs, retries, pod failure policy, active deadlines), the CronJob controller
(``fire_cronjob``: one Job per scheduled time, concurrency policy, history limits) and the
TTL-after-finished controller, plus automatic completion of new Jobs (``JobBehaviour``).

Like the store, everything runs on the emulator's event-loop thread (``k8s.FakeCluster`` calls
in from other threads); ``run_job`` and the automatic runs are the only coroutines.
"""

from __future__ import annotations

import asyncio
import copy
import math
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.harness.k8s_objects import (
    CronJobSkipped,
    HarnessError,
    Obj,
    go_rfc3339,
    job_finished,
    name_of,
    ns_of,
    parse_time,
    rfc3339,
    uid_of,
    utcnow,
)
from tests.harness.k8s_store import Store, default_container
from tests.harness.k8s_suspend import refuse_if_suspended, resumed, wait_resumed

JOB_FAILURE_REASONS = frozenset({"BackoffLimitExceeded", "DeadlineExceeded", "PodFailurePolicy"})
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MSG_COMPLETIONS = "Reached expected number of succeeded pods"
MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
FAKE_NODE = "fake-node"


@dataclass(frozen=True)
class JobBehaviour:
    """Automatic completion of every Job created in the fake cluster (the benchmarks' load).

    Each new Job (created through the API, or by ``fire_cronjob``) is run ``delay`` seconds after
    its creation, runs for ``duration`` seconds, and ends with ``exit_code`` / ``reason`` after
    writing ``logs``. Suspended Jobs are never run.
    """

    delay: float = 0.0
    exit_code: int = 0
    logs: str = ""
    duration: float = 0.0
    reason: str | None = None


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


def _omit_zero(status: Obj) -> Obj:
    for key in ("active", "succeeded", "failed"):
        if not status.get(key):
            status.pop(key, None)
    return status


class ClusterState(Store):
    """The store with the controllers acting on it."""

    def __init__(
        self,
        *,
        auto_namespaces: bool = True,
        auto_complete: JobBehaviour | None = None,
        server_defaults: bool = False,
        event_history: int = 10_000,
    ) -> None:
        self.auto_complete = auto_complete
        self.tasks: set[asyncio.Task[Any]] = set()
        self.deadlines: dict[str, asyncio.TimerHandle] = {}  # job uid -> timer
        super().__init__(
            auto_namespaces=auto_namespaces,
            server_defaults=server_defaults,
            event_history=event_history,
        )

    def _on_removed(self, plural: str, obj: Obj) -> None:
        if plural == "jobs":
            handle = self.deadlines.pop(uid_of(obj), None)
            if handle is not None:
                handle.cancel()

    # ------------------------------------------------------------------------------------------
    # the Job controller and the kubelet

    def _job_pods(self, job: Obj) -> list[Obj]:
        return self.owned_by(uid_of(job), "pods")

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
        refuse_if_suspended(job)
        ns, job_name, uid = ns_of(job), name_of(job), uid_of(job)
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
        # The controller's own pod: created as the Job's template says, without the checks
        # of a client's write.
        status = self._pod_status(spec, running=running)
        return self.create("pods", ns, pod_body, status=status, check=False)

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
        return self.write_status("pods", pod, status)

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
                lines = self.logs.get((ns_of(pod), name_of(pod), str(name)), [])
                message = "".join(lines[-80:])[-2048:]
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
        return self.write_status("pods", pod, status)

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
        job = self.write_status("jobs", job, self._job_status_running(job))
        if first_start:
            self._arm_deadline(job)
        if logs:
            if pending:
                raise HarnessError("a pending container has no logs yet; start it first")
            self.append_logs(namespace, name_of(pod), logs, container=container)
        return name_of(pod)

    def _arm_deadline(self, job: Obj) -> None:
        seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
        if not seconds:
            return
        started = parse_time(job["status"]["startTime"])
        remaining = max(0.0, (started + timedelta(seconds=seconds) - utcnow()).total_seconds())
        uid = uid_of(job)
        ns, name = ns_of(job), name_of(job)
        loop = asyncio.get_running_loop()
        self.deadlines[uid] = loop.call_later(remaining, self._deadline_exceeded, ns, name, uid)

    def _deadline_exceeded(self, namespace: str, name: str, uid: str) -> None:
        self.deadlines.pop(uid, None)
        job = self.find("jobs", namespace, name)
        if job is None or uid_of(job) != uid or job_finished(job):
            return
        self._fail_job(job, "DeadlineExceeded", MSG_DEADLINE, exit_code=143)

    def _fail_job(self, job: Obj, reason: str, message: str, *, exit_code: int = 143) -> None:
        """Fail a Job whose pods may still run: terminate them (the controller deletes them)."""
        ns, name = ns_of(job), name_of(job)
        active = [p for p in self._job_pods(job) if self._pod_active(p)]
        for pod in active:
            container = default_container(pod)
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
        job = self.write_status("jobs", job, _omit_zero(status))
        for pod in active:
            current = self.find("pods", ns, name_of(pod))
            if current is not None:
                self.delete("pods", ns, name_of(pod), propagation="Background")
        self._finish_failed(job, reason, message)

    def _finish_failed(self, job: Obj, reason: str, message: str) -> None:
        job = self.require("jobs", ns_of(job), name_of(job))
        status = copy.deepcopy(job.get("status") or {})
        status["terminating"] = 0
        status["ready"] = 0
        status["active"] = 0
        status["conditions"] = [
            *status.get("conditions", []),
            condition("Failed", reason, message, utcnow()),
        ]
        job = self.write_status("jobs", job, _omit_zero(status))
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
        container = container or default_container(pod)
        if logs:
            self.append_logs(namespace, name_of(pod), logs, container=container)
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
            job = self.write_status("jobs", job, _omit_zero(status))
            status = copy.deepcopy(job["status"])
            status["conditions"] = [
                *status["conditions"],
                condition("Complete", "CompletionsReached", MSG_COMPLETIONS, now),
            ]
            status["completionTime"] = rfc3339(now)
            job = self.write_status("jobs", job, _omit_zero(status))
            self._job_done(job)
            return True
        match = self._match_pod_failure_policy(job, pod)
        action = match[0] if match else None
        if job_reason == "PodFailurePolicy" or action == "FailJob":
            index, cname, code = (
                (match[1], match[2], match[3]) if match else (0, container, exit_code)
            )
            message = (
                f"Container {cname} for pod {namespace}/{name_of(pod)} failed with exit code "
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
                self.write_status("jobs", job, _omit_zero(status))
                self._create_job_pod(self._require_job(namespace, name), running=True)
                job = self._require_job(namespace, name)
                self.write_status("jobs", job, self._job_status_running(job))
                return False
        reason_text, message = failure
        status["conditions"] = [
            *status.get("conditions", []),
            condition("FailureTarget", reason_text, message, now),
        ]
        job = self.write_status("jobs", job, _omit_zero(status))
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
        uid = uid_of(self._require_job(namespace, name))
        await wait_resumed(lambda: self.find("jobs", namespace, name), uid)
        while True:
            current_job = self.find("jobs", namespace, name)
            if current_job is None or uid_of(current_job) != uid or job_finished(current_job):
                return
            pod = self.active_pod(namespace, name)
            if pod is None or (pod.get("status") or {}).get("phase") == "Pending":
                pod_name = self.start_job(namespace, name, logs=logs, container=container)
            else:
                pod_name = name_of(pod)
                if logs:
                    self.append_logs(namespace, pod_name, logs, container=container)
            if duration > 0:
                await asyncio.sleep(duration)
            current_job = self.find("jobs", namespace, name)
            if current_job is None or uid_of(current_job) != uid or job_finished(current_job):
                return
            current = self.active_pod(namespace, name)
            if current is None or name_of(current) != pod_name:
                continue
            if self.finish_job(
                namespace, name, exit_code=exit_code, reason=reason, container=container
            ):
                return

    def update(self, plural: str, namespace: str | None, name: str, body: Any) -> Obj:
        before = self.find(plural, namespace, name) if plural == "jobs" else None
        after = super().update(plural, namespace, name, body)
        if resumed(before, after):
            self._on_job_created(after)  # resumed: it runs like a Job created running
        return after

    def _on_job_created(self, job: Obj) -> None:
        behaviour = self.auto_complete
        if behaviour is None or (job.get("spec") or {}).get("suspend"):
            return
        self.spawn(self._auto_run(ns_of(job), name_of(job), uid_of(job), behaviour))

    async def _auto_run(self, namespace: str, name: str, uid: str, behaviour: JobBehaviour) -> None:
        if behaviour.delay > 0:
            await asyncio.sleep(behaviour.delay)
        job = self.find("jobs", namespace, name)
        if job is None or uid_of(job) != uid or job_finished(job):
            return
        await self.run_job(
            namespace,
            name,
            exit_code=behaviour.exit_code,
            logs=behaviour.logs,
            duration=behaviour.duration,
            reason=behaviour.reason,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
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
        ns = ns_of(job)
        cronjob = self.find("cronjobs", ns, owner["name"])
        if cronjob is None or uid_of(cronjob) != owner.get("uid"):
            return
        status = copy.deepcopy(cronjob.get("status") or {})
        active = [ref for ref in status.get("active") or [] if ref.get("uid") != uid_of(job)]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)
        if job_finished(job) == "Complete":
            status["lastSuccessfulTime"] = job["status"].get("completionTime")
        cronjob = self.write_status("cronjobs", cronjob, status)
        self._cleanup_history(cronjob)

    def _cleanup_history(self, cronjob: Obj) -> None:
        spec = cronjob.get("spec") or {}
        uid = uid_of(cronjob)
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
                if self.find("jobs", ns_of(job), name_of(job)) is not None:
                    self.delete("jobs", ns_of(job), name_of(job), propagation="Background")

    def fire_cronjob(
        self, namespace: str, cronjob_name: str, scheduled: datetime, *, honour_policy: bool = True
    ) -> str:
        cronjob = self.find("cronjobs", namespace, cronjob_name)
        if cronjob is None:
            raise HarnessError(f"no CronJob {namespace}/{cronjob_name}")
        spec = cronjob.get("spec") or {}
        if scheduled.tzinfo is None:
            scheduled = scheduled.replace(tzinfo=UTC)
        uid = uid_of(cronjob)
        active = [job for job in self.owned_by(uid, "jobs") if not job_finished(job)]
        if honour_policy:
            if spec.get("suspend"):
                raise CronJobSkipped(f"CronJob {namespace}/{cronjob_name} is suspended")
            policy = spec.get("concurrencyPolicy") or "Allow"
            if policy == "Forbid" and active:
                raise CronJobSkipped(
                    f"CronJob {namespace}/{cronjob_name} forbids concurrent runs and "
                    f"{name_of(active[0])} is active"
                )
            if policy == "Replace":
                for job in active:
                    self.delete("jobs", namespace, name_of(job), propagation="Background")
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
                "uid": uid_of(job),
            },
        ]
        status["lastScheduleTime"] = rfc3339(scheduled)
        self.write_status("cronjobs", cronjob, status)
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
            self.delete("jobs", ns_of(job), name_of(job), propagation="Background")
            deleted.append(f"{ns_of(job)}/{name_of(job)}")
        return deleted
