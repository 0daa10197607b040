"""schemathesis against the service's own OpenAPI document: every operation, with a valid
admin token, finds no 5xx and no response that the document does not describe.

The number of examples per operation is bounded for CI (RUNYARD_FUZZ_EXAMPLES, default 8);
`just fuzz` runs a longer pass.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

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
CONTAINER = Container(
    Settings(database=str(_WORKDIR / "fuzz.db"), executor="local", workdir=str(_WORKDIR))
)
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
