"""schemathesis against the service's own OpenAPI document: every operation, with a valid
admin token, finds no 5xx and no response that the document does not describe.

The number of examples per operation is bounded for CI (RUNYARD_FUZZ_EXAMPLES, default 8);
`just fuzz` runs a longer pass. Hostile bodies (nested 10,000 deep, 2 MB, huge strings in
every string field) are sent explicitly to every operation that takes a body.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import schemathesis.specs.openapi.checks as checks
from hypothesis import HealthCheck, settings

from app.api.openapi import document_problems
from app.container import Container
from app.main import create_app
from app.settings import Settings

EXAMPLES = int(os.environ.get("RUNYARD_FUZZ_EXAMPLES", "8"))

# schemathesis reads the document when the module is collected, so the app is built here,
# on its own temporary database; the local executor is never started.
_WORKDIR = Path(tempfile.mkdtemp(prefix="runyard-fuzz-"))
CONTAINER = Container(Settings(database=str(_WORKDIR / "fuzz.db"), executor="local"))
TOKEN, _ = CONTAINER.tokens.create("fuzz", "admin")
APP = create_app(container=CONTAINER)
document_problems(APP)

schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any) -> None:
    # positive_data_acceptance is left out on purpose: runyard validates more than JSON
    # Schema can say (commands against allowlists, cron expressions, time zones, names that
    # become Kubernetes names), and answers those with a documented 422 problem.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[checks.positive_data_acceptance],
    )


# --- hostile bodies, sent explicitly ---------------------------------------------------------
# Property-based generation rarely builds a body ten thousand levels deep or close to the
# size limit, so each operation that takes a body also gets these, deterministically (a few
# hundred requests in all, seconds in CI): JSON nested 10,000 deep (bare, and inside a field),
# a 2 MB body, and a huge string in every string field, alone and all at once.

DOCUMENT: dict[str, Any] = APP.openapi_schema.to_schema()
HUGE = 600_000  # under RUNYARD_MAX_BODY_BYTES (1 MiB), so the handler and services see it
# Its own app over the same container: schemathesis runs APP's lifespan in a portal of its own.
HOSTILE_APP = create_app(container=CONTAINER)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return resolved
    for key in ("oneOf", "anyOf"):
        for option in schema.get(key, []):
            if option.get("type") != "null":
                return _resolve(option)
    return schema


def _types(schema: dict[str, Any]) -> set[str]:
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    for key in ("oneOf", "anyOf"):
        for option in schema.get(key, []):
            found |= _types(_resolve(option) if "$ref" in option else option)
    return found


def _huge_values(schema: dict[str, Any]) -> dict[str, Any]:
    """A huge string for each field that holds strings: the field itself, a map's values,
    or a list's items."""
    values: dict[str, Any] = {}
    for name, raw in _resolve(schema).get("properties", {}).items():
        field = _resolve(raw) if "$ref" in raw else raw
        types = _types(field)
        if "string" in types:
            values[name] = "x" * HUGE
        elif "object" in types:
            values[name] = {"K" * 200: "v" * HUGE}
        elif "array" in types:
            values[name] = ["i" * HUGE]
    return values


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _operations_with_bodies() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                found.append((method.upper(), path, schema))
    return found


def _hostile_bodies(schema: dict[str, Any]) -> list[tuple[str, bytes]]:
    huge = _huge_values(schema)
    first = next(iter(huge), "name")
    bodies = [
        ("list nested 10000 deep", b"[" * 10_000 + b"]" * 10_000),
        ("object nested 10000 deep", _nested(10_000).encode()),
        (f"{first} nested 10000 deep", f'{{"{first}": {_nested(10_000)}}}'.encode()),
        ("2 MB body", json.dumps({first: "x" * 2_000_000}).encode()),
        ("every string field huge", json.dumps(dict.fromkeys(huge, "y" * 100000)).encode()),
    ]
    bodies += [(f"{name} huge", json.dumps({name: value}).encode()) for name, value in huge.items()]
    return bodies


_IDS: dict[str, str] = {}


def _ids(client: Any) -> dict[str, str]:
    """Real ids for the path parameters (made once), so bodies reach the services' checks."""
    from tests.factories import run_record

    if not _IDS:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        project = client.post(
            "/api/v1/projects", json={"name": "hostile", "kind": "dbt"}, headers=headers
        ).json()
        job = client.post(
            f"/api/v1/projects/{project['id']}/jobs",
            json={"name": "hostile", "command": "dbt build"},
            headers=headers,
        ).json()
        principal = CONTAINER.tokens.authenticate(TOKEN)
        run = run_record(
            org_id=principal.org_id, project_id=project["id"], job_id=job["id"], status="failed"
        )
        assert CONTAINER.store.runs.insert(run)
        environment = client.get(
            f"/api/v1/projects/{project['id']}/environments", headers=headers
        ).json()["environments"][0]
        _IDS.update(
            project_id=project["id"],
            job_id=job["id"],
            run_id=run.id,
            environment_id=environment["id"],
        )
    return _IDS


@pytest.mark.parametrize(
    ("method", "path", "schema"),
    _operations_with_bodies(),
    ids=[f"{m} {p}" for m, p, _ in _operations_with_bodies()],
)
def test_hostile_bodies_never_answer_5xx(method: str, path: str, schema: dict[str, Any]) -> None:
    from litestar.testing import TestClient

    documented = set(DOCUMENT["paths"][path][method.lower()]["responses"])
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with TestClient(HOSTILE_APP) as client:
        url = path.format(**_ids(client))
        for what, body in _hostile_bodies(schema):
            response = client.request(method, url, content=body, headers=headers)
            assert response.status_code < 500, (what, response.text[:500])
            assert str(response.status_code) in documented, (what, response.status_code)
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")
                assert len(response.content) < 50_000, (what, "the answer echoes the input")
