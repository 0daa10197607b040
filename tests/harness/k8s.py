"""A fake Kubernetes API server for runyard's tests and benchmarks, served over real HTTP.

``FakeCluster`` serves the emulated API (``k8s_api``) with aiohttp on a background thread with
its own event loop, so synchronous tests, pytest-asyncio tests (through ``asyncio.to_thread``)
and plain benchmark scripts can all point the real ``kubernetes`` client at it
(``client_configuration()`` or ``write_kubeconfig()``); nothing in the client is patched.

    with FakeCluster(auto_complete=JobBehaviour(delay=0.05, logs="done\\n")) as cluster:
        batch = kubernetes.client.BatchV1Api(cluster.api_client())
        batch.create_namespaced_job("org-acme", job_body)
        cluster.wait_for(lambda: job_finished(cluster.get("jobs", "org-acme", "x") or {}))

It serves what runyard does (see ``k8s_api`` for the paths and parameters, ``k8s_store`` for
the write semantics, ``k8s_state`` for the controllers it plays) and refuses the rest loudly.
Tests take the API server away with ``set_down``, inject failures with ``fail_next``, expire
watch history with ``expire_watches``, and read the traffic in ``requests``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import aiohttp.web
import kubernetes.client
import yaml

from tests.harness.k8s_api import ApiServer, status_response, truthy
from tests.harness.k8s_objects import (
    RESOURCES,
    ApiError,
    CronJobSkipped,
    HarnessError,
    job_finished,
)
from tests.harness.k8s_state import ClusterState, JobBehaviour

__all__ = [
    "CronJobSkipped",
    "FakeCluster",
    "HarnessError",
    "JobBehaviour",
    "RequestRecord",
    "job_finished",
]

T = TypeVar("T")

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_KIND_ALIASES = {
    alias: rt.plural for rt in RESOURCES.values() for alias in (rt.plural, rt.singular)
}


def _plural(kind: str) -> str:
    try:
        return _KIND_ALIASES[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; use one of {sorted(RESOURCES)}") from None


# ----------------------------------------------------------------------------------------------
# Request records (for benchmarks and assertions) and injected failures


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    status: int | None = None  # None while a watch is still streaming
    at: float = field(default_factory=time.monotonic)

    @property
    def is_write(self) -> bool:
        return self.method in _WRITE_METHODS

    @property
    def is_watch(self) -> bool:
        return truthy(self.query.get("watch"))


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    message: str


_STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# ----------------------------------------------------------------------------------------------
# Connecting


def client_configuration(url: str) -> kubernetes.client.Configuration:
    """A client configuration for an emulator at ``url`` (any token is accepted)."""
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": "Bearer fake-token"}
    return configuration


def write_kubeconfig(url: str, path: Path, *, namespace: str = "default") -> Path:
    """A kubeconfig file pointing at an emulator at ``url``, for KUBECONFIG-based code."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------
# The facade


