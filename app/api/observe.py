"""Request ids, access logs and the /metrics endpoint."""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.middleware import AbstractMiddleware
from litestar.types import Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from app import logs
from app.errors import Unauthorized
from app.settings import Settings

access = logging.getLogger("runyard.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class RequestContextMiddleware(AbstractMiddleware):
    """Gives every request an id (the caller's X-Request-ID when it is sane), returns it in
    the response, puts it on every log line written while serving, and logs one access
    line per request."""

    scopes = {ScopeType.HTTP}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        token = logs.request_id.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("path_template") or scope["path"]
            access.info(
                "%s %s %s",
                scope.get("method"),
                route,
                status,
                extra={
                    "method": scope.get("method"),
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            logs.request_id.reset(token)


@get(
    "/metrics",
    sync_to_thread=True,
    include_in_schema=True,
    tags=["operations"],
    summary="Prometheus metrics",
    media_type=CONTENT_TYPE_LATEST,
)
def metrics(request: Request[Any, Any, Any], settings: Settings) -> Response[bytes]:
    # Collectors read the database, so this runs in a worker thread.
    expected = settings.metrics_token
    if expected:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Constant time: the comparison must not tell a prober how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), expected.encode()
        ):
            raise Unauthorized(
                "/metrics needs 'Authorization: Bearer <token>' with the token set in "
                "RUNYARD_METRICS_TOKEN on this server.",
                headers={"WWW-Authenticate": 'Bearer realm="runyard metrics"'},
            )
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
