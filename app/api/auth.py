"""Bearer-token authentication and the role and scope checks for /api/v1.

Authentication runs as middleware and the role check as a guard, both before the request
body is read: an unauthenticated caller or a viewer trying to write gets 401/403 without
the server parsing (or reporting on) anything it sent.

The guard also applies a token's scope (docs/tokens.md): every handler declares the action
it takes (``opt={ACTION_OPT: ...}``; a GET without one reads), a token whose action set
lacks it gets 403, and a project-scoped token asking for another project's path gets 404 as
for another org's. What a path does not name (a run by id, the lists) the services check.
The middleware also tells the audit trail who is acting (app/services/audit.py).
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
from app.errors import Forbidden, NotFound, Unauthorized
from app.models import Principal
from app.services import audit
from app.services.tokens import ACTION_OPT, ACTIONS, TokenService, require_action

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
# A handler whose opt sets this works across the org's projects by nature (creating a
# project, the Kubernetes live Jobs by name): a project-scoped token may not use it.
ORG_WIDE = "org_wide"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def action_of(handler: BaseRouteHandler, method: str | None) -> str | None:
    """The action a request to this handler takes: declared, else ``read`` for a GET; None
    for an undeclared write (refused to any token with an action set: fail closed)."""
    declared = handler.opt.get(ACTION_OPT)
    if isinstance(declared, str) and declared in ACTIONS:
        return declared
    return "read" if method in READ_METHODS else None


def _client_address(scope: Scope) -> str | None:
    # The peer of the TCP connection: behind a reverse proxy, the proxy's address
    # (X-Forwarded-For is not trusted; any client could set it). docs/audit.md.
    client = scope.get("client")
    return str(client[0])[:100] if client else None


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
            actor = audit.Actor(
                token_id=principal.token_id,
                name=principal.token_name or principal.token_id,
                request_id=logs.request_id.get(),
                source_address=_client_address(scope),
            )
            with audit.acting_as(actor):
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


# A coroutine although it awaits nothing: Litestar runs a plain function guard in a worker
# thread, a hop on every request for a check of a few attribute reads.
async def writers_only(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if handler.opt.get(OWN_CREDENTIAL):
        return
    state = connection.scope.get("state") or {}
    principal: Principal | None = state.get("principal")
    if principal is None:
        return  # not under /api/ (health, metrics, schema): no token, nothing to scope
    method = str(connection.scope.get("method") or "")
    action = action_of(handler, method)
    if not principal.can_write and (method in WRITE_METHODS or action not in (None, "read")):
        if action == "audit":
            raise Forbidden(
                "The audit trail is for org admins: this token has the 'viewer' role. Use "
                "a token with the 'admin' role."
            )
        raise Forbidden(
            "This token has the 'viewer' role and can only read. Use a token "
            "with the 'admin' role to make changes."
        )
    if principal.actions is not None:
        if action is None:
            raise Forbidden(
                "This route declares no action, so a token with an action set may not use "
                "it; use a token without --actions."
            )
        require_action(principal, action)
    if principal.project_id is not None:
        if handler.opt.get(ORG_WIDE):
            raise Forbidden(
                "This token is scoped to one project and this request spans the whole "
                "organization; use a token without --project."
            )
        project_id = connection.path_params.get("project_id")
        if project_id is not None and project_id != principal.project_id:
            # Word for word what another org's project answers (app/services/projects.py).
            raise NotFound(f"No project with id {project_id!r} in your organization.")


AnyRequest = Request[Any, Any, Any]


def provide_principal(request: AnyRequest) -> Principal:
    principal: Principal = request.scope["state"]["principal"]
    return principal
