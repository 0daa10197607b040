"""The gateway to the Kubernetes API, and the factory of the Kubernetes executor.

The only module that imports ``kubernetes``. ``KubeGateway`` wraps the official sync client
and turns its failures into runyard errors: no answer is ``ClusterUnavailable`` (503), an
answer that is not a success is ``ClusterError`` (502) quoting what the API server said.
The logic lives in modules that need no client: ``executor`` (runs as Jobs, drift repair),
``render`` (manifests), ``sync`` (CronJobs kept in step with the database), ``live`` (the
live jobs API) and ``tracking`` (how runs end).

Namespaces are not created: an operator creates each org's namespace and binds runyard's
Role there (docs/kubernetes.md), so runyard needs no cluster-wide write permission.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from functools import lru_cache
from typing import Any

import kubernetes.client
import kubernetes.config
import msgspec
import urllib3
from kubernetes.client.exceptions import ApiException

from app.errors import ClusterError, ClusterUnavailable
from app.executors.k8s.executor import KubernetesExecutor
from app.executors.k8s.render import Manifests, Templates, clone, launcher_from_settings
from app.executors.k8s.status import WatchExpired
from app.executors.k8s.sync import ClusterConflict
from app.ports import CommandParser
from app.settings import Settings, SettingsError
from app.store import Store
from app.store.environments import EnvironmentRepo
from app.types import Obj

log = logging.getLogger("runyard.kubernetes")

__all__ = [
    "KubeGateway",
    "KubernetesExecutor",
    "RawStream",
    "build_kubernetes_executor",
    "build_manifests",
    "load_configuration",
    "round_trip",
    "shape_overrides",
]

# (connect, read) seconds for every API call, and one retry of a failed connection: an
# unreachable API server must not hold a user's request for minutes.
REQUEST_TIMEOUT = (3.0, 30.0)
CONNECT_RETRIES = 1
LIST_PAGE = 500  # Jobs per page of the run tracker's full lists
STREAM_CHUNK = 64 * 1024
TRACKER_CONNECTIONS = 64


# --- configuration and models ------------------------------------------------------------


def load_configuration(env: dict[str, str] | None = None) -> kubernetes.client.Configuration:
    """KUBECONFIG when it is set, else the in-cluster service account, else ~/.kube/config."""
    env = dict(os.environ) if env is None else env
    configuration = kubernetes.client.Configuration()
    try:
        if not env.get("KUBECONFIG") and env.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=env.get("KUBECONFIG") or None, client_configuration=configuration
            )
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise SettingsError(
            "RUNYARD_EXECUTOR=kubernetes needs a cluster configuration: run runyard in a pod "
            f"(in-cluster service account) or set KUBECONFIG. The client said: {exc}"
        ) from None
    configuration.retries = CONNECT_RETRIES
    return configuration


_models = kubernetes.client.ApiClient(kubernetes.client.Configuration())


class _Body:
    """What ``ApiClient.deserialize`` reads: a response with JSON ``data``."""

    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj)


def round_trip(obj: Any, model: str) -> Any:
    """``obj`` through the client's model (``V1Job``, ``list[V1Volume]``) and back: fields the
    API does not know are dropped and values take the API's types, as the server stores them."""
    return _models.sanitize_for_serialization(_models.deserialize(_Body(obj), model))


_OVERRIDE_MODELS = {
    "volumes": "list[V1Volume]",
    "volume_mounts": "list[V1VolumeMount]",
    "tolerations": "list[V1Toleration]",
}


