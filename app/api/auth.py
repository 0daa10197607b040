"""Bearer-token authentication and the role check for /api/v1.

Authentication runs as middleware and the role check as a guard, both before the request
body is read: an unauthenticated caller or a viewer trying to write gets 401/403 without
the server parsing (or reporting on) anything it sent.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractMiddleware
from litestar.types import Receive, Scope, Send

from app import logs
from app.errors import Forbidden, Unauthorized
from app.models import Principal
from app.services.tokens import TokenService

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _authenticate(tokens: TokenService, header: str) -> Principal:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "Send 'Authorization: Bearer <token>'. Create a token with "
            "'runyard tokens create --org SLUG --role admin'.",
            headers={"WWW-Authenticate": 'Bearer realm="runyard"'},
        )
    principal = tokens.cached(token)
    if principal is None:
        # A cache miss reads the database: never on the event loop thread.
        principal = await to_thread.run_sync(tokens.authenticate, token)
    return principal


# A handler whose opt sets this carries its own credential (a pod's artifact upload, see
# app/api/artifacts.py): neither the API token nor the role check applies to it.
OWN_CREDENTIAL = "own_credential"


class AuthMiddleware(AbstractMiddleware):
    scopes = {ScopeType.HTTP}
    exclude_opt_key = OWN_CREDENTIAL
    # JSON Schemas for editors are public, like /schema (app/api/schemas.py).
    exclude = ["^/api/v1/schemas/"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith("/api/"):
            headers = dict(scope["headers"])
            header = headers.get(b"authorization", b"").decode("latin-1")
            container = scope["app"].state.container
            principal = await _authenticate(container.tokens, header)
            if container.tokens.use_due(principal.token_id):
                # At most once a minute per token (tokens list shows "last used"): a write,
                # so off the event loop; every other request of the minute skips it.
                await to_thread.run_sync(container.tokens.record_use, principal.token_id)
            logs.org.set(principal.org_slug)
            container.rate_limiter.take(principal.token_id)
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


# A coroutine although it awaits nothing: Litestar runs a plain function guard in a worker
# thread, a hop on every request for a check of a few attribute reads.
async def writers_only(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if handler.opt.get(OWN_CREDENTIAL):
        return
    if connection.scope.get("method") in WRITE_METHODS:
        principal: Principal = connection.scope["state"]["principal"]
        if not principal.can_write:
            raise Forbidden(
                "This token has the 'viewer' role and can only read. Use a token "
                "with the 'admin' role to make changes."
            )


AnyRequest = Request[Any, Any, Any]


def provide_principal(request: AnyRequest) -> Principal:
    principal: Principal = request.scope["state"]["principal"]
    return principal
