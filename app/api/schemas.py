"""JSON Schemas for editors, outside authentication (like /schema): the jobs-as-code file
``runyard.yaml`` that ``runyard apply`` reads (app/jobfile.py defines it)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, get

from app.jobfile import SCHEMA_PATH, schema

# Built once: the schema is a constant of this runyard version.
_BODY = msgspec.json.encode(schema())


@get(
    SCHEMA_PATH,
    summary="JSON Schema of runyard.yaml (runyard apply), for editors",
    tags=["schemas"],
    security=[],
)
async def jobfile_schema() -> Response[Any]:
    return Response(
        _BODY,
        media_type="application/schema+json",
        headers={"Cache-Control": "public, max-age=3600"},
    )
