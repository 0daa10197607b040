"""app.engines.results on outputs captured from the example projects with dbt-core 1.11
and SQLMesh 0.236 (tests/unit/fixtures; capture.sh there regenerates them)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engines.results import (
    MESSAGE_LIMIT,
    dbt_invocation_id,
    dbt_invocation_lines,
    dbt_log_text,
    describe,
    failed_nodes,
    first_error_line,
    parse_dbt_log,
    parse_dbt_log_line,
    parse_dbt_output,
    parse_dbt_text_output,
    parse_sqlmesh_output,
    read_dbt_run_results,
    strip_ansi,
    summarise_failure,
    trim_message,
)
from app.models import NodeSummary

FIXTURES = Path(__file__).parent / "fixtures"
BROKEN_ERROR = "Conversion Error: Could not convert string 'abc' to INT32"
BROKEN_SUMMARY = f"model broken_orders failed: {BROKEN_ERROR}"


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def lines(name: str) -> list[str]:
    return text(name).splitlines()


def event_line(name: str, *, fixture: str = "dbt_build_all.jsonl", contains: str = "") -> str:
    """The first JSON line of ``fixture`` whose event is ``name`` (and contains ``contains``)."""
    for line in lines(fixture):
        if json.loads(line)["info"]["name"] == name and contains in line:
            return line
    raise AssertionError(f"no {name} event in {fixture}")


def run_results_metadata(name: str) -> dict[str, str]:
    metadata = json.loads(text(name))["metadata"]
    assert isinstance(metadata, dict)
    return metadata


# The invocations that wrote the captured run_results.json files (captured with the logs
# of the same invocations: dbt_build_ok.jsonl, dbt_run_broken_logfile.jsonl).
BUILD_OK_ID = run_results_metadata("dbt_run_results_build_ok.json")["invocation_id"]
BROKEN_ID = run_results_metadata("dbt_run_results_broken.json")["invocation_id"]


def statuses(results: list[NodeSummary]) -> dict[str, str]:
    return {r.unique_id: r.status for r in results}


# --- parse_dbt_log_line ----------------------------------------------------------------------


def test_model_result_event() -> None:
    result = parse_dbt_log_line(event_line("LogModelResult", contains="customer_orders"))
    assert result == NodeSummary(
        unique_id="model.dbt_demo.customer_orders",
        name="customer_orders",
        resource_type="model",
        status="success",  # the event's own status is "OK"; node_info says success
        execution_time=result.execution_time if result else None,
    )
    assert result is not None
    assert result.execution_time is not None
    assert result.execution_time > 0


def test_model_error_event_has_no_message_of_its_own() -> None:
    result = parse_dbt_log_line(event_line("LogModelResult", contains="broken_orders"))
    assert result is not None
    assert (result.unique_id, result.status, result.message) == (
        "model.dbt_demo.broken_orders",
        "error",
        None,
    )


def test_seed_and_test_events() -> None:
    seed = parse_dbt_log_line(event_line("LogSeedResult"))
    assert seed is not None
    assert (seed.resource_type, seed.status) == ("seed", "success")
    test = parse_dbt_log_line(event_line("LogTestResult", contains='"status": "fail"'))
    assert test is not None
    assert (test.unique_id, test.name, test.resource_type, test.status) == (
        "test.dbt_demo.assert_customers_spend_at_least_10",
        "assert_customers_spend_at_least_10",
        "test",
        "fail",
    )
    passed = parse_dbt_log_line(event_line("LogTestResult", contains='"status": "pass"'))
    assert passed is not None
    assert passed.status == "pass"


def test_skipped_and_warned_nodes() -> None:
    skipped = parse_dbt_log_line(event_line("SkippingDetails", fixture="dbt_build_skip_warn.jsonl"))
    assert skipped is not None
    assert (skipped.unique_id, skipped.status) == ("model.dbt_demo.after_broken", "skipped")
    warned = parse_dbt_log_line(event_line("LogTestResult", fixture="dbt_build_skip_warn.jsonl"))
    assert warned is not None
    assert warned.status == "warn"


def test_node_finished_event_carries_the_message() -> None:
    result = parse_dbt_log_line(event_line("NodeFinished", fixture="dbt_run_broken_logfile.jsonl"))
    assert result is not None
    assert (result.unique_id, result.status) == ("model.dbt_demo.broken_orders", "error")
    assert result.message is not None
    assert result.message.startswith("Runtime Error in model broken_orders")
    assert BROKEN_ERROR in result.message


@pytest.mark.parametrize(
    "line",
    [
        "",
        "18:57:04  1 of 1 START sql table model main.broken_orders ....... [RUN]",
        "{not json",
        "[1, 2, 3]",
        '{"info": "x", "data": {}}',
        '{"info": {"name": "LogModelResult"}, "data": {"node_info": "x"}}',
        '{"info": {"name": "LogModelResult"}, "data": {"node_info": {"unique_id": ""}}}',
    ],
)
def test_other_lines_give_none(line: str) -> None:
    assert parse_dbt_log_line(line) is None


def test_non_result_events_give_none() -> None:
    for name in ("MainReportVersion", "LogStartLine", "RunResultError", "StatsLine"):
        assert parse_dbt_log_line(event_line(name)) is None


def test_started_node_is_not_a_result() -> None:
    line = json.dumps(
        {
            "info": {"name": "LogModelResult", "invocation_id": "x"},
            "data": {
                "status": "",
                "node_info": {"unique_id": "model.p.m", "node_status": "started"},
            },
        }
    )
    assert parse_dbt_log_line(line) is None


def test_names_default_from_the_unique_id() -> None:
    line = json.dumps(
        {
            "info": {"name": "LogTestResult"},
            "data": {
                "status": "fail",
                "execution_time": 1,
                "node_info": {"unique_id": "test.pkg.not_null_x.abc123", "node_status": "fail"},
            },
        }
    )
    assert parse_dbt_log_line(line) == NodeSummary(
        unique_id="test.pkg.not_null_x.abc123",
        name="not_null_x",
        resource_type="test",
        status="fail",
        execution_time=1.0,
    )


# --- parse_dbt_log ---------------------------------------------------------------------------


def test_successful_build() -> None:
    results = parse_dbt_log(lines("dbt_build_ok.jsonl"))
    assert len(results) == 16
    assert {r.status for r in results} == {"success", "pass"}
    assert {r.resource_type for r in results} == {"seed", "model", "test"}
    assert failed_nodes(results) == []
    assert all(r.message is None for r in results)


def test_run_result_error_message_is_joined_to_its_node() -> None:
    results = parse_dbt_log(lines("dbt_run_broken.jsonl"))
    assert len(results) == 1
    [broken] = results
    assert (broken.unique_id, broken.name, broken.resource_type, broken.status) == (
        "model.dbt_demo.broken_orders",
        "broken_orders",
        "model",
        "error",
    )
    assert broken.execution_time is not None
    assert broken.message is not None
    assert BROKEN_ERROR in broken.message
    assert "LINE 14:" in broken.message


def test_full_build_with_an_error_and_a_failed_test() -> None:
    results = parse_dbt_log(lines("dbt_build_all.jsonl"))
    assert len(results) == 18
    failed = failed_nodes(results)
    assert statuses(failed) == {
        "model.dbt_demo.broken_orders": "error",
        "test.dbt_demo.assert_customers_spend_at_least_10": "fail",
    }
    assert failed[1].message == "Got 1 result, configured to fail if != 0"


def test_skips_and_warnings_are_not_failures() -> None:
    results = parse_dbt_log(lines("dbt_build_skip_warn.jsonl"))
    assert statuses(results) == {
        "model.dbt_demo.broken_orders": "error",
        "test.dbt_demo.assert_customers_spend_at_least_10": "warn",
        "model.dbt_demo.after_broken": "skipped",
    }
    warned = next(r for r in results if r.status == "warn")
    assert warned.message == "Got 1 result, configured to warn if != 0"
    assert [r.name for r in failed_nodes(results)] == ["broken_orders"]


def test_log_file_with_debug_events() -> None:
    results = parse_dbt_log(lines("dbt_run_broken_logfile.jsonl"))
    assert [(r.unique_id, r.status) for r in results] == [("model.dbt_demo.broken_orders", "error")]
    assert results[0].message is not None
    assert BROKEN_ERROR in results[0].message


def test_compile_error_has_no_node_results() -> None:
    assert parse_dbt_log(lines("dbt_compile_error.jsonl")) == []


def test_message_event_without_a_result_event() -> None:
    results = parse_dbt_log([event_line("RunResultError", fixture="dbt_run_broken.jsonl")])
    assert statuses(results) == {"model.dbt_demo.broken_orders": "error"}
    assert results[0].message is not None
    assert BROKEN_ERROR in results[0].message


def test_text_lines_in_a_json_log_are_ignored() -> None:
    mixed = ["runyard: starting", *lines("dbt_run_broken.jsonl"), "Traceback: nothing"]
    assert parse_dbt_log(mixed) == parse_dbt_log(lines("dbt_run_broken.jsonl"))


# --- invocation ids --------------------------------------------------------------------------


def test_invocation_id_of_json_logs() -> None:
    assert dbt_invocation_id(lines("dbt_build_ok.jsonl")) == BUILD_OK_ID
    assert dbt_invocation_id(lines("dbt_run_broken_logfile.jsonl")) == BROKEN_ID


def test_invocation_id_of_text_logs_is_none() -> None:
    assert dbt_invocation_id(lines("dbt_run_broken.txt")) is None
    assert dbt_invocation_id([]) is None


def test_appended_log_file_gives_the_latest_invocation() -> None:
    appended = lines("dbt_build_ok.jsonl") + lines("dbt_run_broken.jsonl")
    latest = dbt_invocation_id(lines("dbt_run_broken.jsonl"))
    assert latest is not None
    assert dbt_invocation_id(appended) == latest
    own = dbt_invocation_lines(appended, latest)
    assert own == lines("dbt_run_broken.jsonl")
    assert [r.name for r in parse_dbt_log(own)] == ["broken_orders"]


def test_json_lines_as_human_text() -> None:
    rendered = [dbt_log_text(line) for line in lines("dbt_run_broken.jsonl")]
    assert rendered[0].endswith("  Running with dbt=1.11.16")
    assert rendered[0][:8].count(":") == 2  # HH:MM:SS
    assert any("Failure in model broken_orders" in line for line in rendered)
    assert dbt_log_text("plain \x1b[31mred\x1b[0m\n") == "plain red"


# --- read_dbt_run_results --------------------------------------------------------------------


def _project_with(tmp_path: Path, fixture: str) -> Path:
    (tmp_path / "target").mkdir()
    shutil.copy(FIXTURES / fixture, tmp_path / "target" / "run_results.json")
    return tmp_path


def test_run_results_of_the_invocation(tmp_path: Path) -> None:
    project = _project_with(tmp_path, "dbt_run_results_broken.json")
    results = read_dbt_run_results(project, BROKEN_ID)
    assert results is not None
    assert [(r.unique_id, r.name, r.resource_type, r.status) for r in results] == [
        ("model.dbt_demo.broken_orders", "broken_orders", "model", "error")
    ]
    assert results[0].message is not None
    assert BROKEN_ERROR in results[0].message
    assert results[0].execution_time is not None


def test_run_results_of_a_build(tmp_path: Path) -> None:
    project = _project_with(tmp_path, "dbt_run_results_build_ok.json")
    results = read_dbt_run_results(project, BUILD_OK_ID)
    assert results is not None
    assert statuses(results) == statuses(parse_dbt_log(lines("dbt_build_ok.jsonl")))
    assert all(r.message is None for r in results)  # "OK", "INSERT 5" are not errors
    tests = [r for r in results if r.resource_type == "test"]
    assert "not_null_stg_orders_order_id" in {r.name for r in tests}


def test_run_results_of_another_invocation_are_ignored(tmp_path: Path) -> None:
    project = _project_with(tmp_path, "dbt_run_results_broken.json")
    stale_for = dbt_invocation_id(lines("dbt_compile_error.jsonl"))
    assert stale_for is not None
    assert read_dbt_run_results(project, stale_for) is None


def test_run_results_without_an_invocation_id(tmp_path: Path) -> None:
    project = _project_with(tmp_path, "dbt_run_results_broken.json")
    generated = datetime.fromisoformat(
        run_results_metadata("dbt_run_results_broken.json")["generated_at"].replace("Z", "+00:00")
    )
    assert read_dbt_run_results(project, None) is None
    assert read_dbt_run_results(project, None, not_before=generated + timedelta(seconds=5)) is None
    found = read_dbt_run_results(project, None, not_before=generated - timedelta(seconds=5))
    assert found is not None
    assert [r.name for r in found] == ["broken_orders"]
    naive = (generated - timedelta(seconds=5)).replace(tzinfo=None)  # read as UTC
    assert read_dbt_run_results(project, None, not_before=naive) is not None


def test_missing_or_broken_run_results(tmp_path: Path) -> None:
    assert read_dbt_run_results(tmp_path, "x") is None
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "run_results.json").write_text('{"metadata": ')
    assert read_dbt_run_results(tmp_path, "x") is None
    (tmp_path / "target" / "run_results.json").write_text("[]")
    assert read_dbt_run_results(tmp_path, "x") is None
    (tmp_path / "target" / "run_results.json").write_text(
        '{"metadata": {"invocation_id": "x"}, "results": "no"}'
    )
    assert read_dbt_run_results(tmp_path, "x") is None


def test_run_results_in_another_target_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(FIXTURES / "dbt_run_results_broken.json", elsewhere / "run_results.json")
    invocation = BROKEN_ID
    assert read_dbt_run_results(tmp_path, invocation, target_path=elsewhere) is not None
    assert read_dbt_run_results(tmp_path, invocation, target_path="elsewhere") is not None
    assert read_dbt_run_results(tmp_path, invocation) is None


# --- dbt text output -------------------------------------------------------------------------


def test_text_output_of_the_broken_model() -> None:
    results = parse_dbt_text_output(text("dbt_run_broken.txt"))
    assert [(r.unique_id, r.name, r.resource_type, r.status) for r in results] == [
        ("model.broken_orders", "broken_orders", "model", "error")
    ]
    assert results[0].message == (
        "Runtime Error in model broken_orders (models/broken/broken_orders.sql)\n"
        f"{BROKEN_ERROR}\n"
        "\n"
        "LINE 14:     cast('abc' as integer) as broken_amount\n"
        "             ^"
    )


def test_text_output_of_a_full_build() -> None:
    results = parse_dbt_text_output(text("dbt_build_all.txt"))
    assert [(r.name, r.status) for r in results] == [
        ("broken_orders", "error"),
        ("assert_customers_spend_at_least_10", "fail"),
    ]
    assert results[1].message == "Got 1 result, configured to fail if != 0"


def test_text_output_with_a_warning() -> None:
    results = parse_dbt_text_output(text("dbt_build_skip_warn.txt"))
    assert [(r.name, r.status) for r in results] == [
        ("broken_orders", "error"),
        ("assert_customers_spend_at_least_10", "warn"),
    ]
    assert results[1].message == "Got 1 result, configured to warn if != 0"


def test_text_output_without_failures() -> None:
    assert parse_dbt_text_output(text("dbt_compile_error.txt")) == []
    assert parse_dbt_text_output("") == []


def test_coloured_text_output() -> None:
    coloured = (
        text("dbt_run_broken.txt")
        .replace("Failure in model", "\x1b[31mFailure in model")
        .replace(".sql)\n", ".sql)\x1b[0m\n", 1)
    )
    assert parse_dbt_text_output(coloured) == parse_dbt_text_output(text("dbt_run_broken.txt"))


def test_test_that_errors_in_text_output() -> None:
    output = (
        "10:00:00  Failure in test my_test (tests/my_test.sql)\n"
        "10:00:00    Database Error in test my_test (tests/my_test.sql)\n"
        "  Catalog Error: Table with name nope does not exist!\n"
        "10:00:00  \n"
        "10:00:00  Done. PASS=0 WARN=0 ERROR=1 SKIP=0 NO-OP=0 TOTAL=1\n"
    )
    [result] = parse_dbt_text_output(output)
    assert (result.resource_type, result.status) == ("test", "error")
    assert first_error_line(result.message) == "Catalog Error: Table with name nope does not exist!"


def test_parse_dbt_output_picks_the_format() -> None:
    assert parse_dbt_output(text("dbt_run_broken.jsonl")) == parse_dbt_log(
        lines("dbt_run_broken.jsonl")
    )
    assert parse_dbt_output(text("dbt_run_broken.txt")) == parse_dbt_text_output(
        text("dbt_run_broken.txt")
    )


# --- SQLMesh ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    [
        "sqlmesh_plan_ok.txt",
        "sqlmesh_run_nothing.txt",
        "sqlmesh_run_next_day.txt",
        "sqlmesh_plan_load_error.txt",
    ],
)
def test_sqlmesh_outputs_without_failed_models(fixture: str) -> None:
    assert parse_sqlmesh_output(text(fixture)) == []


@pytest.mark.parametrize("fixture", ["sqlmesh_run_model_fail.txt", "sqlmesh_plan_model_fail.txt"])
def test_sqlmesh_model_failure(fixture: str) -> None:
    results = parse_sqlmesh_output(text(fixture))
    assert [(r.unique_id, r.name, r.resource_type, r.status) for r in results] == [
        ('"demo"."shop"."daily_orders"', "shop.daily_orders", "model", "error")
    ]
    message = results[0].message
    assert message is not None
    assert message.startswith("ConversionException:\n  " + BROKEN_ERROR)
    assert "```" not in message
    # daily_revenue was skipped, not failed
    assert "daily_revenue" not in message


def test_sqlmesh_audit_failure_in_a_run() -> None:
    results = parse_sqlmesh_output(text("sqlmesh_run_audit_fail.txt"))
    assert [(r.unique_id, r.name, r.resource_type, r.status) for r in results] == [
        (
            "audit:assert_positive_revenue on shop.daily_revenue",
            "shop.daily_revenue",
            "audit",
            "failed",
        )
    ]
    message = results[0].message
    assert message is not None
    assert message.startswith("'assert_positive_revenue' audit error: 1 row failed")
    assert "Audit query" in message


def test_sqlmesh_audit_command_failure() -> None:
    results = parse_sqlmesh_output(text("sqlmesh_audit_cmd_fail.txt"))
    assert [(r.unique_id, r.name, r.resource_type, r.status) for r in results] == [
        (
            "audit:assert_positive_revenue on shop.daily_revenue",
            "shop.daily_revenue",
            "audit",
            "failed",
        )
    ]
    assert results[0].message is not None
    assert results[0].message.startswith("Got 3 results, expected 0.")


def test_several_failed_models() -> None:
    output = """\
