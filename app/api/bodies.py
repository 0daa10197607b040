"""Request bodies: JSON nested deeper than any runyard body needs is refused with a 400.

msgspec decodes recursively and gives up with a RecursionError near Python's recursion
limit (about a thousand levels), which would surface as a 500; a body a few hundred levels
deep decodes, and then meets recursive code later (validation, storage, rendering). So the
limit is enforced here, once, where every JSON body is decoded: a body nested deeper than
``MAX_JSON_DEPTH`` never reaches a handler. The deepest real body (a Kubernetes affinity
inside a project's template_overrides) is about ten levels.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.errors import BadRequest

MAX_JSON_DEPTH = 32


def _too_deep() -> BadRequest:
    return BadRequest(
        f"The request body nests JSON objects and arrays more than {MAX_JSON_DEPTH} levels "
        "deep; no runyard request needs that many. Send a flatter body."
    )


def deeper_than(value: Any, limit: int) -> bool:
    """Whether decoded JSON nests objects or arrays more than ``limit`` levels deep
    (without recursion, so any depth can be measured)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class RunyardRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            value = await super().json()
        except RecursionError:
            raise _too_deep() from None
        body = await self.body()
        # Counting brackets is cheap and rules out nearly every body before the walk.
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and deeper_than(
            value, MAX_JSON_DEPTH
        ):
            raise _too_deep()
        return value
