"""Liveness and readiness, outside /api/v1 and without authentication."""

from __future__ import annotations

from litestar import Response, get

from app.api.views import Health, Ready
from app.store import Store


@get("/health", summary="Liveness: the process answers", tags=["operations"])
async def health() -> Health:
    return Health("ok")


@get("/ready", sync_to_thread=True, summary="Readiness: the database answers", tags=["operations"])
def ready(store: Store, executor_name: str) -> Response[Ready]:
    try:
        version = store.database.schema_version()
        database = "ok"
    except Exception:  # any database failure means "not ready", never a 500
        version, database = 0, "unavailable"
    status = "ok" if database == "ok" else "unavailable"
    body = Ready(status=status, database=database, executor=executor_name, schema_version=version)
    return Response(body, status_code=200 if status == "ok" else 503)
