"""The Kubernetes API over HTTP (aiohttp), on top of the fake cluster's state.

Served, as the ``kubernetes`` client calls them:

- ``/api/v1/namespaces[/{name}]``;
- ``/apis/batch/v1/namespaces/{ns}/{cronjobs|jobs}[/{name}]`` and
  ``/api/v1/namespaces/{ns}/pods[/{name}[/log]]``, and the all-namespaces lists
  ``/apis/batch/v1/{cronjobs|jobs}``, ``/api/v1/pods``;
- verbs: list (``labelSelector``, ``limit``, ``continue``), watch (``watch=true|True``,
  ``resourceVersion``, ``timeoutSeconds``, ``allowWatchBookmarks``), create, get, replace,
  strategic merge patch, delete (``propagationPolicy``, a uid or resourceVersion precondition);
  pod logs (``container``, ``tailLines``).

A query parameter the emulator does not serve (``UNSERVED_PARAMETERS``) is answered with
400 rather than ignored, so a test never passes on a silently dropped option. Errors are
Kubernetes ``Status`` objects worded like the API server's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp.web

from tests.harness.k8s_objects import (
    RESOURCES,
    ApiError,
    Obj,
    ResourceType,
    bad_request,
    no_such_resource,
    not_allowed,
)
from tests.harness.k8s_selectors import LabelSelector, SelectorError
from tests.harness.k8s_state import ClusterState
from tests.harness.k8s_store import WatchEvent, encode_event

# runyard uses none of these; each would change what a request means.
UNSERVED_PARAMETERS = frozenset(
    {
        "dryRun",
        "fieldSelector",
        "fieldManager",
        "sendInitialEvents",
        "follow",
        "previous",
        "timestamps",
        "sinceSeconds",
        "sinceTime",
        "limitBytes",
    }
)
STRATEGIC_MERGE = "application/strategic-merge-patch+json"


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def status_response(error: ApiError, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    return aiohttp.web.json_response(error.status(), status=error.code, headers=headers)


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def route(path: str) -> Route:
    """The resource a path names; 404 for anything not served."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:3] == ["apis", "batch", "v1"]:
        group, rest = "batch", parts[3:]
    else:
        raise no_such_resource()
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise no_such_resource()
    rt = RESOURCES.get(rest[0])
    if rt is None or rt.group != group or (namespace is not None and not rt.namespaced):
        raise no_such_resource()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource not in (None, "log") or (subresource == "log" and rt.plural != "pods"):
        raise no_such_resource()
    return Route(rt, namespace, name, subresource)


