"""The per-org cap on concurrently running runs (``runyard orgs set --max-concurrent-runs``):
20 triggers across 5 jobs with a cap of 2 never have more than 2 runs active at once, queue
instead of being refused with 429, and all end in success. Real dbt on DuckDB (a copy of
the demo per job: two runs never share a DuckDB file)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.cli import main
from app.container import Container
from tests.conftest import org_folder
from tests.conftest_examples import copy_example
from tests.integration.test_local_executor import create_job, create_project, slow_model
from tests.integration.test_queue import trigger, wait_all_ended

Client = TestClient[Any]
Headers = dict[str, str]


def max_overlap(runs: list[dict[str, Any]]) -> int:
    """The most runs between their start and end at one moment (an end before a start at
    the same instant: the place was handed over)."""
    points = []
    for run in runs:
        points.append((datetime.fromisoformat(run["start_time"]), 1))
        points.append((datetime.fromisoformat(run["end_time"]), -1))
    most = current = 0
    for _, change in sorted(points):
        current += change
        most = max(most, current)
    return most


def cli(monkeypatch: pytest.MonkeyPatch, database: str, *args: str) -> int:
    monkeypatch.setenv("RUNYARD_DATABASE", database)
    return main(list(args))


@pytest.mark.slow
def test_twenty_triggers_across_five_jobs_respect_a_cap_of_two(
    container: Container,
    client: Client,
    admin_headers: Headers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = container.settings.database
    assert cli(monkeypatch, database, "orgs", "set", "acme", "--max-concurrent-runs", "2") == 0
    assert "max_concurrent_runs 2" in capsys.readouterr().out
    assert cli(monkeypatch, database, "orgs", "get", "acme", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["max_concurrent_runs"], shown["effective_max_concurrent_runs"]) == (2, 2)
    # Bad values change nothing.
    assert cli(monkeypatch, database, "orgs", "set", "acme", "--max-concurrent-runs", "0") == 2
    assert cli(monkeypatch, database, "orgs", "set", "nobody", "--max-concurrent-runs", "3") == 3
    assert container.store.orgs.max_concurrent_runs(container.store.orgs.all()[0].id) == 2

    jobs = []
    for n in range(5):
        project = copy_example("dbt_demo", org_folder(tmp_path) / f"demo{n}")
        slow_model(project, 1)
        project_id = create_project(client, admin_headers, name=f"demo{n}", path=f"demo{n}")
        job_id = create_job(
            client,
            admin_headers,
            project_id,
            command="dbt run --select slow",
            concurrency_policy="Queue",  # a job's runs share its DuckDB file
        )
        jobs.append((project_id, job_id))

    # Watch the database while the runs go: never more than two active.
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(sum(n for _, _, n in container.store.runs.active_counts()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        triggered = [
            trigger(client, admin_headers, project_id, job_id)
            for _ in range(4)
            for project_id, job_id in jobs
        ]
        statuses = [t["status"] for t in triggered]
        assert statuses[:2] == ["pending", "pending"]
        assert statuses[2:] == ["queued"] * 18  # queued, not refused with 429
        runs = wait_all_ended(client, admin_headers, [t["job_run_id"] for t in triggered], 900)
    finally:
        done.set()
        watcher.join()
    assert [r["status"] for r in runs] == ["success"] * 20, [r["error"] for r in runs]
    assert max(seen) == 2, max(seen)
    assert max_overlap(runs) <= 2
    # Each job's runs ran in the order they were triggered.
    for _, job_id in jobs:
        mine = [r for r in runs if r["job_id"] == job_id]
        starts = [r["start_time"] for r in mine]
        assert starts == sorted(starts)


def test_an_orgs_cap_is_its_own_and_the_default_applies_otherwise(
    container: Container,
    admin_headers: Headers,
    other_org_headers: Headers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = container.settings.database
    default = container.settings.local_max_runs_per_org
    assert cli(monkeypatch, database, "orgs", "set", "globex", "--max-concurrent-runs", "5") == 0
    capsys.readouterr()
    assert cli(monkeypatch, database, "orgs", "list", "--json") == 0
    listed = {o["slug"]: o for o in json.loads(capsys.readouterr().out)["orgs"]}
    assert listed["acme"]["max_concurrent_runs"] is None
    assert listed["acme"]["effective_max_concurrent_runs"] == default
    assert listed["globex"]["effective_max_concurrent_runs"] == 5
    acme = container.store.orgs.by_slug("acme")
    globex = container.store.orgs.by_slug("globex")
    assert acme is not None and globex is not None
    assert (container.queue.cap_of(acme.id), container.queue.cap_of(globex.id)) == (default, 5)
    assert cli(monkeypatch, database, "orgs", "set", "globex", "--default") == 0
    assert container.queue.cap_of(globex.id) == default
