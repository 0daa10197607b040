"""A fake Kubernetes API server for runyard's tests and benchmarks, served over real HTTP.

``FakeCluster`` runs a kmock-based emulator (``kmock.KubernetesScaffold`` subclass) on a
background thread with its own event loop, so synchronous tests, pytest-asyncio tests and plain
benchmark scripts can all point the real ``kubernetes`` client at it (``client_configuration()``
or ``write_kubeconfig()``); nothing in the client is patched.

    with FakeCluster(auto_complete=JobBehaviour(delay=0.05, logs="done\\n")) as cluster:
        batch = kubernetes.client.BatchV1Api(cluster.api_client())
        batch.create_namespaced_job("org-acme", job_body)
        cluster.wait_for(lambda: job_finished(cluster.get("jobs", "org-acme", "x") or {}))

What it serves: ``batch/v1`` cronjobs and jobs (plus their ``/status``), ``v1`` pods (plus
``/status`` and ``/log``) and ``v1`` namespaces; create/get/list/watch/replace/patch (merge,
strategic-merge, JSON patch, server-side apply)/delete/deletecollection; discovery for
``kubernetes.dynamic.DynamicClient``. Semantics follow the real API server where runyard can
notice: see the README-like notes in the docstrings of ``k8s_state``, ``k8s_patch`` and
``k8s_selectors`` and in the methods below.

Notes for the kmock DSL (``cluster.emulator``): reactions added there, e.g.
``cluster.emulator['post /apis/batch/v1/namespaces/x/jobs'] << 500``, take precedence over the
emulated API. The emulator keeps only the request being served in kmock's request history (so
that dispatch stays O(1) under load): use ``cluster.requests`` for assertions on traffic, and
``fail_next`` for "fail the next N matching requests".
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import json
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import aiohttp.web
import kmock
import kubernetes.client
import yaml
from kmock._internal.rendering import ReactionMismatchError  # not re-exported by kmock

from tests.harness.k8s_selectors import FieldSelector, LabelSelector, SelectorError
from tests.harness.k8s_state import (
    RESOURCES,
    ApiError,
    ClusterState,
    CronJobSkipped,
    HarnessError,
    JobBehaviour,
    JobOutcome,
    Obj,
    ResourceType,
    WatchEvent,
    bad_request,
    encode_event,
    job_finished,
    parse_time,
    utcnow,
)

__all__ = [
    "CronJobSkipped",
    "FakeCluster",
    "HarnessError",
    "JobBehaviour",
    "JobOutcome",
    "RequestRecord",
    "job_finished",
]

T = TypeVar("T")

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_KIND_ALIASES: dict[str, str] = {}
for _rt in RESOURCES.values():
    for _alias in (_rt.plural, _rt.singular, _rt.kind.lower(), *_rt.short_names):
        _KIND_ALIASES[_alias] = _rt.plural


def _plural(kind: str) -> str:
    try:
        return _KIND_ALIASES[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; use one of {sorted(RESOURCES)}") from None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


# ----------------------------------------------------------------------------------------------
# Request records (for benchmarks and assertions)


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    status: int | None = None  # None while a watch or a followed log is still streaming
    at: float = field(default_factory=time.monotonic)

    @property
    def is_write(self) -> bool:
        return self.method in _WRITE_METHODS

    @property
    def is_watch(self) -> bool:
        return _truthy(self.query.get("watch"))


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


def _status_response(
    error: ApiError, headers: dict[str, str] | None = None
) -> aiohttp.web.Response:
    return aiohttp.web.json_response(error.status(), status=error.code, headers=headers)


# ----------------------------------------------------------------------------------------------
# URL routing


@dataclass(frozen=True)
class _Route:
    kind: Literal["resource", "discovery", "other"]
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False


def _route(path: str) -> _Route:
    parts = [p for p in path.split("/") if p]
    if not parts or parts == ["version"] or parts[0] not in ("api", "apis"):
        return _Route("discovery" if not parts or parts == ["version"] else "other")
    if parts[0] == "api":
        if len(parts) < 3:
            return _Route("discovery", "", parts[1] if len(parts) > 1 else None)
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return _Route(
                "discovery",
                parts[1] if len(parts) > 1 else None,
                parts[2] if len(parts) > 2 else None,
            )
        group, version, rest = parts[1], parts[2], parts[3:]
    watch_path = False
    if rest and rest[0] == "watch":
        watch_path, rest = True, rest[1:]
    namespace = name = subresource = None
    if (
        rest
        and rest[0] == "namespaces"
        and (len(rest) <= 2 or (len(rest) == 3 and rest[2] in ("status", "finalize")))
    ):
        plural = "namespaces"
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
    elif rest and rest[0] == "namespaces":
        namespace, plural = rest[1], rest[2]
        name = rest[3] if len(rest) > 3 else None
        subresource = "/".join(rest[4:]) or None
    elif rest:
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        subresource = "/".join(rest[2:]) or None
    else:  # pragma: no cover - excluded above
        return _Route("other")
    return _Route("resource", group, version, plural, namespace, name, subresource, watch_path)


def _action(route: _Route, method: str, params: dict[str, str]) -> Any:
    if route.kind != "resource":
        return None
    if method == "GET" and (route.watch_path or _truthy(params.get("watch"))):
        return kmock.action.WATCH
    if route.subresource is not None and route.subresource != "status":
        return kmock.action.FETCH if method == "GET" else None
    if route.name is None:
        return {"GET": kmock.action.LIST, "POST": kmock.action.CREATE}.get(method)
    return {
        "GET": kmock.action.FETCH,
        "PATCH": kmock.action.UPDATE,
        "DELETE": kmock.action.DELETE,
    }.get(method)


# ----------------------------------------------------------------------------------------------
# The kmock-based emulator


class _Emulator(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold (discovery, error rendering, the reaction DSL) with a real store.

    kmock's own ``KubernetesEmulator`` is replaced here because it misses what runyard relies
    on: its request parser crashes on ``/api/v1/namespaces``, ``watch=True`` is not a watch, PUT
    is not routed, selectors/timeouts/resourceVersions/logs are not served, and its shared
    response objects carry headers from one request into the next. What stays from kmock:
    the request model, the reaction DSL and its priorities, discovery, and Status rendering.
    """

    def __init__(self, state: ClusterState, *, bookmark_interval: float) -> None:
        self.state = state
        self.bookmark_interval = bookmark_interval
        self._reactions_key: tuple[int, ...] = ()
        self._reactions: list[kmock.Reaction] = []
        super().__init__()
        for rt in RESOURCES.values():
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            if rt.namespaced:
                verbs.append("deletecollection")
            self.resources[f"{rt.api_version}/{rt.plural}"] = kmock.ResourceInfo(
                kind=rt.kind,
                singular=rt.singular,
                namespaced=rt.namespaced,
                verbs=sorted(verbs),
                shortnames=set(rt.short_names),
                subresources=set(rt.subresources),
            )

    # -- request intake ------------------------------------------------------------------------

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        try:
            request = self._parse(raw, body)
            # Keep only the request being served: kmock's dispatch re-filters the whole history
            # for every reaction, which is quadratic under benchmark load.
            self._requests[:] = [request]
            return await self._handle(request)
        except Exception as exc:
            return await self._render_error(exc)

    def _parse(self, raw: aiohttp.web.BaseRequest, body: bytes) -> Any:
        text = body.decode("utf-8", "replace")
        data: Any = None
        if body:
            if raw.content_type == "application/apply-patch+yaml":
                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError:
                    data = None
            else:
                try:
                    data = json.loads(text)
                except ValueError:
                    data = None
        route = _route(raw.path)
        params = dict(raw.query)
        resource = (
            kmock.resource(group=route.group, version=route.version, plural=route.plural)
            if route.group is not None
            else None
        )
        return kmock.Request(
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=params,
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=text,
            data=data,
            action=_action(route, raw.method, params),
            resource=resource,
            namespace=route.namespace,
            name=route.name,
            subresource=route.subresource,
        )

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        route = _route(request.url.path)
        if route.kind != "resource":
            return await super()._handle(request)  # discovery & 404s: kmock's scaffold
        response = await self._dispatch_reactions(request)
        if response is not None:
            return response
        try:
            return await self._serve(request, route)
        except ApiError as error:
            return _status_response(error)
        except SelectorError as error:
            return _status_response(bad_request(str(error)))

    async def _dispatch_reactions(self, request: Any) -> aiohttp.web.StreamResponse | None:
        """Serve the request by a reaction a test added through the kmock DSL, if one matches."""
        current = list(self._payloads)
        key = tuple(id(p) for p in current)
        if key != self._reactions_key:  # recompute only when reactions were added or replaced
            payloads = [p for p in current if not (p.priorities and p.priorities[0] == -math.inf)]
            width = max((len(p.priorities) for p in payloads), default=0)
            payloads.sort(
                key=lambda p: tuple(-x for x in p.priorities) + (0,) * (width - len(p.priorities))
            )
            self._reactions_key, self._reactions = key, payloads
        for payload in self._reactions:
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        return None

    # -- resources -----------------------------------------------------------------------------

    async def _serve(self, request: Any, route: _Route) -> aiohttp.web.StreamResponse:
        rt = RESOURCES.get(route.plural or "")
        if rt is None or rt.group != route.group or rt.version != route.version:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and route.plural == "namespaces":  # pragma: no cover - impossible
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rt.namespaced and route.namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = str(request.method.value).upper()
        params: dict[str, str] = dict(request.params)
        raw: aiohttp.web.BaseRequest = request._raw_request
        namespace = route.namespace
        dry_run = params.get("dryRun") == "All"
        is_watch = method == "GET" and (route.watch_path or _truthy(params.get("watch")))

        if is_watch:
            if route.subresource is not None:
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            return await self._watch(raw, rt, namespace, params, route.name)

        if route.name is None:
            if method == "GET":
                return self._list(rt, namespace, params)
            if method == "POST":
                if rt.namespaced and namespace is None:
                    raise ApiError(
                        405,
                        "MethodNotAllowed",
                        "the server does not allow this method on the requested resource",
                    )
                created = self.state.create(rt.plural, namespace, request.data, dry_run=dry_run)
                return aiohttp.web.json_response(created, status=201)
            if method == "DELETE" and rt.namespaced:
                return self._delete_collection(rt, namespace, params, request.data)
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )

        if rt.namespaced and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = route.name
        sub = route.subresource
        if sub == "log" and rt.plural == "pods":
            if method != "GET":
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            assert namespace is not None
            return await self._logs(raw, namespace, name, params)
        if sub not in (None, "status") or (sub == "status" and "status" not in rt.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        if method == "GET":
            return aiohttp.web.json_response(self.state.require(rt.plural, namespace, name))
        if method == "PUT":
            updated = self.state.update(
                rt.plural, namespace, name, request.data, subresource=sub, dry_run=dry_run
            )
            return aiohttp.web.json_response(updated)
        if method == "PATCH":
            content_type = raw.headers.get("Content-Type", "application/json")
            result, upserted = self.state.patch(
                rt.plural,
                namespace,
                name,
                request.data,
                content_type,
                subresource=sub,
                field_manager=params.get("fieldManager"),
                dry_run=dry_run,
            )
            return aiohttp.web.json_response(result, status=201 if upserted else 200)
        if method == "DELETE" and sub is None:
            options = request.data if isinstance(request.data, dict) else {}
            propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
            orphan = params.get("orphanDependents", options.get("orphanDependents"))
            if propagation is None and orphan is not None:
                propagation = "Orphan" if _truthy(str(orphan)) else "Background"
            obj, gone = self.state.delete(
                rt.plural,
                namespace,
                name,
                propagation=propagation,
                preconditions=options.get("preconditions"),
                dry_run=dry_run,
            )
            if gone and rt.plural != "pods":
                details: Obj = {"name": name, "kind": rt.plural, "uid": obj["metadata"].get("uid")}
                if rt.group:
                    details["group"] = rt.group
                return aiohttp.web.json_response(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": details,
                    }
                )
            return aiohttp.web.json_response(obj)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    @staticmethod
    def _selectors(
        rt: ResourceType, params: dict[str, str], name: str | None = None
    ) -> tuple[LabelSelector, FieldSelector]:
        labels = LabelSelector.parse(params.get("labelSelector"))
        field_text = params.get("fieldSelector") or ""
        if name is not None:
            field_text = ",".join(filter(None, [field_text, f"metadata.name={name}"]))
        return labels, FieldSelector.parse(rt.plural, field_text)

    def _list(
        self, rt: ResourceType, namespace: str | None, params: dict[str, str]
    ) -> aiohttp.web.Response:
        labels, fields = self._selectors(rt, params)
        limit = int(params["limit"]) if params.get("limit", "").isdigit() else None
        result = self.state.list_page(
            rt.plural,
            namespace,
            labels,
            fields,
            limit=limit or None,
            continue_token=params.get("continue") or None,
        )
        meta: Obj = {"resourceVersion": result.resource_version}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining is not None:
            meta["remainingItemCount"] = result.remaining
        items = []
        for obj in result.items:  # list items carry no kind/apiVersion, like the real server's
            item = dict(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
        return aiohttp.web.json_response(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": meta,
                "items": items,
            }
        )

    def _delete_collection(
        self, rt: ResourceType, namespace: str | None, params: dict[str, str], options: Any
    ) -> aiohttp.web.Response:
        labels, fields = self._selectors(rt, params)
        options = options if isinstance(options, dict) else {}
        propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
        deleted = []
        for obj in self.state.select(rt.plural, namespace, labels, fields):
            if self.state.find(rt.plural, namespace, obj["metadata"]["name"]) is None:
                continue
            gone, _ = self.state.delete(
                rt.plural,
                namespace,
                obj["metadata"]["name"],
                propagation=propagation,
                dry_run=params.get("dryRun") == "All",
            )
            deleted.append(gone)
        return aiohttp.web.json_response(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.state.rv)},
                "items": deleted,
            }
        )

    # -- watches -------------------------------------------------------------------------------

    async def _watch(
        self,
        raw: aiohttp.web.BaseRequest,
        rt: ResourceType,
        namespace: str | None,
        params: dict[str, str],
        name: str | None,
    ) -> aiohttp.web.StreamResponse:
        labels, fields = self._selectors(rt, params, name)
        rv_param = params.get("resourceVersion")
        if rv_param and not rv_param.isdigit():
            raise bad_request(
                f'Invalid value: "{rv_param}": resourceVersion must be a non-negative integer'
            )
        timeout = None
        if params.get("timeoutSeconds"):
            try:
                timeout = float(params["timeoutSeconds"])
            except ValueError as exc:
                raise bad_request(f"invalid timeoutSeconds: {params['timeoutSeconds']!r}") from exc
        events = self._watch_events(
            rt,
            namespace,
            labels,
            fields,
            rv_param,
            timeout,
            bookmarks=_truthy(params.get("allowWatchBookmarks")),
            send_initial=_truthy(params.get("sendInitialEvents")),
        )
        return await self._stream(raw, events, "application/json")

    @staticmethod
    async def _stream(
        raw: aiohttp.web.BaseRequest, chunks: AsyncIterator[bytes], content_type: str
    ) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(raw)
        try:
            async for chunk in chunks:
                if chunk:
                    await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response

    def _event_line(
        self, event: WatchEvent, namespace: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> bytes | None:
        if (
            namespace is not None
            and (event.obj.get("metadata") or {}).get("namespace") != namespace
        ):
            return None

        def matches(obj: Obj) -> bool:
            return labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj)

        now = matches(event.obj)
        if event.type == "MODIFIED" and event.prev is not None:
            before = matches(event.prev)
            if now and not before:
                return encode_event("ADDED", event.obj)
            if before and not now:
                return encode_event("DELETED", event.obj)
        return event.line if now else None

    @staticmethod
    def _gone(rv: int, compacted: int) -> bytes:
        return encode_event(
            "ERROR",
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {rv} ({compacted})",
                "reason": "Expired",
                "code": 410,
            },
        )

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, *, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return encode_event(
            "BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
        )

    async def _watch_events(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        rv_param: str | None,
        timeout: float | None,
        *,
        bookmarks: bool,
        send_initial: bool,
    ) -> AsyncIterator[bytes]:
        state = self.state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        epoch = state.watch_epoch
        yield b""  # send the headers now
        if rv_param in (None, "", "0") or send_initial:
            cursor = state.rv
            for obj in state.select(rt.plural, namespace, labels, fields):
                yield encode_event("ADDED", obj)
            if send_initial:
                yield self._bookmark(rt, cursor, initial_end=True)
        else:
            assert rv_param is not None
            cursor = int(rv_param)
            if cursor < state.compacted_rv:
                yield self._gone(cursor, state.compacted_rv)
                return
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            if state.closing or state.watch_epoch != epoch:
                return
            if cursor < state.trimmed_rv:
                yield self._gone(cursor, state.trimmed_rv)
                return
            for event in state.events_after(cursor):
                cursor = event.rv
                if event.plural != rt.plural:
                    continue
                line = self._event_line(event, namespace, labels, fields)
                if line is not None:
                    yield line
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                yield self._bookmark(rt, state.rv)
                next_bookmark = now + self.bookmark_interval
            wait = 5.0
            if deadline is not None:
                wait = min(wait, deadline - now)
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            if cursor >= state.rv:  # nothing new since the loop above: sleep until a change
                await state.wait_change(wait)

    # -- logs ----------------------------------------------------------------------------------

    async def _logs(
        self, raw: aiohttp.web.BaseRequest, namespace: str, pod: str, params: dict[str, str]
    ) -> aiohttp.web.StreamResponse:
        state = self.state
        tail = (
            int(params["tailLines"]) if params.get("tailLines", "").lstrip("-").isdigit() else None
        )
        since = None
        if params.get("sinceSeconds", "").isdigit():
            since = utcnow() - timedelta(seconds=int(params["sinceSeconds"]))
        elif params.get("sinceTime"):
            since = parse_time(params["sinceTime"])
        timestamps = _truthy(params.get("timestamps"))
        limit = int(params["limitBytes"]) if params.get("limitBytes", "").isdigit() else None
        previous = _truthy(params.get("previous"))
        container, lines = state.log_lines(
            namespace, pod, params.get("container"), previous=previous
        )
        first = state.render_logs(
            lines, tail_lines=tail, since=since, timestamps=timestamps, limit_bytes=limit
        )
        if not _truthy(params.get("follow")) or previous:
            return aiohttp.web.Response(body=first, content_type="text/plain", charset="utf-8")

        async def follow() -> AsyncIterator[bytes]:
            yield first
            sent = len(lines)
            while not state.closing:
                try:
                    _, current = state.log_lines(namespace, pod, container)
                except ApiError:
                    return  # the pod is gone
                if len(current) > sent:
                    yield state.render_logs(current[sent:], timestamps=timestamps)
                    sent = len(current)
                if not state.container_running(namespace, pod, container):
                    return
                await state.wait_change(1.0)

        return await self._stream(raw, follow(), "text/plain; charset=utf-8")