**Failed models**
* `"db"."a"."one"`

  ```
    BinderException:
      Binder Error: column x not found
  ```
* `"db"."b"."two"`

  ```
    'positive' audit error: 2 rows failed
  ```
* `c.three`

Error: Run failed.
"""
    results = parse_sqlmesh_output(output)
    assert [(r.unique_id, r.name, r.resource_type) for r in results] == [
        ('"db"."a"."one"', "a.one", "model"),
        ("audit:positive on b.two", "b.two", "audit"),
        ("c.three", "c.three", "model"),
    ]
    assert results[0].message == "BinderException:\n  Binder Error: column x not found"
    assert results[2].message is None
    assert summarise_failure("sqlmesh", results, 1, output) == (
        "model a.one failed: Binder Error: column x not found; "
        "audit positive on b.two failed: 2 rows failed; model c.three failed"
    )


def test_sqlmesh_output_with_colours_and_carriage_returns() -> None:
    plain = text("sqlmesh_run_model_fail.txt")
    noisy = "\x1b[1m" + plain.replace("\n", "\r\n").replace("**Failed", "\x1b[31m**Failed")
    assert parse_sqlmesh_output(noisy) == parse_sqlmesh_output(plain)


def test_quoted_names_with_dots() -> None:
    output = '**Failed models**\n* `"cat"."my.schema"."m"`\n'
    [result] = parse_sqlmesh_output(output)
    assert result.name == "my.schema.m"


# --- failed_nodes, describe, messages ----------------------------------------------------------


def _node(status: str, name: str | None = None) -> NodeSummary:
    return NodeSummary(
        unique_id=f"model.p.{status}", name=name or status, resource_type="model", status=status
    )


def test_failed_nodes_are_errors_and_failures_only() -> None:
    nodes = [
        _node(s) for s in ("success", "error", "fail", "warn", "skipped", "pass", "failed", "no-op")
    ]
    assert [n.status for n in failed_nodes(nodes)] == ["error", "fail", "failed"]
    assert failed_nodes([_node("runtime error"), _node("partial success")]) != []


def test_describe() -> None:
    assert describe(_node("error", name="broken_orders")) == "model broken_orders"
    audit = NodeSummary(
        unique_id="audit:positive on demo.t", name="demo.t", resource_type="audit", status="failed"
    )
    assert describe(audit) == "audit positive on demo.t"


def test_trim_message() -> None:
    assert trim_message(None) is None
    assert trim_message("  \n \n") is None
    assert trim_message("\n\n  indented\n  more\n\n") == "  indented\n  more"
    long = trim_message("x" * 5000)
    assert long is not None
    assert len(long) == MESSAGE_LIMIT
    assert long.endswith("…")
    assert trim_message("\x1b[31mred\x1b[0m") == "red"


def test_first_error_line() -> None:
    assert first_error_line(None) == ""
    assert first_error_line("only line") == "only line"
    assert first_error_line("ConversionException:\n  " + BROKEN_ERROR) == BROKEN_ERROR
    assert first_error_line("LINE 1: select\n  ^") == "LINE 1: select"


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[0m18:46:39  \x1b[32mCompleted successfully\x1b[0m") == (
        "18:46:39  Completed successfully"
    )


# --- summarise_failure -----------------------------------------------------------------------


def test_summary_of_the_broken_model_from_each_source(tmp_path: Path) -> None:
    tail = text("dbt_run_broken.txt")
    from_json = parse_dbt_log(lines("dbt_run_broken.jsonl"))
    from_text = parse_dbt_text_output(tail)
    from_file = read_dbt_run_results(
        _project_with(tmp_path, "dbt_run_results_broken.json"),
        BROKEN_ID,
    )
    assert from_file is not None
    for results in (from_json, from_text, from_file):
        assert summarise_failure("dbt", results, 1, tail) == BROKEN_SUMMARY


def test_summary_of_a_test_failure() -> None:
    results = parse_dbt_log(lines("dbt_build_all.jsonl"))
    assert summarise_failure("dbt", results, 1, "") == (
        f"{BROKEN_SUMMARY}; "
        "test assert_customers_spend_at_least_10 failed: Got 1 result, configured to fail if != 0"
    )


def test_summary_ignores_warnings_and_skips() -> None:
    results = parse_dbt_log(lines("dbt_build_skip_warn.jsonl"))
    assert summarise_failure("dbt", results, 1, "") == BROKEN_SUMMARY


@pytest.mark.parametrize("fixture", ["dbt_compile_error.txt", "dbt_compile_error.jsonl"])
def test_summary_of_a_compile_error(fixture: str) -> None:
    assert summarise_failure("dbt", [], 2, text(fixture)) == (
        "dbt exited with code 2: Compilation Error: Model 'model.dbt_demo.broken_orders' "
        "(models/broken/broken_orders.sql) depends on a node named 'stg_orderz' which was "
        "not found"
    )


def test_summary_of_sqlmesh_failures() -> None:
    model = text("sqlmesh_run_model_fail.txt")
    assert summarise_failure("sqlmesh", parse_sqlmesh_output(model), 1, model) == (
        f"model shop.daily_orders failed: {BROKEN_ERROR}"
    )
    audit = text("sqlmesh_run_audit_fail.txt")
    assert summarise_failure("sqlmesh", parse_sqlmesh_output(audit), 1, audit) == (
        "audit assert_positive_revenue on shop.daily_revenue failed: 1 row failed"
    )


def test_summary_of_a_sqlmesh_load_error() -> None:
    output = text("sqlmesh_plan_load_error.txt")
    summary = summarise_failure("sqlmesh", parse_sqlmesh_output(output), 1, output)
    assert summary.startswith("sqlmesh exited with code 1: Failed to load model from file '")
    assert summary.endswith(
        "/models/daily_revenue.sql': Invalid expression / Unexpected token. Line 21, Col: 5."
    )


def test_summary_of_a_success_is_empty() -> None:
    assert summarise_failure("dbt", parse_dbt_log(lines("dbt_build_ok.jsonl")), 0, "") == ""
    assert summarise_failure("sqlmesh", [], 0, text("sqlmesh_plan_ok.txt")) == ""


def test_summary_without_a_recognised_error() -> None:
    assert summarise_failure("dbt", [], 1, "") == "dbt exited with code 1"
    assert summarise_failure("dbt", [], None, "") == "dbt ended without an exit code"
    assert summarise_failure("dbt", [], 137, "working\n") == (
        "dbt exited with code 137 (killed by SIGKILL): working"
    )
    assert summarise_failure("sqlmesh", [], -15, "") == "sqlmesh was killed by SIGTERM"
    assert (
        summarise_failure("dbt", [], 127, "runyard: 'dbt' was not found on PATH (/usr/bin)\n")
        == "dbt exited with code 127: runyard: 'dbt' was not found on PATH (/usr/bin)"
    )


def test_summary_of_many_failures_is_one_bounded_line() -> None:
    results = [
        NodeSummary(
            unique_id=f"model.p.m{i}",
            name=f"m{i}",
            resource_type="model",
            status="error",
            message="Database Error in model m (x.sql)\n  " + "boom " * 300,
        )
        for i in range(5)
    ]
    summary = summarise_failure("dbt", results, 1, "")
    assert "\n" not in summary
    assert summary.startswith("model m0 failed: boom boom")
    assert len(summary) <= 1000
    short = [
        NodeSummary(unique_id=f"m{i}", name=f"m{i}", resource_type="model", status="error")
        for i in range(5)
    ]
    assert summarise_failure("dbt", short, 1, "") == (
        "model m0 failed; model m1 failed; model m2 failed; and 2 more"
    )


def test_summary_notes_an_unusual_exit_code() -> None:
    results = parse_dbt_log(lines("dbt_run_broken.jsonl"))
    assert summarise_failure("dbt", results, 137, "") == (
        f"{BROKEN_SUMMARY} (dbt exited with code 137 (killed by SIGKILL))"
    )


# --- robustness ------------------------------------------------------------------------------


@given(st.text())
def test_parsers_never_raise_on_arbitrary_text(value: str) -> None:
    parse_dbt_log_line(value)
    parse_dbt_log(value.splitlines())
    parse_dbt_text_output(value)
    parse_sqlmesh_output(value)
    dbt_invocation_id(value.splitlines())
    summarise_failure("dbt", [], 1, value)
    summarise_failure("sqlmesh", [], 1, value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_log_line_parser_never_raises_on_arbitrary_json(value: object) -> None:
    for wrapped in (value, {"info": {"name": "NodeFinished"}, "data": value}):
        parse_dbt_log_line(json.dumps(wrapped))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "msg", "unique_id", "x"]), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    name=st.sampled_from(["NodeFinished", "LogModelResult", "RunResultError", "SkippingDetails"])
    | _JSON,
    info=st.dictionaries(st.sampled_from(["msg", "ts", "invocation_id"]), _JSON),
    node=st.dictionaries(
        st.sampled_from(["unique_id", "node_status", "node_name", "resource_type"]), _JSON
    ),
    data=st.dictionaries(st.sampled_from(["msg", "status", "execution_time", "run_result"]), _JSON),
)
def test_log_parsers_never_raise_on_events_of_the_wrong_types(
    name: object, info: dict[str, object], node: dict[str, object], data: dict[str, object]
) -> None:
    event = {"info": {**info, "name": name}, "data": {**data, "node_info": node}}
    line = json.dumps(event)
    parse_dbt_log_line(line)
    parse_dbt_log([line, line])
    dbt_invocation_id([line])
    dbt_invocation_lines([line], "x")
    dbt_log_text(line)
    summarise_failure("dbt", [], 1, line)
