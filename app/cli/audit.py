"""`runyard audit`: the organization's audit trail, newest first (docs/audit.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from app.cli.common import Api, client_command
from app.exit_codes import EXIT_OK


def _changes(diff: dict[str, Any] | None, width: int = 80) -> str:
    """``field: before -> after`` pairs on one line, cut to ``width``."""
    if not diff:
        return ""
    parts = [
        f"{name}: {json.dumps(pair[0])} -> {json.dumps(pair[1])}" for name, pair in diff.items()
    ]
    text = "; ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("audit")
@click.option("--since", help="only events since an RFC 3339 time or an age (90m, 24h, 7d)")
@click.option("--actor", help="only events by this token name or id ('cli' for the CLI)")
@click.option("--object", "object_ref", help="only events about this object (id, name or type)")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", help="the next page: the cursor the previous page printed")
@client_command
def audit(
    api: Api,
    since: str | None,
    actor: str | None,
    object_ref: str | None,
    limit: int,
    cursor: str | None,
) -> int:
    """Who changed what, newest first (org admin tokens)."""
    body = api.client.get(
        "/api/v1/audit", since=since, actor=actor, object=object_ref, limit=limit, cursor=cursor
    )
    if api.as_json:
        api.out.document(body)
        return EXIT_OK
    api.out.table(
        ["AT", "ACTOR", "ACTION", "OBJECT", "FROM", "REQUEST", "CHANGES"],
        [
            [
                e["at"][:19].replace("T", " "),
                e["actor_name"],
                e["action"],
                e["object_name"] or e["object_id"],
                e["source_address"] or "-",
                e["request_id"] or "-",
                _changes(e["diff"]),
            ]
            for e in body["items"]
        ],
    )
    if body.get("next_cursor"):
        api.out.note(f"more: runyard audit --cursor {body['next_cursor']}")
    return EXIT_OK