# ----------------------------------------------------------------------------------------------
# The facade


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
        validation: reject invalid objects with 422 like the API server (names too long,
            missing containers, bad restartPolicy, immutable Job template, ...).
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
        validation: bool = True,
        bookmark_interval: float = 1.0,
        event_history: int = 10_000,
        port: int = 0,
        call_timeout: float = 30.0,
    ) -> None:
        self._options: dict[str, Any] = {
            "auto_complete": auto_complete,
            "auto_namespaces": auto_namespaces,
            "server_defaults": server_defaults,
            "validation": validation,
            "event_history": event_history,
        }
        self._bookmark_interval = bookmark_interval
        self._port = port
        self._call_timeout = call_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._state: ClusterState | None = None
        self._emulator: _Emulator | None = None
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

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

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
        self._emulator = _Emulator(self._state, bookmark_interval=self._bookmark_interval)
        await self._emulator.__aenter__()
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
        if self._emulator is not None:
            await self._emulator.__aexit__(None, None, None)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(50):
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
                response = _status_response(
                    ApiError(
                        503,
                        "ServiceUnavailable",
                        "the server is currently unable to handle the request",
                    )
                )
            elif (fault := self._take_fault(raw)) is not None:
                headers = {"Retry-After": "1"} if fault.status == 429 else None
                reason = _STATUS_REASONS.get(fault.status, "InternalError")
                response = _status_response(ApiError(fault.status, reason, fault.message), headers)
            else:
                assert self._emulator is not None
                response = await self._emulator(raw)
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
            if _truthy(raw.query.get("records")):
                body["records"] = [
                    {"method": r.method, "path": r.path, "query": r.query, "status": r.status}
                    for r in records
                ]
            return aiohttp.web.json_response(body)
        if raw.path == "/_harness/reset" and raw.method == "POST":
            self._records.clear()
            return aiohttp.web.json_response({})
        return _status_response(ApiError(404, "NotFound", "no such harness endpoint"))

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

    async def _arun(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise RuntimeError("the fake cluster is not started")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return fn(*args, **kwargs)

        return await self._arun(run())

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

    def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: Literal["merge", "strategic", "json"] = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object as another client would (e.g. a user's ``kubectl edit``)."""
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        obj, _ = self._call(
            self._harness_api,
            self._require_state().patch,
            _plural(kind),
            namespace,
            name,
            patch,
            content_type,
            subresource=subresource,
        )
        return copy.deepcopy(obj)

    def delete(
        self, kind: str, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> None:
        """Delete as a user or the TTL controller would (Background: the Job's pods go too)."""
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

    async def arun_job(
        self,
        namespace: str,
        name: str,
        *,
        exit_code: int = 0,
        logs: str = "",
        duration: float = 0,
        reason: str | None = None,
        container: str | None = None,
    ) -> None:
        """``run_job`` for async tests: awaits without blocking the caller's event loop."""
        state = self._require_state()
        await self._arun(
            state.run_job(
                namespace,
                name,
                exit_code=exit_code,
                logs=logs,
                duration=duration,
                reason=reason,
                container=container,
            )
        )

    async def astart_job(self, namespace: str, name: str, **kwargs: Any) -> str:
        return await self._acall(self._require_state().start_job, namespace, name, **kwargs)

    async def afinish_job(self, namespace: str, name: str, **kwargs: Any) -> bool:
        return await self._acall(self._require_state().finish_job, namespace, name, **kwargs)

    def append_logs(
        self,
        namespace: str,
        pod: str,
        text: str,
        *,
        container: str | None = None,
        previous: bool = False,
    ) -> None:
        """Append to a pod's log (``previous``: the log of its previous container instance)."""
        self._call(
            self._require_state().append_logs,
            namespace,
            pod,
            text,
            container=container,
            previous=previous,
        )

    def job_pods(self, namespace: str, job_name: str) -> builtins.list[dict[str, Any]]:
        """The Job's pods, oldest first."""
        state = self._require_state()

        def pods() -> builtins.list[Obj]:
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

    async def afire_cronjob(
        self, namespace: str, cronjob_name: str, scheduled_time: datetime, **kwargs: Any
    ) -> str:
        return await self._acall(
            self._require_state().fire_cronjob, namespace, cronjob_name, scheduled_time, **kwargs
        )

    def run_ttl_controller(self, at: datetime | None = None) -> builtins.list[str]:
        """Delete finished Jobs whose ``ttlSecondsAfterFinished`` has passed at ``at`` (default:
        every finished Job that has a TTL). Returns ``namespace/name`` of the deleted Jobs."""
        return self._call(self._require_state().run_ttl_controller, at)

    def set_auto_complete(self, behaviour: JobBehaviour | None) -> None:
        def assign() -> None:
            self._require_state().auto_complete = behaviour

        self._call(assign)

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

    @property
    def is_down(self) -> bool:
        return self._down is not None

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

    async def await_for(
        self, predicate: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.01
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met in {timeout} seconds")
            await asyncio.sleep(interval)

    # -- kmock ---------------------------------------------------------------------------------

    @property
    def emulator(self) -> Any:
        """The kmock handler, for DSL reactions (``cluster.emulator['get /x'] << 500``)."""
        if self._emulator is None:
            raise RuntimeError("the fake cluster is not started")
        return self._emulator
