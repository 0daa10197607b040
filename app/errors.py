"""Errors the services raise; the web layer turns each into an RFC 9457 problem.

Services never import the web framework, so these carry everything a problem body needs:
an HTTP status, a short title, a detail that tells the user how to fix it, and for
validation failures a list of field errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass
class RunyardError(Exception):
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status = 500
    title = "Internal error"
    slug = "internal"

    def __str__(self) -> str:
        return self.detail


class BadRequest(RunyardError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class Unauthorized(RunyardError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(RunyardError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(RunyardError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(RunyardError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Invalid(RunyardError):
    status = 422
    title = "Validation failed"
    slug = "validation"


class RateLimited(RunyardError):
    status = 429
    title = "Too many requests"
    slug = "rate-limited"


class ClusterError(RunyardError):
    """The Kubernetes API refused a request (it answered, but not with success)."""

    status = 502
    title = "Cluster refused the request"
    slug = "cluster-error"


class ClusterUnavailable(RunyardError):
    """The Kubernetes API could not be reached."""

    status = 503
    title = "Cluster unavailable"
    slug = "cluster-unavailable"


def invalid(field_name: str, message: str) -> Invalid:
    """A 422 about one field, the common case."""
    return Invalid(f"{field_name}: {message}", [FieldError(field_name, message)])