def shape_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A project's template overrides with their free-form parts (a volume's source, a
    toleration) shaped by the client's models. runyard renders everything else in that shape
    already (tests/unit/test_k8s_render.py); only user-supplied structures need it, and
    rendering whole objects through the models costs ~30 ms each (every model instance
    builds a client Configuration)."""
    return clone(_shape(json.dumps(overrides, sort_keys=True)))


@lru_cache(maxsize=512)  # the jobs of one project share their overrides
def _shape(text: str) -> dict[str, Any]:
    overrides: dict[str, Any] = json.loads(text)
    for key, model in _OVERRIDE_MODELS.items():
        if isinstance(overrides.get(key), list):
            overrides[key] = round_trip(overrides[key], model)
    return overrides


# --- the gateway ---------------------------------------------------------------------------


class KubeGateway:
    """Plain-dict calls to the API server (``_preload_content=False``: the JSON is read as
    it came, without building model objects only to turn them back into dicts)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.api_client = api_client
        self._batch = kubernetes.client.BatchV1Api(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._host = api_client.configuration.host

    def close(self) -> None:
        self.api_client.close()

    def _call(
        self,
        action: str,
        fn: Callable[..., Any],
        *args: Any,
        text: bool = False,
        absent: frozenset[int] = frozenset({404}),
        **kwargs: Any,
    ) -> Any:
        """The decoded JSON (or ``text``) answer; None when the status is one of ``absent``
        (404: no such object). Raises runyard's errors for anything else."""
        try:
            response = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            if exc.status in absent and not _is_namespace_missing(exc):
                return None
            raise self._refused(action, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnavailable(
                f"The Kubernetes API at {self._host} could not be reached to {action} "
                f"({_why(exc)})."
            ) from None
        data = response.data
        response.release_conn()
        if text:
            return data.decode("utf-8", "replace")
        return msgspec.json.decode(data) if data else {}  # several times faster than json

    def _refused(self, action: str, exc: ApiException) -> ClusterError | ClusterUnavailable:
        if not exc.status:  # the client's own failure before an answer (TLS)
            return ClusterUnavailable(
                f"The Kubernetes API at {self._host} could not be reached to {action} "
                f"({exc.reason})."
            )
        reason, message = str(exc.reason or ""), ""
        try:
            status = json.loads(exc.body or b"{}")
            reason, message = status.get("reason") or reason, status.get("message") or ""
        except (ValueError, AttributeError):
            message = (exc.body or b"")[:300].decode("utf-8", "replace")
        said = f"{exc.status} {reason}" + (f": {message}" if message else "")
        if exc.status in (503, 504):  # the API server answered that it cannot serve now
            return ClusterUnavailable(f"The Kubernetes API could not {action}: {said}.")
        hint = ""
        if exc.status in (401, 403):
            hint = (
                " Check runyard's service account and its RoleBinding in that namespace"
                " (docs/kubernetes.md)."
            )
        elif _is_namespace_missing(exc):
            hint = (
                " runyard does not create namespaces: create it and bind runyard's Role there"
                " (docs/kubernetes.md)."
            )
        error_type = ClusterConflict if exc.status == 409 else ClusterError
        return error_type(f"The Kubernetes API refused to {action}: {said}.{hint}")

    def _object(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj | None:
        result = self._call(action, fn, *args, **kwargs)
        return result if isinstance(result, dict) else None

    def _items(
        self, action: str, fn: Callable[..., Any], namespace: str, selector: str
    ) -> list[Obj]:
        result = self._object(action, fn, namespace, label_selector=selector)
        return list((result or {}).get("items") or [])

    # -- CronJobs (k8s_sync.Cluster) ---------------------------------------------------------

    def list_cronjobs(self, namespace: str, selector: str) -> list[Obj]:
        action = f"list CronJobs in namespace {namespace}"
        return self._items(action, self._batch.list_namespaced_cron_job, namespace, selector)

    def read_cronjob(self, namespace: str, name: str) -> Obj | None:
        action = f"read CronJob {namespace}/{name}"
        return self._object(action, self._batch.read_namespaced_cron_job, name, namespace)

    def create_cronjob(self, namespace: str, body: Obj) -> Obj:
        action = f"create CronJob {namespace}/{body['metadata']['name']}"
        return self._object(action, self._batch.create_namespaced_cron_job, namespace, body) or {}

    def replace_cronjob(self, namespace: str, name: str, body: Obj) -> Obj:
        action = f"update CronJob {namespace}/{name}"
        fn = self._batch.replace_namespaced_cron_job
        return self._object(action, fn, name, namespace, body) or {}

    def delete_cronjob(self, namespace: str, name: str, uid: str | None = None) -> None:
        # The uid precondition: never delete a same-named CronJob created since it was read.
        options: Obj = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        action = f"delete CronJob {namespace}/{name}"
        self._call(action, self._batch.delete_namespaced_cron_job, name, namespace, body=options)

    # -- Jobs and pods (k8s_live.JobSource) --------------------------------------------------

    def list_jobs(self, namespace: str, selector: str) -> list[Obj]:
        action = f"list Jobs in namespace {namespace}"
        return self._items(action, self._batch.list_namespaced_job, namespace, selector)

    def read_job(self, namespace: str, name: str) -> Obj | None:
        action = f"read Job {namespace}/{name}"
        return self._object(action, self._batch.read_namespaced_job, name, namespace)

    def create_job(self, namespace: str, body: Obj) -> Obj:
        action = f"create Job {namespace}/{body['metadata']['name']}"
        return self._object(action, self._batch.create_namespaced_job, namespace, body) or {}

    def resume_job(self, namespace: str, name: str) -> bool:
        """Let a suspended Job run (spec.suspend=false); False when there is no such Job."""
        action, fn = f"resume Job {namespace}/{name}", self._batch.patch_namespaced_job
        return self._call(action, fn, name, namespace, {"spec": {"suspend": False}}) is not None

    def delete_job(self, namespace: str, name: str) -> None:
        # Background propagation: the Job goes now and the garbage collector removes its
        # pods (the batch/v1 default would orphan them, leaving dbt running).
        action, fn = f"delete Job {namespace}/{name}", self._batch.delete_namespaced_job
        self._call(action, fn, name, namespace, propagation_policy="Background")

    def list_pods(self, namespace: str, selector: str) -> list[Obj]:
        action = f"list pods in namespace {namespace}"
        return self._items(action, self._core.list_namespaced_pod, namespace, selector)

    def pod_log(self, namespace: str, pod: str, container: str, tail: int | None) -> str | None:
        extra: Obj = {"container": container}
        if tail is not None:
            extra["tail_lines"] = tail
        # 400: the container is waiting to start (ContainerCreating, pulling its image).
        text = self._call(
            f"read the log of pod {namespace}/{pod}",
            self._core.read_namespaced_pod_log,
            pod,
            namespace,
            text=True,
            absent=frozenset({400, 404}),
            **extra,
        )
        return text if isinstance(text, str) else None

    # -- the run tracker (k8s_tracker.TrackerSource) ----------------------------------------

    def list_all_jobs(self, namespace: str | None, selector: str) -> tuple[list[Obj], str]:
        """Every matching Job (in pages) and the list's resourceVersion, from which a watch
        sees every later change; in every namespace when ``namespace`` is None. A page
        token that expired mid-way (410) restarts the list."""
        if namespace is None:
            action = "list Jobs in all namespaces"
            fn: Callable[..., Any] = self._batch.list_job_for_all_namespaces
            args: tuple[str, ...] = ()
        else:
            action = f"list Jobs in namespace {namespace}"
            fn, args = self._batch.list_namespaced_job, (namespace,)
        for _ in range(3):
            items: list[Obj] = []
            version, token = "", None
            while True:
                extra: Obj = {"_continue": token} if token else {}
                page = self._call(
                    action,
                    fn,
                    *args,
                    label_selector=selector,
                    limit=LIST_PAGE,
                    absent=frozenset({410}),
                    **extra,
                )
                if not isinstance(page, dict):
                    break  # 410: the token expired; list again from the start
                items.extend(page.get("items") or [])
                meta = page.get("metadata") or {}
                version = version or str(meta.get("resourceVersion") or "")
                token = meta.get("continue")
                if not token:
                    return items, version
        raise ClusterError(f"The Kubernetes API could not {action}: the list kept expiring.")

    def can_watch_all_namespaces(self, selector: str) -> bool:
        """Whether runyard may list (and so, with its ClusterRole, watch) Jobs in every
        namespace: one list of at most one Job; False on 401/403."""
        try:
            self._batch.list_job_for_all_namespaces(
                label_selector=selector,
                limit=1,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            ).release_conn()
        except ApiException as exc:
            if exc.status in (401, 403):
                return False
            raise self._refused("list Jobs in all namespaces", exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable("list Jobs in all namespaces", exc) from None
        return True

    def watch_jobs(
        self,
        namespace: str | None,
        selector: str,
        resource_version: str,
        timeout_seconds: int,
        idle_seconds: float | None = None,
    ) -> RawStream:
        """A watch of Jobs from ``resource_version`` (every namespace when ``namespace`` is
        None), as raw JSON lines (the caller parses them: the client's models cost
        milliseconds per event). With ``idle_seconds``, the stream ends quietly once nothing
        came for that long (a pool visiting many namespaces in turn). Raises WatchExpired."""
        if namespace is None:
            action = "watch Jobs in all namespaces"
            fn: Callable[..., Any] = self._batch.list_job_for_all_namespaces
            args: tuple[str, ...] = ()
        else:
            action = f"watch Jobs in namespace {namespace}"
            fn, args = self._batch.list_namespaced_job, (namespace,)
        read = idle_seconds if idle_seconds is not None else timeout_seconds + REQUEST_TIMEOUT[1]
        try:
            response = fn(
                *args,
                label_selector=selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=(REQUEST_TIMEOUT[0], read),
            )
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(f"{action}: {exc.reason}") from None
            raise self._refused(action, exc) from None
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            if idle_seconds is None:
                raise
            return RawStream(None, lambda exc: self._unreachable(action, exc))  # nothing new
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(action, exc) from None
        return RawStream(
            response, lambda exc: self._unreachable(action, exc), idle=idle_seconds is not None
        )

    def pod_log_chunks(self, namespace: str, pod: str, container: str) -> RawStream | None:
        """The container's whole log as a stream (the caller keeps what fits); None while it
        has none (400: waiting to start; 404: the pod is gone)."""
        action = f"read the log of pod {namespace}/{pod}"
        try:
            response = self._core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status in (400, 404) and not _is_namespace_missing(exc):
                return None
            raise self._refused(action, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(action, exc) from None
        return RawStream(response, lambda exc: self._unreachable(action, exc))

    def _unreachable(self, action: str, exc: BaseException) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"The Kubernetes API at {self._host} could not be reached to {action} ({_why(exc)})."
        )


class RawStream:
    """A streamed response body, read chunk by chunk as it arrives. ``close()`` may be called
    from another thread: it shuts the socket down, which ends a read blocked on it. With
    ``idle``, a read that times out ends the stream instead of failing it."""

    def __init__(
        self, response: Any, failed: Callable[[BaseException], Exception], *, idle: bool = False
    ) -> None:
        self._response = response
        self._failed = failed
        self._closed = False
        self._idle = idle

    def chunks(self) -> Iterator[bytes]:
        if self._response is None:
            return
        try:
            yield from self._response.stream(STREAM_CHUNK, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._idle and _timed_out(exc):
                # The connection is mid-response: it cannot be reused.
                self.close()
                return
            if not self._closed:
                raise self._failed(exc) from None
        finally:
            with suppress(Exception):
                self._response.release_conn()

    def close(self) -> None:
        self._closed = True
        if self._response is None:
            return
        with suppress(Exception):
            self._response.shutdown()
        with suppress(Exception):
            self._response.close()


def _timed_out(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            return True
        seen = seen.__context__ or getattr(seen, "reason", None)
    return False


def _is_namespace_missing(exc: ApiException) -> bool:
    try:
        details = json.loads(exc.body or b"{}").get("details") or {}
    except (ValueError, AttributeError):
        return False
    return exc.status == 404 and details.get("kind") == "namespaces"


def _why(exc: BaseException) -> str:
    """A short reason from urllib3's nested errors (no object reprs, no stack)."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.rsplit(": ", 1)[-1][:200] or type(reason).__name__


# --- the executor --------------------------------------------------------------------------


def build_manifests(
    settings: Settings,
    commands: CommandParser,
    store: Store | None = None,
    environments: EnvironmentRepo | None = None,
) -> Manifests:
    """What runyard applies, rendered with the client's models where users supply shapes.
    With the store, one-off dbt Jobs carry the artifact launcher when it is configured.
    CronJobs render in their job's environment (the store's, or ``environments``)."""
    templates = Templates.load(settings.k8s_templates)
    launcher = launcher_from_settings(settings, store)
    repo = environments or (store.environments if store is not None else None)
    return Manifests(
        templates,
        commands,
        settings.namespace_for,
        shape_overrides,
        launcher,
        (lambda project, job: repo.of_job(project.id, job.environment_id)) if repo else None,
    )


def build_kubernetes_executor(
    store: Store, settings: Settings, commands: CommandParser
) -> KubernetesExecutor:
    """The executor on the cluster of the kubeconfig (or the in-cluster service account),
    without its Job tracker: the container adds it (``executor.track_runs``) once the run
    service, through which the tracker records the runs of CronJobs, exists."""
    configuration = load_configuration()
    # The tracker holds one connection per watched namespace and reads logs in parallel:
    # room for those beside the API's requests (urllib3 would otherwise open and discard).
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize, TRACKER_CONNECTIONS
    )
    gateway = KubeGateway(kubernetes.client.ApiClient(configuration))
    return KubernetesExecutor(store, settings, gateway, build_manifests(settings, commands, store))
