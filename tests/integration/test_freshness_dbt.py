"""Source freshness with REAL dbt on DuckDB: a run of ``dbt source freshness`` keeps its
sources.json, and the job's freshness endpoint shows each source's newest load, age and
status from the latest run that has one (a stale source fails the run; it still counts)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.integration.api_helpers import assert_problem
from tests.integration.dbt_state_support import job, log_of, project, trigger, wait

pytestmark = pytest.mark.slow
H = dict[str, str]

# The demo's seeds as sources: orders were last loaded on their newest order_date (2024),
# so they are years old: a warning past 1 day, an error only past 100,000 days. customers
# error after a day.
SOURCES = """version: 2
sources:
  - name: raw
    schema: main
    loaded_at_field: "cast(order_date as timestamp)"
    tables:
      - name: orders
        freshness:
          warn_after: {count: 1, period: day}
          error_after: {count: 100000, period: day}
      - name: late_orders
        identifier: orders
        freshness:
          warn_after: {count: 1, period: day}
          error_after: {count: 2, period: day}
"""


def test_freshness_from_the_latest_sources_json(
    client: TestClient[Any], admin_headers: H, other_org_headers: H, dbt_project_dir: Path
) -> None:
    (dbt_project_dir / "models" / "sources.yml").write_text(SOURCES)
    project_id = project(client, admin_headers, dbt_project_dir)
    seed = job(client, admin_headers, project_id, "seed", "dbt seed")
    fresh = job(client, admin_headers, project_id, "freshness", "dbt source freshness")
    url = f"/api/v1/projects/{project_id}/jobs/{fresh}/freshness"
    empty = client.get(url, headers=admin_headers).json()
    assert empty["run_id"] is None and empty["sources"] == []

    assert (
        wait(client, admin_headers, trigger(client, admin_headers, project_id, seed))["status"]
        == "success"
    )
    run_id = trigger(client, admin_headers, project_id, fresh)
    finished = wait(client, admin_headers, run_id)
    # late_orders is past its error_after: dbt exits 1, and the run's sources.json says why.
    assert finished["status"] == "failed", log_of(client, admin_headers, run_id)

    report = client.get(url, headers=admin_headers).json()
    assert report["run_id"] == run_id
    by_table = {s["table_name"]: s for s in report["sources"]}
    assert set(by_table) == {"orders", "late_orders"}
    orders = by_table["orders"]
    assert orders["source_name"] == "raw" and orders["status"] == "warn"
    loaded = datetime.fromisoformat(orders["max_loaded_at"].replace("Z", "+00:00"))
    assert loaded.year == 2024 and loaded < datetime.now(UTC)
    assert orders["age_seconds"] > 86400 * 300
    assert orders["age_now_seconds"] >= orders["age_seconds"] - 60
    assert orders["warn_after"] == {"count": 1, "period": "day"}
    assert by_table["late_orders"]["status"] == "error"

    assert_problem(client.get(url, headers=other_org_headers), 404)
