"""The example projects with the real dbt and SQLMesh (offline, as subprocesses), and the
result parsers of app.engines.results on what the tools really print and write.

Each test works on its own copy of a project; the expensive first step (dbt build, SQLMesh
plan) runs once per module and later tests copy its result. SQLMesh's clock is pinned with
time-machine (see tests.conftest_examples.sqlmesh_at) so "same day" and "next day" do not
depend on when the tests run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import msgspec
import pytest
import time_machine

from app.engines.results import (
    dbt_invocation_id,
    failed_nodes,
    parse_dbt_log,
    parse_dbt_text_output,
    parse_sqlmesh_output,
    read_dbt_run_results,
    summarise_failure,
)
from app.models import NodeSummary
from tests.conftest_examples import copy_example, run_tool, sqlmesh_at, tool

pytestmark = pytest.mark.slow

BROKEN_ERROR = "Conversion Error: Could not convert string 'abc' to INT32"

# SQLMesh's clock: the plan on the 10th backfills 2024-01-01 .. 2024-03-09; the next
# day's run has the 10th to do.
PLAN_AT = "2024-03-10T12:00:00Z"
SAME_DAY = "2024-03-10T18:00:00Z"
NEXT_DAY = "2024-03-11T01:00:00Z"


def _statuses(results: list[NodeSummary]) -> dict[str, str]:
    return {r.unique_id: r.status for r in results}


def _log_lines(log_dir: Path) -> list[str]:
    return (log_dir / "dbt.log").read_text().splitlines()


def _run_results_invocation(project: Path) -> str:
    document = json.loads((project / "target" / "run_results.json").read_text())
    value = document["metadata"]["invocation_id"]
    assert isinstance(value, str)
    return value


# --- dbt -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    project: Path
    output: str
    exit_code: int
    log_dir: Path


@pytest.fixture(scope="module")
def dbt_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """examples/dbt_demo after `dbt build --exclude tag:broken`: human text on stdout,
    JSON events in a log file outside the project."""
    base = tmp_path_factory.mktemp("dbt")
    project = copy_example("dbt_demo", base / "project")
    log_dir = base / "logs"
    done = run_tool(
        [tool("dbt"), "build", "--exclude", "tag:broken"],
        project,
        {"DBT_LOG_FORMAT_FILE": "json", "DBT_LOG_PATH": str(log_dir)},
    )
    return Built(project, done.stdout, done.returncode, log_dir)


def _copy_built(built: Built, dest: Path) -> Path:
    return Path(shutil.copytree(built.project, dest))


def test_dbt_build_succeeds_and_all_results_pass(dbt_built: Built) -> None:
    assert dbt_built.exit_code == 0, dbt_built.output
    assert "\x1b[" not in dbt_built.output  # DBT_USE_COLORS=false
    assert not dbt_built.output.lstrip().startswith("{")  # stdout stays text

    lines = _log_lines(dbt_built.log_dir)
    invocation = dbt_invocation_id(lines)
    assert invocation == _run_results_invocation(dbt_built.project)

    from_file = read_dbt_run_results(dbt_built.project, invocation)
    assert from_file is not None
    assert len(from_file) == 16  # 2 seeds, 3 models, 11 schema tests
    assert {r.status for r in from_file} <= {"success", "pass"}
    assert {r.resource_type for r in from_file} == {"seed", "model", "test"}
    assert "model.dbt_demo.customer_orders" in _statuses(from_file)
    assert "model.dbt_demo.broken_orders" not in _statuses(from_file)

    from_log = parse_dbt_log(lines)
    assert _statuses(from_log) == _statuses(from_file)
    assert failed_nodes(from_log) == []
    assert parse_dbt_text_output(dbt_built.output) == []
    assert summarise_failure("dbt", from_file, 0, dbt_built.output) == ""


def test_dbt_broken_model_fails_and_is_named(dbt_built: Built, tmp_path: Path) -> None:
    project = _copy_built(dbt_built, tmp_path / "project")
    log_dir = tmp_path / "logs"
    done = run_tool(
        [tool("dbt"), "run", "--select", "tag:broken"],
        project,
        {"DBT_LOG_FORMAT_FILE": "json", "DBT_LOG_PATH": str(log_dir)},
    )
    assert done.returncode == 1, done.stdout
    assert "Failure in model broken_orders" in done.stdout

    lines = _log_lines(log_dir)
    invocation = dbt_invocation_id(lines)
    assert invocation is not None

    for results in (
        parse_dbt_log(lines),
        read_dbt_run_results(project, invocation),
        parse_dbt_text_output(done.stdout),
    ):
        assert results is not None
        failed = failed_nodes(results)
        assert [(r.name, r.resource_type, r.status) for r in failed] == [
            ("broken_orders", "model", "error")
        ]
        assert failed[0].message is not None
        assert BROKEN_ERROR in failed[0].message

    from_log = parse_dbt_log(lines)
    assert from_log[0].unique_id == "model.dbt_demo.broken_orders"
    assert from_log[0].execution_time is not None
    summary = summarise_failure("dbt", from_log, done.returncode, done.stdout[-4000:])
    assert summary == f"model broken_orders failed: {BROKEN_ERROR}"
    # The text output alone gives the same summary.
    text_summary = summarise_failure(
        "dbt", parse_dbt_text_output(done.stdout), 1, done.stdout[-4000:]
    )
    assert text_summary == summary


def test_dbt_json_stdout_names_failed_model_and_test(dbt_built: Built, tmp_path: Path) -> None:
    """DBT_LOG_FORMAT=json: one JSON event per stdout line; the invocation id in them is
    the one in run_results.json. `build --select tag:broken` runs the broken model (error)
    and the broken data test (fail)."""
    project = _copy_built(dbt_built, tmp_path / "project")
    done = run_tool(
        [tool("dbt"), "build", "--select", "tag:broken"],
        project,
        {"DBT_LOG_FORMAT": "json"},
    )
    assert done.returncode == 1, done.stdout
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert all(msgspec.json.decode(line)["info"]["name"] for line in lines)

    invocation = dbt_invocation_id(lines)
    assert invocation == _run_results_invocation(project)

    results = parse_dbt_log(lines)
    failed = {r.unique_id: r for r in failed_nodes(results)}
    assert set(failed) == {
        "model.dbt_demo.broken_orders",
        "test.dbt_demo.assert_customers_spend_at_least_10",
    }
    model = failed["model.dbt_demo.broken_orders"]
    assert model.status == "error"
    assert model.message is not None
    assert BROKEN_ERROR in model.message
    test = failed["test.dbt_demo.assert_customers_spend_at_least_10"]
    assert test.status == "fail"
    assert test.message == "Got 1 result, configured to fail if != 0"

    from_file = read_dbt_run_results(project, invocation)
    assert from_file is not None
    assert _statuses(failed_nodes(from_file)) == _statuses(list(failed.values()))

    summary = summarise_failure("dbt", results, 1, "\n".join(lines[-50:]))
    assert f"model broken_orders failed: {BROKEN_ERROR}" in summary
    assert "test assert_customers_spend_at_least_10 failed: Got 1 result" in summary


def test_dbt_compile_error_leaves_stale_run_results(dbt_built: Built, tmp_path: Path) -> None:
    project = _copy_built(dbt_built, tmp_path / "project")
    previous = _run_results_invocation(project)
    model = project / "models" / "broken" / "broken_orders.sql"
    model.write_text(model.read_text().replace("ref('stg_orders')", "ref('stg_orderz')"))
    started = datetime.now(UTC)

    done = run_tool([tool("dbt"), "run"], project, {"DBT_LOG_FORMAT": "json"})
    assert done.returncode == 2, done.stdout

    invocation = dbt_invocation_id(done.stdout.splitlines())
    assert invocation is not None
    assert invocation != previous
    # The file is still there, from the build: not this run's.
    assert _run_results_invocation(project) == previous
    assert read_dbt_run_results(project, invocation) is None
    assert read_dbt_run_results(project, None, not_before=started) is None
    assert read_dbt_run_results(project, previous) is not None

    assert parse_dbt_log(done.stdout.splitlines()) == []
    summary = summarise_failure("dbt", [], done.returncode, done.stdout)
    assert summary.startswith("dbt exited with code 2: Compilation Error: ")
    assert "depends on a node named 'stg_orderz' which was not found" in summary


# --- SQLMesh -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    project: Path
    output: str
    exit_code: int


@pytest.fixture(scope="module")
def sqlmesh_planned(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    """examples/sqlmesh_demo after `sqlmesh plan --auto-apply --no-prompts` on PLAN_AT."""
    project = copy_example("sqlmesh_demo", tmp_path_factory.mktemp("sqlmesh") / "project")
    done = run_tool(sqlmesh_at(PLAN_AT, "plan", "--auto-apply", "--no-prompts"), project)
    return Planned(project, done.stdout, done.returncode)


def _copy_planned(planned: Planned, dest: Path) -> Path:
    return Path(shutil.copytree(planned.project, dest))


def _last_order_date(project: Path) -> date:
    with duckdb.connect(str(project / "demo.duckdb"), read_only=True) as con:
        row = con.execute("select max(order_date) from demo.shop.daily_orders").fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, date)
    return value


def test_sqlmesh_plan_succeeds(sqlmesh_planned: Planned) -> None:
    assert sqlmesh_planned.exit_code == 0, sqlmesh_planned.output
    assert "shop.daily_orders" in sqlmesh_planned.output
    assert parse_sqlmesh_output(sqlmesh_planned.output) == []
    assert summarise_failure("sqlmesh", [], 0, sqlmesh_planned.output) == ""
    assert _last_order_date(sqlmesh_planned.project) == date(2024, 3, 9)


def test_sqlmesh_run_on_the_day_of_the_plan_has_nothing_to_do(
    sqlmesh_planned: Planned, tmp_path: Path
) -> None:
    project = _copy_planned(sqlmesh_planned, tmp_path / "project")
    done = run_tool(sqlmesh_at(SAME_DAY, "run"), project)
    assert done.returncode == 0, done.stdout
    assert "No models are ready to run" in done.stdout
    assert _last_order_date(project) == date(2024, 3, 9)


def test_sqlmesh_run_next_day_processes_the_new_interval(
    sqlmesh_planned: Planned, tmp_path: Path
) -> None:
    project = _copy_planned(sqlmesh_planned, tmp_path / "project")
    done = run_tool(sqlmesh_at(NEXT_DAY, "run"), project)
    assert done.returncode == 0, done.stdout
    assert "Run finished for environment 'prod'" in done.stdout
    assert parse_sqlmesh_output(done.stdout) == []
    assert _last_order_date(project) == date(2024, 3, 10)


def test_sqlmesh_run_in_process_with_time_machine(
    sqlmesh_planned: Planned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alternative to a subprocess: SQLMesh's Python API under time_machine (paths in
    config.yaml are relative to the working directory, hence chdir)."""
    project = _copy_planned(sqlmesh_planned, tmp_path / "project")
    monkeypatch.setenv("SQLMESH__DISABLE_ANONYMIZED_ANALYTICS", "1")
    monkeypatch.chdir(project)
    from sqlmesh import Context
    from sqlmesh.core.analytics import disable_analytics

    disable_analytics()
    with time_machine.travel(NEXT_DAY, tick=True):
        context = Context(paths=str(project))
        try:
            status = context.run()
        finally:
            context.close()
    assert not status.is_failure
    assert _last_order_date(project) == date(2024, 3, 10)


