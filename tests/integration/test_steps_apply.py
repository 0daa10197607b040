"""``runyard apply`` with a job of steps (docs/steps.md): created, a second apply changes
nothing, and a file that turns the steps back into one command updates the job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import LiveServer

FILE = """\
projects:
  - name: shop
    kind: dbt
    path: dbt_demo
    jobs:
      - name: nightly
        schedule: "0 2 * * *"
        steps:
          - command: dbt source freshness
          - command: dbt build --exclude tag:broken
          - command: dbt docs generate
            name: docs
            run_on_failure: true
"""


def apply(server: LiveServer, token: str, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env |= {"RUNYARD_URL": server.url, "RUNYARD_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "apply", "-f", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_apply_a_job_of_steps(
    live_server: LiveServer, dbt_project_dir: Path, tmp_path: Path
) -> None:
    token, _ = live_server.container.tokens.create("acme", "admin")
    path = tmp_path / "runyard.yaml"
    path.write_text(FILE)
    first = apply(live_server, token, path)
    assert first.returncode == 0, first.stderr
    assert "job shop/nightly: create" in first.stdout

    http = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    project = http.get("/api/v1/projects").json()["projects"][0]
    (job,) = http.get(f"/api/v1/projects/{project['id']}/jobs").json()["jobs"]
    assert job["command"] == ""
    assert job["steps"] == [
        {"command": "dbt source freshness", "name": None, "run_on_failure": False},
        {"command": "dbt build --exclude tag:broken", "name": None, "run_on_failure": False},
        {"command": "dbt docs generate", "name": "docs", "run_on_failure": True},
    ]

    second = apply(live_server, token, path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "no changes"

    path.write_text(FILE.split("        steps:")[0] + "        command: dbt build\n")
    third = apply(live_server, token, path)
    assert third.returncode == 0, third.stderr
    updated = http.get(f"/api/v1/projects/{project['id']}/jobs/{job['id']}").json()
    assert updated["command"] == "dbt build" and updated["steps"] == []
    assert updated["version"] == job["version"] + 1
