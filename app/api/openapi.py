"""Documents runyard's error answers in the OpenAPI document.

Litestar describes only its own 400 body; every runyard error is an RFC 9457 problem in
``application/problem+json``, so each operation gets those responses instead, and clients
(and schemathesis) can rely on the document for every status the API answers with.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

from app.api.problems import PROBLEM_JSON

PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="A URI naming the kind of problem"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING, description="What was wrong and how to fix it"),
        "instance": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["field", "message"],
                properties={
                    "field": Schema(type=OpenAPIType.STRING),
                    "message": Schema(type=OpenAPIType.STRING),
                },
            ),
        ),
    },
)

_API_ERRORS = {
    "400": "The body is not valid JSON",
    "401": "No token, or an unknown or revoked one",
    "403": "A viewer token tried to change something",
    "404": "No such thing in your organization",
    "409": "The request conflicts with the current state",
    "413": "The body is too large",
    "422": "A field or parameter is invalid",
    "429": "The token's request budget is used up; see Retry-After",
    "500": "An unexpected error (logged)",
    "501": "Not available with this runyard's executor",
    "502": "The Kubernetes API refused the request",
    "503": "The Kubernetes API could not be reached",
}


def _problem_response(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        content={PROBLEM_JSON: OpenAPIMediaType(schema=Reference("#/components/schemas/Problem"))},
    )


def _strict_struct_names() -> set[str]:
    """Names of request bodies that refuse unknown fields (forbid_unknown_fields)."""
    names: set[str] = set()
    pending: list[type[msgspec.Struct]] = [msgspec.Struct]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__struct_config__.forbid_unknown_fields:
            names.add(cls.__name__)
    return names


def document_problems(app: Litestar) -> None:
    """Rewrite the generated document's error responses and mark request bodies that
    refuse unknown fields (idempotent)."""
    document = app.openapi_schema
    document.components = document.components or Components()
    schemas = dict(document.components.schemas or {})
    strict = _strict_struct_names()
    for name, schema in schemas.items():
        if name in strict and isinstance(schema, Schema):
            schema.additional_properties = False
    schemas["Problem"] = PROBLEM_SCHEMA
    document.components.schemas = schemas
    for path, item in (document.paths or {}).items():
        for operation in (item.get, item.put, item.post, item.delete, item.patch):
            if operation is None:
                continue
            responses = dict(operation.responses or {})
            # /api/v1/schemas/: JSON Schemas for editors, public like the document itself.
            if path.startswith("/api/") and not path.startswith("/api/v1/schemas/"):
                for status, description in _API_ERRORS.items():
                    responses[status] = _problem_response(description)
            else:
                operation.security = []  # health, readiness, metrics and the document: no token
                responses.pop("400", None)
                responses["500"] = _problem_response(_API_ERRORS["500"])
                if path == "/metrics":
                    responses["401"] = _problem_response(
                        "RUNYARD_METRICS_TOKEN is set and the request did not carry it"
                    )
                if path == "/ready":
                    responses["503"] = OpenAPIResponse(
                        description="The database does not answer",
                        content=responses["200"].content
                        if "200" in responses and isinstance(responses["200"], OpenAPIResponse)
                        else None,
                    )
            operation.responses = responses
