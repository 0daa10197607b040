"""The CLI as a deploy gate: `runyard jobs trigger … --wait` as a subprocess against a real
server (uvicorn, local executor, the example dbt project)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def _cli(
    server: LiveServer, token: str, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env |= {"RUNYARD_URL": server.url, "RUNYARD_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=Path(__file__).parent.parent.parent,
    )


@pytest.fixture
def setup(live_server: LiveServer, dbt_project_dir: Path) -> dict[str, Any]:
    token, _ = live_server.container.tokens.create("acme", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        project = http.post(
            "/api/v1/projects",
            json={"name": "analytics", "kind": "dbt", "path": str(dbt_project_dir)},
        ).json()
        for name, command in (
            ("build", "dbt build --exclude tag:broken"),
            ("broken", "dbt run --select tag:broken"),
            ("slow", "dbt build --exclude tag:broken"),
        ):
            response = http.post(
                f"/api/v1/projects/{project['id']}/jobs",
                json={
                    "name": name,
                    "command": command,
                    "schedule": None,
                    "concurrency_policy": "Allow",
                },
            )
            assert response.status_code == 201, response.text
    return {"server": live_server, "token": token}


def test_wait_success_exits_0(setup: dict[str, Any]) -> None:
    result = _cli(
        setup["server"], setup["token"], "jobs", "trigger", "analytics", "build", "--wait"
    )
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout


def test_wait_failure_exits_1_and_prints_the_models_error(setup: dict[str, Any]) -> None:
    result = _cli(
        setup["server"],
        setup["token"],
        "jobs",
        "trigger",
        "analytics",
        "broken",
        "--wait",
        "--logs-on-failure",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed" in result.stdout
    assert "broken" in result.stdout  # the failed model is named in the summary
    assert "--- logs" in result.stderr
    assert "Runtime Error in model broken_orders" in result.stderr


def test_timeout_shorter_than_the_run_exits_1(setup: dict[str, Any]) -> None:
    result = _cli(
        setup["server"],
        setup["token"],
        "jobs",
        "trigger",
        "analytics",
        "slow",
        "--wait",
        "--timeout",
        "0.5",
    )
    assert result.returncode == 1
    assert "--timeout" in result.stderr and "goes on" in result.stderr


def test_wrong_token_exits_3_with_the_servers_message(setup: dict[str, Any]) -> None:
    result = _cli(setup["server"], "ryd_wrong-token-0000000000000000", "projects", "list")
    assert result.returncode == 3
    assert "unknown or revoked" in result.stderr


def test_unreachable_server_exits_3(setup: dict[str, Any]) -> None:
    server = setup["server"]
    env_url = "http://127.0.0.1:9"  # discard port: nothing listens
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "projects",
            "list",
            "--url",
            env_url,
            "--token",
            setup["token"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3 and "could not reach" in result.stderr
    assert server  # the fixture's server is unaffected


def test_json_output_parses(setup: dict[str, Any]) -> None:
    result = _cli(
        setup["server"], setup["token"], "jobs", "trigger", "analytics", "build", "--wait", "--json"
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "success" and run["is_success"] is True
    listed = json.loads(
        _cli(setup["server"], setup["token"], "jobs", "list", "analytics", "--json").stdout
    )
    assert listed["total"] == 3
    shown = json.loads(
        _cli(setup["server"], setup["token"], "runs", "show", run["id"], "--json").stdout
    )
    assert shown["id"] == run["id"]


def test_usage_error_exits_2(setup: dict[str, Any]) -> None:
    result = _cli(setup["server"], setup["token"], "jobs", "trigger")
    assert result.returncode == 2
