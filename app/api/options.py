"""OPTIONS answers with the methods a path really has.

Litestar 2.25's automatic OPTIONS handler lists only the methods of the route object that
created it, which loses methods when several handlers share a path (GET and POST on
/api/v1/projects answer ``Allow: GET, OPTIONS``). This middleware answers OPTIONS from the
app's full route map instead.
"""

from __future__ import annotations

import re

from litestar.enums import ScopeType
from litestar.middleware import AbstractMiddleware
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

_TYPES = re.compile(r":\w+}")


class AllowHeaderMiddleware(AbstractMiddleware):
    scopes = {ScopeType.HTTP}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "OPTIONS":
            await self.app(scope, receive, send)
            return
        template = scope.get("path_template") or scope["path"]
        methods = {"OPTIONS"}
        # The map's keys carry parameter types ({project_id:str}); the template does not.
        for path, handlers in scope["litestar_app"].route_handler_method_map.items():
            if _TYPES.sub("}", path) == template:
                methods |= set(handlers)
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 204,
            "headers": [(b"allow", ", ".join(sorted(methods)).encode())],
        }
        body: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": b"",
            "more_body": False,
        }
        await send(start)
        await send(body)
