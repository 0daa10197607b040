"""What every UI handler shares: the session of a request, CSRF and role checks, redirects,
and the error pages (HTML, not problem documents) that UI routes answer with."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect
from litestar.types import ExceptionHandlersMap

from app import logs
from app.errors import Forbidden, RunyardError
from app.services import audit
from app.services.tokens import require_action
from app.settings import Settings
from app.web.render import SECURITY_HEADERS, html
from app.web.sessions import SESSION_COOKIE, SessionManager, SignInRequired, UiSession

log = logging.getLogger("runyard.web")
AnyRequest = Request[Any, Any, Any]

# A local UI path to come back to after signing in: no scheme, no host, no "//", no
# backslash (browsers read "/\evil" as "//evil"), nothing outside /ui.
_LOCAL_UI = re.compile(r"/ui(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?")


def local_ui_path(value: str | None) -> str | None:
    if not value or len(value) > 1000 or not _LOCAL_UI.fullmatch(value):
        return None
    if "//" in value or ".." in value:
        return None
    return value


class ActionForm(msgspec.Struct):
    csrf_token: str = ""


class SignInForm(msgspec.Struct):
    token: str = ""
    csrf_token: str = ""
    next: str = ""


def see_other(path: str, cookies: list[Cookie] | None = None) -> Redirect:
    return Redirect(path=path, status_code=303, headers=SECURITY_HEADERS, cookies=cookies)


def secure_cookies(request: AnyRequest, settings: Settings) -> bool:
    """Secure cookies when the browser reached runyard over HTTPS: the request says so, or
    the public URL (a TLS-terminating proxy in front) does."""
    public = settings.public_url or ""
    return request.url.scheme == "https" or public.lower().startswith("https://")


def session_of(request: AnyRequest, sessions: SessionManager) -> UiSession:
    cookie = request.cookies.get(SESSION_COOKIE)
    session = sessions.resolve(cookie)
    if session is None:
        here = request.url.path
        if request.method == "GET" and request.url.query:
            here += "?" + request.url.query
        reason = "expired" if sessions.token_expired_at(cookie) is not None else None
        raise SignInRequired(here if request.method == "GET" else "/ui/", reason=reason)
    return session


def writer_of(
    request: AnyRequest, sessions: SessionManager, form: ActionForm, action: str
) -> UiSession:
    """The session of a form that takes ``action`` (app/services/tokens.py ACTIONS, the
    action the API's route for the same change declares): CSRF first (a forged form learns
    nothing about roles), then the role, then the token's action set, as the API's guard
    (app/api/auth.py ``writers_only``) checks them. The services check the role again."""
    session = session_of(request, sessions)
    if not sessions.csrf_ok(session, form.csrf_token):
        raise Forbidden(
            "The form's security token is missing or out of date. Reload the page and try again."
        )
    if not session.is_admin:
        raise Forbidden(
            "Your token has the 'viewer' role and can only read. Sign in with an admin "
            "token to make changes."
        )
    require_action(session.principal, action)
    return session


def _source_address(request: AnyRequest) -> str | None:
    # The TCP peer, as the API records it (app/api/auth.py): X-Forwarded-For is not trusted.
    client = request.scope.get("client")
    return str(client[0])[:100] if client else None


@contextmanager
def writing(
    request: AnyRequest, sessions: SessionManager, form: ActionForm, action: str
) -> Iterator[UiSession]:
    """``writer_of``, then the handler's work recorded in the audit trail as the session's
    token, with the request's id and source address, as an API write is. The API's
    middleware sets the actor for /api/ only; a UI handler runs in a worker thread, which
    this sets it in (the variable is the thread's copy of the request's context)."""
    session = writer_of(request, sessions, form, action)
    principal = session.principal
    actor = audit.Actor(
        token_id=principal.token_id,
        name=principal.token_name or principal.token_id,
        request_id=logs.request_id.get(),
        source_address=_source_address(request),
    )
    with audit.acting_as(actor):
        yield session


# --- error pages ----------------------------------------------------------------------


def _error_page(request: AnyRequest, status: int, title: str, detail: str) -> Response[str]:
    sessions: SessionManager = request.app.state.ui_sessions
    try:
        # The header (sign-out, org) when the visitor is signed in; a failed read of the
        # session must not turn an error page into a 500.
        session = sessions.resolve(request.cookies.get(SESSION_COOKIE))
    except Exception:
        session = None
    return html("error.html", status=status, ui=session, title=title, detail=detail, code=status)


def _runyard_error(request: AnyRequest, exc: RunyardError) -> Response[Any]:
    if isinstance(exc, SignInRequired):
        query = []
        if local_ui_path(exc.detail) and exc.detail not in ("/ui", "/ui/"):
            query.append("next=" + quote(exc.detail, safe="/"))
        if exc.reason:
            query.append("why=" + quote(exc.reason))
        return see_other("/ui/signin" + ("?" + "&".join(query) if query else ""))
    response = _error_page(request, exc.status, exc.title, exc.detail)
    response.headers.update(exc.headers)  # Retry-After of a 429
    return response


def _http_error(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException) or status == 400:
        return _error_page(request, 400, "Bad request", "The page's address or form is not valid.")
    if status == 404:
        return _error_page(request, 404, "Not found", "There is no such page.")
    if status == 405:
        return _error_page(request, 405, "Method not allowed", "This page cannot do that.")
    if status == 413:
        return _error_page(request, 413, "Too large", "The form sent more than runyard accepts.")
    if status >= 500:
        log.error("HTTP error %s on %s %s", status, request.method, request.url.path)
        return _error_page(request, status, "Error", "runyard could not complete the request.")
    return _error_page(request, status, "Request failed", str(exc.detail)[:500])


def _unexpected(request: AnyRequest, exc: Exception) -> Response[Any]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error_page(
        request, 500, "Internal error", "runyard hit an unexpected error; it was logged."
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    RunyardError: _runyard_error,
    ValidationException: _http_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
