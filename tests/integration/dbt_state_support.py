"""Helpers for the retry, deferral, model history and freshness tests: real dbt on DuckDB
(a copy of examples/dbt_demo in org acme's folder), driven through the API with the local
executor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import TestClient

from app.container import Container

H = dict[str, str]
TERMINAL = {"success", "failed", "timed_out", "cancelled", "lost"}

# A child of customer_orders: skipped when its parent fails, retried with it.
CUSTOMER_SUMMARY = (
    "select country, sum(lifetime_value) as lifetime_value\n"
    "from {{ ref('customer_orders') }}\ngroup by 1\n"
)


def add_child_model(project: Path) -> None:
    (project / "models" / "marts" / "customer_summary.sql").write_text(CUSTOMER_SUMMARY)


def break_customer_orders(project: Path) -> str:
    """Make customer_orders (the third model dbt builds) fail at run time; returns the
    original SQL to put back."""
    path = project / "models" / "marts" / "customer_orders.sql"
    original = path.read_text()
    path.write_text(original.replace("count(o.order_id)", "count(o.no_such_column)"))
    return original


def restore_customer_orders(project: Path, sql: str) -> None:
    (project / "models" / "marts" / "customer_orders.sql").write_text(sql)


def project(client: TestClient[Any], headers: H, path: Path, **fields: Any) -> str:
    body = {"name": "analytics", "kind": "dbt", "path": str(path)} | fields
    response = client.post("/api/v1/projects", json=body, headers=headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


def job(
    client: TestClient[Any], headers: H, project_id: str, name: str, command: str, **f: Any
) -> str:
    body = {"name": name, "command": command, "schedule": None} | f
    response = client.post(f"/api/v1/projects/{project_id}/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def trigger(client: TestClient[Any], headers: H, project_id: str, job_id: str) -> str:
    response = client.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", headers=headers)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["job_run_id"]
    return run_id


def wait(client: TestClient[Any], headers: H, run_id: str, seconds: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] in TERMINAL:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish")


def run_results(container: Container, run_id: str) -> dict[str, str]:
    """unique_id -> status from the run_results.json runyard kept for the run (what dbt
    wrote in that run, collected from target/ when it ended)."""
    raw = container.store.artifacts.read(run_id, "run_results.json")
    assert raw is not None, f"run {run_id} kept no run_results.json"
    document = msgspec.json.decode(raw)
    return {r["unique_id"]: r["status"] for r in document["results"]}


def log_of(client: TestClient[Any], headers: H, run_id: str) -> str:
    return client.get(f"/api/v1/runs/{run_id}/logs", headers=headers).text
