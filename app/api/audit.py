"""/api/v1/audit: the organization's audit trail, newest first (docs/audit.md)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from app.models import Principal
from app.services.audit import AuditList, AuditService
from app.services.tokens import ACTION_OPT


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get(
        "/",
        sync_to_thread=True,
        summary="Who changed what, newest first (org admins)",
        opt={ACTION_OPT: "audit"},
    )
    def list_events(
        self,
        principal: Principal,
        audit_log: AuditService,
        since: Annotated[str | None, Parameter(max_length=40)] = None,
        actor: Annotated[str | None, Parameter(max_length=100)] = None,
        object_ref: Annotated[str | None, Parameter(query="object", max_length=200)] = None,
        cursor: Annotated[str | None, Parameter(max_length=100)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> AuditList:
        return audit_log.list_events(
            principal,
            since=since,
            actor=actor,
            object_ref=object_ref,
            limit=limit,
            cursor=cursor,
        )
