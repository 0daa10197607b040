"""The alerts of a run of steps name the failed step, and its models (docs/steps.md)."""

from __future__ import annotations

import json

import msgspec

from app.models import NodeSummary, RunStep, failed_step
from app.notify.messages import slack_message, webhook_body
from tests.unit.test_notify_messages import _run

STEPS = [
    RunStep(index=0, name="freshness", command="dbt source freshness", status="success"),
    RunStep(index=1, name="dbt build", command="dbt build", status="failed", exit_code=1),
    RunStep(index=2, name="dbt test", command="dbt test", status="skipped"),
    RunStep(
        index=3,
        name="docs <b>",
        command="dbt docs generate",
        run_on_failure=True,
        status="failed",
        exit_code=2,
    ),
]
BROKEN = NodeSummary(
    unique_id="model.demo.broken_orders",
    name="broken_orders",
    resource_type="model",
    status="error",
    message="Conversion Error",
    step=1,
)


def test_failed_step_is_the_first_that_failed_not_a_later_run_on_failure_step() -> None:
    found = failed_step(STEPS)
    assert found is not None and (found.index, found.name, found.exit_code) == (1, "dbt build", 1)
    assert failed_step(STEPS[:1]) is None
    assert failed_step([]) is None


def test_slack_names_the_step_and_the_model() -> None:
    run = _run(results=[BROKEN])
    run.steps = [msgspec.structs.replace(s) for s in STEPS]
    message = slack_message(run, "failure", "ntf_1", "", None)
    blocks = str(message.blocks)
    assert "*Failed step*\\n2 of 4: dbt build" in blocks
    assert "model broken_orders" in blocks
    assert message.text.startswith(
        "analytics / nightly failed at step 2 (dbt build): model broken_orders"
    )


def test_webhook_body_has_failed_step_and_each_node_its_step() -> None:
    run = _run(results=[BROKEN])
    run.steps = list(STEPS)
    body = json.loads(webhook_body(run, "failure", "ntf_1", None))
    assert body["failed_step"] == {
        "index": 1,
        "name": "dbt build",
        "status": "failed",
        "exit_code": 1,
    }
    assert body["failed_nodes"][0]["step"] == 1
    assert body["run"]["failed_step"] == body["failed_step"]
    assert [s["status"] for s in body["run"]["steps"]] == [
        "success",
        "failed",
        "skipped",
        "failed",
    ]


def test_a_run_of_one_command_has_no_failed_step() -> None:
    body = json.loads(webhook_body(_run(), "failure", "ntf_1", None))
    assert body["failed_step"] is None and body["run"]["steps"] == []
    assert "Failed step" not in str(slack_message(_run(), "failure", "n", "", None).blocks)