class FakeCluster:
    """A fake Kubernetes API server on 127.0.0.1, on its own thread and event loop.

    Parameters:
        auto_complete: run every new Job automatically (see ``JobBehaviour``).
        auto_namespaces: create a missing namespace on first use (True), or answer 404
            ``namespaces "x" not found`` like a real server (False). ``default``,
            ``kube-system``, ``kube-public`` and ``kube-node-lease`` always exist.
        server_defaults: fill the API server's defaults into Jobs, CronJobs and Pods
            (``backoffLimit: 6``, ``concurrencyPolicy: Allow``, ``imagePullPolicy``, ...). Off by
            default, so stored objects equal what was written; turn it on to test that a
            reconciler's "did it change?" comparison ignores server-filled fields.
        bookmark_interval: seconds between BOOKMARK events on watches that allow them.
        event_history: watch events kept for resuming; older resourceVersions get 410 Gone.
        port: listen on this port (0: a free one).
    """

    def __init__(
        self,
        *,
        auto_complete: JobBehaviour | None = None,
        auto_namespaces: bool = True,
        server_defaults: bool = False,
        bookmark_interval: float = 1.0,
        event_history: int = 10_000,
        port: int = 0,
        call_timeout: float = 30.0,
    ) -> None:
        self._options: dict[str, Any] = {
            "auto_complete": auto_complete,
            "auto_namespaces": auto_namespaces,
            "server_defaults": server_defaults,
            "event_history": event_history,
        }
        self._bookmark_interval = bookmark_interval
        self._port = port
        self._call_timeout = call_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._state: ClusterState | None = None
        self._api: ApiServer | None = None
        self._server: asyncio.Server | None = None
        self._web_server: aiohttp.web.Server | None = None
        self._records: builtins.list[RequestRecord] = []
        self._faults: builtins.list[_Fault] = []
        self._down: Literal["refuse", "503"] | None = None
        self._startup_error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the fake cluster is already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="fake-k8s", daemon=True
        )
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the fake cluster did not start in 30 seconds")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the fake cluster failed to start") from self._startup_error

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._astop(), self._loop).result(self._call_timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._call_timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _astart(self) -> None:
        self._state = ClusterState(**self._options)
        self._api = ApiServer(self._state, bookmark_interval=self._bookmark_interval)
        await self._listen()

    async def _astop(self) -> None:
        state = self._require_state()
        state.closing = True
        state.notify()
        for handle in state.deadlines.values():
            handle.cancel()
        for task in list(state.tasks):
            task.cancel()
        await self._unlisten()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(50):  # back on the same port after set_down: it may linger
            try:
                sock.bind(("127.0.0.1", self._port))
                break
            except OSError:
                if attempt == 49 or not self._port:
                    sock.close()
                    raise
                await asyncio.sleep(0.1)
        sock.listen(256)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        self._web_server = aiohttp.web.Server(self._dispatch, handler_cancellation=True)
        self._server = await loop.create_server(self._web_server, sock=sock)

    async def _unlisten(self) -> None:
        if self._server is None:
            return
        self._server.close()
        if self._web_server is not None:
            await self._web_server.shutdown(0.05)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None
        self._web_server = None

    async def _dispatch(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.path.startswith("/_harness/"):
            return self._harness_endpoint(raw)
        record = RequestRecord(raw.method, raw.path, dict(raw.query))
        self._records.append(record)
        response: aiohttp.web.StreamResponse | None = None
        try:
            if self._down == "503":
                response = status_response(
                    ApiError(
                        503,
                        "ServiceUnavailable",
                        "the server is currently unable to handle the request",
                    )
                )
            elif (fault := self._take_fault(raw)) is not None:
                headers = {"Retry-After": "1"} if fault.status == 429 else None
                reason = _STATUS_REASONS.get(fault.status, "InternalError")
                response = status_response(ApiError(fault.status, reason, fault.message), headers)
            else:
                assert self._api is not None
                response = await self._api(raw)
            return response
        finally:
            record.status = response.status if response is not None else None

    def _harness_endpoint(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Request accounting over HTTP, for a cluster in another process (not recorded itself).

        ``GET /_harness/requests`` (``?records=1`` adds every record), ``POST /_harness/reset``.
        """
        if raw.path == "/_harness/requests" and raw.method == "GET":
            records = builtins.list(self._records)
            body: dict[str, Any] = {
                "total": len(records),
                "writes": sum(1 for r in records if r.is_write),
                "resource_version": self._require_state().rv,
            }
            if truthy(raw.query.get("records")):
                body["records"] = [
                    {"method": r.method, "path": r.path, "query": r.query, "status": r.status}
                    for r in records
                ]
            return aiohttp.web.json_response(body)
        if raw.path == "/_harness/reset" and raw.method == "POST":
            self._records.clear()
            return aiohttp.web.json_response({})
        return status_response(ApiError(404, "NotFound", "no such harness endpoint"))

    def _take_fault(self, raw: aiohttp.web.BaseRequest) -> _Fault | None:
        for fault in self._faults:
            if (
                fault.remaining > 0
                and fault.method in ("*", raw.method)
                and fault.pattern.search(raw.path_qs)
            ):
                fault.remaining -= 1
                return fault
        return None

    # -- plumbing ------------------------------------------------------------------------------

    def _require_state(self) -> ClusterState:
        if self._state is None:
            raise RuntimeError("the fake cluster is not started")
        return self._state

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the emulator's loop thread (where all state lives); return its result."""
        if self._loop is None:
            raise RuntimeError("the fake cluster is not started")
        if threading.get_ident() == self._loop_thread_id:
            return fn(*args, **kwargs)

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self._call_timeout)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop is None:
            raise RuntimeError("the fake cluster is not started")
        if threading.get_ident() == self._loop_thread_id:
            coro.close()
            raise RuntimeError("blocking harness calls cannot run on the emulator's own thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- connecting ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._loop is None:
            raise RuntimeError("the fake cluster is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def client_configuration(self) -> kubernetes.client.Configuration:
        return client_configuration(self.url)

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.client_configuration())

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        return write_kubeconfig(self.url, path, namespace=namespace)

    # -- state access --------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (as an int)."""
        return self._require_state().rv

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        plural = _plural(kind)
        obj = self._call(self._require_state().find, plural, namespace, name)
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        plural = _plural(kind)
        return copy.deepcopy(self._call(self._require_state().select, plural, namespace))

    def create(
        self, kind: str, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Create an object as another client would (emits ADDED; Jobs get auto-completed too)."""
        plural = _plural(kind)
        return copy.deepcopy(
            self._call(self._harness_api, self._require_state().create, plural, namespace, body)
        )

    def delete(
        self, kind: str, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> None:
        """Delete as a user or the TTL controller would (Background: the Job's pods go too; a
        namespace takes its contents along)."""
        self._call(
            self._harness_api,
            self._require_state().delete,
            _plural(kind),
            namespace,
            name,
            propagation=propagation,
        )

    @staticmethod
    def _harness_api(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ApiError as error:
            raise HarnessError(f"{error.code} {error.reason}: {error.message}") from error

    # -- playing the controllers and the kubelet -----------------------------------------------

    def start_job(
        self,
        namespace: str,
        name: str,
        *,
        logs: str = "",
        container: str | None = None,
        pending: bool = False,
    ) -> str:
        """Create the Job's pod (labels, ownerReferences like the Job controller), mark it Running
        (or ``pending``: ContainerCreating), set the Job's startTime/active/ready. Returns the pod
        name. ``activeDeadlineSeconds`` starts counting from here: when it passes, the Job fails
        with DeadlineExceeded and its running pod is deleted, as on a real cluster."""
        return self._call(
            self._require_state().start_job,
            namespace,
            name,
            logs=logs,
            container=container,
            pending=pending,
        )

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
        """End the Job's running pod (starting one first if needed) and update the Job like the
        Job controller (Kubernetes 1.31+): success adds ``SuccessCriteriaMet`` then ``Complete``
        (reason ``CompletionsReached``) and ``completionTime``; failure adds ``FailureTarget``
        then ``Failed`` with ``BackoffLimitExceeded``, ``PodFailurePolicy`` (a ``FailJob`` rule
        matched the exit code) or ``DeadlineExceeded``; failed Jobs get no ``completionTime``.
        With retries left (``backoffLimit``), a failed pod is replaced by a new running pod and
        False is returned: call again to end that one. ``reason`` in {BackoffLimitExceeded,
        DeadlineExceeded, PodFailurePolicy} forces that failure; any other value is the
        container's termination reason (e.g. ``OOMKilled``). Returns whether the Job finished."""
        return self._call(
            self._require_state().finish_job,
            namespace,
            name,
            exit_code=exit_code,
            logs=logs,
            reason=reason,
            container=container,
        )

    def run_job(
        self,
        namespace: str,
        name: str,
        *,
        exit_code: int = 0,
        logs: str = "",
        duration: float = 0,
        reason: str | None = None,
        container: str | None = None,
        wait: bool = True,
    ) -> None:
        """``start_job``, ``duration`` seconds of running (real time, on the emulator's loop), then
        ``finish_job`` until the Job finishes (each retry pod gets the same logs and outcome).
        ``container`` defaults to the pod's first container. ``wait=False`` returns at once."""
        state = self._require_state()
        coro = state.run_job(
            namespace,
            name,
            exit_code=exit_code,
            logs=logs,
            duration=duration,
            reason=reason,
            container=container,
        )
        if wait:
            self._run(coro)
        else:
            self._call(state.spawn, coro)

    def job_pods(self, namespace: str, job_name: str) -> builtins.list[dict[str, Any]]:
        """The Job's pods, oldest first."""
        state = self._require_state()

        def pods() -> builtins.list[dict[str, Any]]:
            job = state.find("jobs", namespace, job_name)
            return state._job_pods(job) if job is not None else []

        return copy.deepcopy(self._call(pods))

    def fire_cronjob(
        self,
        namespace: str,
        cronjob_name: str,
        scheduled_time: datetime,
        *,
        honour_policy: bool = True,
    ) -> str:
        """Create the Job the CronJob controller creates for ``scheduled_time``: named
        ``<cronjob>-<minutes since epoch>``, labels and annotations from the jobTemplate plus
        ``batch.kubernetes.io/cronjob-scheduled-timestamp`` (RFC 3339 in the CronJob's timeZone),
        a controller ownerReference to the CronJob; the CronJob's ``status.active`` and
        ``lastScheduleTime`` are updated. If that Job exists already, nothing happens (like the
        controller). With ``honour_policy``, raises ``CronJobSkipped`` where the controller would
        not create a Job (suspended; Forbid with an active Job) and deletes active Jobs for
        Replace. Naive datetimes are UTC."""
        return self._call(
            self._require_state().fire_cronjob,
            namespace,
            cronjob_name,
            scheduled_time,
            honour_policy=honour_policy,
        )

    def run_ttl_controller(self, at: datetime | None = None) -> builtins.list[str]:
        """Delete finished Jobs whose ``ttlSecondsAfterFinished`` has passed at ``at`` (default:
        every finished Job that has a TTL). Returns ``namespace/name`` of the deleted Jobs."""
        return self._call(self._require_state().run_ttl_controller, at)

    # -- failures ------------------------------------------------------------------------------

    def set_down(self, down: bool, *, mode: Literal["refuse", "503"] = "refuse") -> None:
        """Take the API server away (``refuse``: stop listening and drop open connections, so the
        client gets ``urllib3.exceptions.MaxRetryError`` caused by ``NewConnectionError``
        (connection refused), and open watch streams break with ``ProtocolError``) or make it
        answer every request with 503 ``ServiceUnavailable`` (``ApiException``, status 503).
        The port stays the same when it comes back; the state is kept."""
        if down:
            self._down = mode
            if mode == "refuse":
                self._run(self._unlisten(), self._call_timeout)
        else:
            was = self._down
            self._down = None
            if was == "refuse":
                self._run(self._listen(), self._call_timeout)

    def expire_watches(self, *, close_open: bool = True) -> None:
        """Compact the watch history, as etcd does: a watch request from any resourceVersion older
        than now gets an ERROR event with a 410 Expired Status (``kubernetes.watch.Watch`` retries
        once, then raises ``ApiException(410)``), so a tracker must list again. Lists return the
        new resourceVersion, from which watching works. ``close_open`` also ends the open watch
        streams (cleanly, like a server-side watch timeout) so their clients reconnect now."""
        self._call(self._require_state().expire_watches, close_open=close_open)

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int = 500,
        times: int = 1,
        message: str = "injected failure",
    ) -> None:
        """Answer the next ``times`` requests whose ``METHOD`` matches (``*``: any) and whose path
        with query matches the regex ``path_pattern`` with a ``status`` Status error."""
        self._faults.append(
            _Fault(method.upper(), re.compile(path_pattern), status, times, message)
        )

    # -- request accounting --------------------------------------------------------------------

    @property
    def requests(self) -> builtins.list[RequestRecord]:
        return list(self._records)

    def reset_requests(self) -> None:
        self._records.clear()

    def writes(self) -> int:
        """How many POST/PUT/PATCH/DELETE requests were served since the last reset."""
        return sum(1 for record in list(self._records) if record.is_write)

    # -- waiting -------------------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.01
    ) -> Any:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met in {timeout} seconds")
            time.sleep(interval)