def test_sqlmesh_model_failure_is_named(tmp_path: Path) -> None:
    """RUNYARD_DEMO_FAIL=model makes shop.daily_orders cast 'abc' to an integer; the real
    `sqlmesh` executable, on the real clock, on a fresh copy."""
    project = copy_example("sqlmesh_demo", tmp_path / "project")
    done = run_tool(
        [tool("sqlmesh"), "plan", "--auto-apply", "--no-prompts"],
        project,
        {"RUNYARD_DEMO_FAIL": "model"},
    )
    assert done.returncode == 1, done.stdout

    results = parse_sqlmesh_output(done.stdout)
    assert [(r.unique_id, r.name, r.resource_type, r.status) for r in results] == [
        ('"demo"."shop"."daily_orders"', "shop.daily_orders", "model", "error")
    ]
    assert results[0].message is not None
    assert BROKEN_ERROR in results[0].message
    summary = summarise_failure("sqlmesh", results, done.returncode, done.stdout)
    assert summary == f"model shop.daily_orders failed: {BROKEN_ERROR}"


def test_sqlmesh_audit_failure_is_named(sqlmesh_planned: Planned, tmp_path: Path) -> None:
    project = _copy_planned(sqlmesh_planned, tmp_path / "project")
    done = run_tool(sqlmesh_at(NEXT_DAY, "run"), project, {"RUNYARD_DEMO_FAIL": "audit"})
    assert done.returncode == 1, done.stdout

    results = parse_sqlmesh_output(done.stdout)
    assert [(r.unique_id, r.name, r.resource_type, r.status) for r in results] == [
        (
            "audit:assert_positive_revenue on shop.daily_revenue",
            "shop.daily_revenue",
            "audit",
            "failed",
        )
    ]
    assert failed_nodes(results) == results
    summary = summarise_failure("sqlmesh", results, done.returncode, done.stdout)
    assert summary == "audit assert_positive_revenue on shop.daily_revenue failed: 1 row failed"


@pytest.fixture(autouse=True)
def _no_demo_failure(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The in-process test reads the environment; keep a stray setting out."""
    monkeypatch.delenv("RUNYARD_DEMO_FAIL", raising=False)
    yield
