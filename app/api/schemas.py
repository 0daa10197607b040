"""JSON Schemas for editors, outside authentication (like /schema): the jobs-as-code file
``runyard.yaml`` that ``runyard apply`` reads (app/jobfile.py defines it)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get

from app.jobfile import SCHEMA_PATH, schema

# Built once: the schema is a constant of this runyard version.
_SCHEMA = schema()


@get(
    SCHEMA_PATH,
    summary="JSON Schema of runyard.yaml (runyard apply), for editors",
    tags=["schemas"],
    security=[],
    media_type="application/schema+json",
)
async def jobfile_schema() -> Response[dict[str, Any]]:
    return Response(_SCHEMA, headers={"Cache-Control": "public, max-age=3600"})
