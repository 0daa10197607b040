"""Every failure becomes an RFC 9457 problem (application/problem+json).

Bodies never carry stack traces, SQL or secrets: unexpected errors are logged with the
request id and answered with a generic 500.
"""

from __future__ import annotations

import difflib
import logging
import re
from typing import Any

import msgspec.inspect as spec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.types import ExceptionHandlersMap

from app.api.views import Problem
from app.errors import RunyardError

log = logging.getLogger("runyard.api")
PROBLEM_BASE = "https://runyard.dev/problems/"
PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "Validation failed"),
    429: ("rate-limited", "Too many requests"),
}

Req = Request[Any, Any, Any]


def _response(
    request: Req,
    status: int,
    slug: str,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    problem = Problem(
        type=PROBLEM_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors or [],
    )
    return Response(problem, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_MAX_DETAIL = 2000
_MAX_MESSAGE = 500
_MAX_ERRORS = 50


def _clip(text: str, limit: int) -> str:
    """Messages quote the values they refuse; a 600 KB value must not come back twice."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def runyard_error(request: Req, exc: RunyardError) -> Response[Problem]:
    errors = [
        {"field": _clip(e.field, 200), "message": _clip(e.message, _MAX_MESSAGE)}
        for e in exc.errors[:_MAX_ERRORS]
    ]
    return _response(
        request,
        exc.status,
        exc.slug,
        exc.title,
        _clip(exc.detail, _MAX_DETAIL),
        errors,
        exc.headers or None,
    )


def _field_of(key: str | None) -> str:
    return key or "body"


# msgspec's messages for the body's own fields, which Litestar reports against "data"
# (the handler's parameter) rather than the field: they name the field in backquotes.
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")
_ENUM = re.compile(r"Invalid enum value ")


def _body_type(request: Req) -> spec.Type | None:
    """The msgspec description of the handler's body type (``data``), if it has one."""
    handler = request.scope.get("route_handler")
    try:
        parameter = handler.parsed_fn_signature.parameters.get("data") if handler else None
        return spec.type_info(parameter.annotation) if parameter is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _struct_at(info: spec.Type | None, path: list[str]) -> spec.StructType | None:
    """The struct found by following ``path`` (field names) from ``info``."""
    for name in [None, *path]:
        while isinstance(info, spec.UnionType):  # T | None: the struct in it
            info = next((t for t in info.types if isinstance(t, spec.StructType)), None)
        if not isinstance(info, spec.StructType):
            return None
        if name is not None:
            info = next((f.type for f in info.fields if f.encode_name == name), None)
    return info if isinstance(info, spec.StructType) else None


def _allowed_values(info: spec.Type | None) -> list[str]:
    if isinstance(info, spec.UnionType):
        return [v for t in info.types for v in _allowed_values(t)]
    if isinstance(info, spec.LiteralType):
        return [str(v) for v in info.values]
    if isinstance(info, spec.EnumType):
        return [str(m.value) for m in info.cls]
    return []


def _describe(body: spec.Type | None, key: str, message: str) -> tuple[str, str]:
    """The field an error is about and what to do about it: msgspec names a missing or
    unknown field inside the message and reports the object holding it, and says of an
    enum only that the value is not one of them."""
    parent = [] if key in ("data", "body") else key.split(".")
    prefix = "" if not parent else key + "."
    if found := _MISSING.match(message):
        return prefix + found[1], "required: this field is missing"
    if found := _UNKNOWN.match(message):
        name = found[1]
        struct = _struct_at(body, parent)
        known = [f.encode_name for f in struct.fields] if struct else []
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        if not close and known:
            hint = "; known fields: " + ", ".join(known)
        return prefix + name, "unknown field" + hint
    if _ENUM.match(message) and parent:
        struct = _struct_at(body, parent[:-1])
        field = (
            next((f for f in struct.fields if f.encode_name == parent[-1]), None)
            if struct
            else None
        )
        allowed = _allowed_values(field.type) if field else []
        if allowed:
            return key, f"{message}; use one of: {', '.join(allowed)}"
    return _field_of(key), message


def validation_error(request: Req, exc: ValidationException) -> Response[Problem]:
    """Litestar's 400 for bodies and parameters that do not decode or fit their type."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = []
    body = _body_type(request)
    for item in extra:
        if isinstance(item, dict):
            message = str(item.get("message", "invalid value"))
            field = _field_of(item.get("key"))
            if field == "data" and message == "'data'":
                field, message = "body", "a JSON object is required"
            elif item.get("source") in (None, "body"):
                field, message = _describe(body, field, message)
            errors.append({"field": field, "message": message[:500]})
    detail_text = str(exc.detail)
    if not errors:
        errors = [{"field": "body", "message": detail_text[:500]}]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return _response(
        request,
        422,
        "validation",
        "Validation failed",
        f"The request has invalid fields: {summary}"[:2000],
        errors,
    )


def http_error(request: Req, exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    slug, title = _TITLES.get(status, ("http-error", "Request failed"))
    detail = str(exc.detail)
    if status == 400 and isinstance(exc.__cause__, SerializationException):
        return _response(
            request,
            400,
            "bad-request",
            "Malformed request body",
            f"The request body is not valid JSON ({exc.__cause__}). Send a JSON "
            "object with 'Content-Type: application/json'.",
        )
    if status == 404:
        detail = f"No route matches {request.method} {request.url.path}; see /schema for the API."
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /schema."
    elif status == 413:
        detail = "The request body is larger than this server accepts (RUNYARD_MAX_BODY_BYTES)."
    elif status >= 500:
        log.error("HTTP error %s on %s %s: %s", status, request.method, request.url.path, detail)
        detail = "The server could not complete the request."
    headers = dict(exc.headers or {})
    return _response(request, status, slug, title, detail, headers=headers or None)


def unexpected_error(request: Req, exc: Exception) -> Response[Problem]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _response(
        request,
        500,
        "internal",
        "Internal error",
        "runyard hit an unexpected error; it was logged. Try again, and report it if it persists.",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    RunyardError: runyard_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
