"""The webhook body, its signature and the Slack message (app/notify/messages.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.models import JobConfig, NodeSummary, RunRecord, RunSnapshot, RunStatus
from app.notify.messages import (
    cut,
    duration_text,
    escape,
    log_tail,
    signature,
    slack_message,
    webhook_body,
)

START = datetime(2026, 4, 28, 2, 0, tzinfo=UTC)


def _run(
    status: RunStatus = "failed",
    results: list[NodeSummary] | None = None,
    error: str | None = "1 model failed",
    project: str = "analytics",
    job: str = "nightly",
) -> RunRecord:
    return RunRecord(
        id="run_abc",
        org_id="org_1",
        project_id="proj_1",
        job_id="job_1",
        job_name="analytics-nightly-20260428-020000",
        cronjob_name="analytics-nightly",
        namespace=None,
        job_type="build",
        status=status,
        start_time=START,
        end_time=START + timedelta(seconds=83.4),
        duration_seconds=83.4,
        triggered_by="scheduled",
        command="dbt build",
        exit_code=1 if status == "failed" else 0,
        error=error,
        job_version=3,
        executor="local",
        results=results or [],
        created_at=START,
        updated_at=START + timedelta(seconds=84),
        snapshot=RunSnapshot(
            project_name=project,
            project_kind="dbt",
            image=None,
            path=None,
            service_account=None,
            template_overrides={},
            project_environment={},
            project_resources={},
            job=JobConfig(name=job, command="dbt build"),
            job_version=3,
            argv=["dbt", "build"],
        ),
    )


def _node(name: str, status: str = "error", message: str | None = "boom") -> NodeSummary:
    return NodeSummary(
        unique_id=f"model.demo.{name}",
        name=name,
        resource_type="model",
        status=status,
        message=message,
    )


def test_signature_matches_an_independent_hmac() -> None:
    body = b'{"event":"failure"}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, 1700000000, body) == f"t=1700000000,v1={expected}"


def test_webhook_body_fields() -> None:
    run = _run(results=[_node("a"), _node("b", "success", None), _node("c", "fail", "x")])
    body: dict[str, Any] = json.loads(webhook_body(run, "failure", "ntf_1", "https://r.example"))
    assert body["event"] == "failure" and body["delivery_id"] == "ntf_1"
    assert body["occurred_at"] == "2026-04-28T02:01:23.400000Z"
    assert body["project"] == {"id": "proj_1", "name": "analytics", "kind": "dbt"}
    assert body["job"] == {"id": "job_1", "name": "nightly"}
    assert body["run"]["is_failed"] is True and body["run"]["is_terminal"] is True
    assert "snapshot" not in body["run"] and "org_id" not in body["run"]
    assert [n["name"] for n in body["failed_nodes"]] == ["a", "c"]
    assert body["run_url"] == "https://r.example/ui/runs/run_abc"


def test_started_event_occurs_at_the_start() -> None:
    body = json.loads(webhook_body(_run("running"), "started", "ntf_1", None))
    assert body["occurred_at"] == "2026-04-28T02:00:00Z" and body["run_url"] is None


def test_escape_and_cut() -> None:
    assert escape("a <b> & c") == "a &lt;b&gt; &amp; c"
    assert cut("abcdef", 4) == "abc…" and cut("abc", 4) == "abc"
    assert cut(escape("ab&"), 5) == "ab…"  # never half an escaped character


def test_duration_text() -> None:
    assert [duration_text(s) for s in (None, 4.25, 83.4, 7325)] == [
        "n/a",
        "4.2s",
        "1m 23s",
        "2h 02m",
    ]


def test_log_tail_shows_dbt_json_lines_as_text() -> None:
    event = {"info": {"msg": "Done. PASS=3 ERROR=1", "ts": "2026-04-28T02:01:23.1Z"}, "data": {}}
    text = "\n".join(f"line {i}" for i in range(100)) + "\n" + json.dumps(event)
    tail = log_tail(text, lines=3)
    assert tail == "line 98\nline 99\n02:01:23  Done. PASS=3 ERROR=1"


def test_failure_message_content() -> None:
    message = slack_message(
        _run(results=[_node("broken_orders", message="Conversion Error: 'abc' <x>")]),
        "failure",
        "ntf_1",
        "12:00 START\n12:01 ERROR creating model broken_orders\n",
        "https://r.example",
    )
    blocks = str(message.blocks)
    assert message.blocks[0]["type"] == "header"
    assert "analytics / nightly failed" in message.blocks[0]["text"]["text"]
    assert "*Trigger*\\nscheduled" in blocks and "1m 23s" in blocks and "exit code 1" in blocks
    assert "model broken_orders" in blocks and "&lt;x&gt;" in blocks
    assert "ERROR creating model broken_orders" in blocks
    assert "<https://r.example/ui/runs/run_abc|run_abc>" in blocks
    assert "ntf_1" in str(message.blocks[-1])
    assert message.text.startswith("analytics / nightly failed: model broken_orders")
    assert message.metadata == {
        "event_type": "runyard_run_failure",
        "event_payload": {
            "delivery_id": "ntf_1",
            "run_id": "run_abc",
            "project_id": "proj_1",
            "job_id": "job_1",
            "status": "failed",
        },
    }


def test_success_message_has_no_error_section() -> None:
    message = slack_message(_run("success", error=None), "success", "ntf_2", "", None)
    assert ":white_check_mark:" in message.blocks[0]["text"]["text"]
    assert "*Error*" not in str(message.blocks) and "`run_abc`" in str(message.blocks)


def _text_sizes(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
                total += len(block["text"]["text"])
            fields = block.get("fields", [])
            assert len(fields) <= 10
            for field in fields:
                assert len(field["text"]) <= 2000
                total += len(field["text"])
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 2000 for e in block["elements"])
    return total


@settings(max_examples=60, deadline=None)
@given(
    names=st.text(min_size=1, max_size=400),
    error=st.text(max_size=20_000),
    nodes=st.lists(
        st.tuples(st.text(min_size=1, max_size=300), st.text(max_size=8000)), max_size=70
    ),
    log=st.text(max_size=30_000),
)
def test_slack_limits_hold_for_any_input(
    names: str, error: str, nodes: list[tuple[str, str]], log: str
) -> None:
    run = _run(
        results=[_node(n, message=m) for n, m in nodes], error=error, project=names, job=names
    )
    message = slack_message(run, "failure", "ntf_x", log, "https://r.example")
    assert len(message.blocks) <= 50
    assert _text_sizes(message.blocks) <= 12_000
    assert len(message.text) <= 3000
    msgspec.json.encode(message)  # serialisable as sent


@pytest.mark.parametrize("fence", ["```", "``````", "a```b"])
def test_code_fences_inside_errors_do_not_break_the_block(fence: str) -> None:
    message = slack_message(
        _run(results=[_node("m", message=f"before {fence} after")]), "failure", "n", "", None
    )
    node_section = next(b for b in message.blocks if "*model m*" in str(b))
    assert node_section["text"]["text"].count("```") == 2