class ApiServer:
    """Turns HTTP requests into calls on the state; streams watches."""

    def __init__(self, state: ClusterState, *, bookmark_interval: float) -> None:
        self.state = state
        self.bookmark_interval = bookmark_interval

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            return await self._serve(raw)
        except ApiError as error:
            return status_response(error)
        except SelectorError as error:
            return status_response(bad_request(str(error)))

    async def _serve(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        where = route(raw.path)
        params = dict(raw.query)
        unserved = sorted(UNSERVED_PARAMETERS & set(params))
        if unserved:
            raise bad_request(
                f"the emulator does not serve {', '.join(unserved)} (runyard uses none)"
            )
        body = await raw.read()
        try:
            data = json.loads(body) if body else None
        except ValueError as exc:
            raise bad_request(f"the body of the request is not JSON: {exc}") from exc
        rt, namespace, name, method = where.rt, where.namespace, where.name, raw.method
        state = self.state
        if where.subresource == "log":
            if method != "GET" or namespace is None or name is None:
                raise not_allowed()
            return self._logs(namespace, name, params)
        if name is None:
            labels = LabelSelector.parse(params.get("labelSelector"))
            if method == "GET" and truthy(params.get("watch")):
                return await self._watch(raw, rt, namespace, labels, params)
            if method == "GET":
                return self._list(rt, namespace, labels, params)
            if method == "POST" and (namespace is not None or not rt.namespaced):
                return aiohttp.web.json_response(
                    state.create(rt.plural, namespace, data), status=201
                )
            raise not_allowed()
        if rt.namespaced and namespace is None:
            raise no_such_resource()
        if method == "GET":
            return aiohttp.web.json_response(state.require(rt.plural, namespace, name))
        if method == "PUT":
            return aiohttp.web.json_response(state.update(rt.plural, namespace, name, data))
        if method == "PATCH":
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != STRATEGIC_MERGE:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the emulator serves strategic merge patches only ({STRATEGIC_MERGE}), "
                    f"not {content_type or 'an unnamed media type'}",
                )
            return aiohttp.web.json_response(state.patch(rt.plural, namespace, name, data))
        if method == "DELETE":
            return self._delete(rt, namespace, name, params, data)
        raise not_allowed()

    def _delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        params: dict[str, str],
        data: object,
    ) -> aiohttp.web.Response:
        options: Obj = data if isinstance(data, dict) else {}
        propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
        orphan = params.get("orphanDependents", options.get("orphanDependents"))
        if propagation is None and orphan is not None:
            propagation = "Orphan" if truthy(str(orphan)) else "Background"
        gone = self.state.delete(
            rt.plural,
            namespace,
            name,
            propagation=propagation,
            preconditions=options.get("preconditions"),
        )
        if rt.plural == "pods":  # a deleted pod comes back as the object, the others as Status
            return aiohttp.web.json_response(gone)
        details: Obj = {"name": name, "kind": rt.plural, "uid": gone["metadata"].get("uid")}
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

    def _list(
        self, rt: ResourceType, namespace: str | None, labels: LabelSelector, params: dict[str, str]
    ) -> aiohttp.web.Response:
        limit = int(params["limit"]) if params.get("limit", "").isdigit() else None
        result = self.state.list_page(
            rt.plural,
            namespace,
            labels,
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

    def _logs(self, namespace: str, pod: str, params: dict[str, str]) -> aiohttp.web.Response:
        tail_text = params.get("tailLines", "")
        tail = int(tail_text) if tail_text.lstrip("-").isdigit() else None
        text = self.state.read_logs(namespace, pod, params.get("container"), tail)
        return aiohttp.web.Response(body=text, content_type="text/plain", charset="utf-8")

    # -- watches -------------------------------------------------------------------------------

    async def _watch(
        self,
        raw: aiohttp.web.BaseRequest,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        params: dict[str, str],
    ) -> aiohttp.web.StreamResponse:
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
        bookmarks = truthy(params.get("allowWatchBookmarks"))
        events = self._watch_events(rt, namespace, labels, rv_param, timeout, bookmarks)
        response = aiohttp.web.StreamResponse(
            status=200, headers={"Content-Type": "application/json"}
        )
        response.enable_chunked_encoding()
        await response.prepare(raw)
        try:
            async for chunk in events:
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response

    @staticmethod
    def _event_line(
        event: WatchEvent, namespace: str | None, labels: LabelSelector
    ) -> bytes | None:
        """The event as this watch sees it: an object entering the selector is ADDED, one
        leaving it is DELETED."""
        if namespace is not None and event.obj["metadata"].get("namespace") != namespace:
            return None

        def matches(obj: Obj) -> bool:
            return labels.matches(obj["metadata"].get("labels"))

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

    async def _watch_events(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        rv_param: str | None,
        timeout: float | None,
        bookmarks: bool,
    ) -> AsyncIterator[bytes]:
        """Without a resourceVersion (or "0"), the current objects as ADDED first; from an
        older resourceVersion than the history keeps, one ERROR event with a 410 Status, as
        the API server sends it (the client must list again)."""
        state = self.state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        epoch = state.watch_epoch
        if rv_param in (None, "", "0"):
            cursor = state.rv
            for obj in state.select(rt.plural, namespace, labels):
                yield encode_event("ADDED", obj)
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
                line = self._event_line(event, namespace, labels)
                if line is not None:
                    yield line
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                meta = {"resourceVersion": str(state.rv)}
                bookmark = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
                yield encode_event("BOOKMARK", bookmark)
                next_bookmark = now + self.bookmark_interval
            wait = 5.0
            if deadline is not None:
                wait = min(wait, deadline - now)
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            if cursor >= state.rv:  # nothing new since the loop above: sleep until a change
                await state.wait_change(wait)
