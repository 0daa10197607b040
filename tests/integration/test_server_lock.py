"""One server per database: two real ``runyard serve`` processes on one database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import org_folder
from tests.conftest_examples import copy_example


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Servers:
    def __init__(self, tmp_path: Path) -> None:
        self.database = tmp_path / "runyard.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
        self.env |= {
            "RUNYARD_DATABASE": str(self.database),
            "RUNYARD_EXECUTOR": "local",
            "RUNYARD_LOG_FORMAT": "text",
        }
        self.started: list[subprocess.Popen[str]] = []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def serve(self) -> tuple[subprocess.Popen[str], str]:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process, f"http://127.0.0.1:{port}"

    def wait_healthy(self, process: subprocess.Popen[str], url: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not start")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    made = Servers(tmp_path)
    yield made
    for process in made.started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


@pytest.mark.slow
def test_a_second_server_on_the_same_database_exits_without_touching_the_first_ones_run(
    servers: Servers, tmp_path: Path
) -> None:
    project = copy_example("dbt_demo", org_folder(tmp_path) / "dbt_demo")
    (project / "models" / "slow.sql").write_text(
        "{{ config(materialized='table', tags=['slow']) }}\n"
        "select 1 as id, cast(pg_sleep(8) as integer) as slept\n"
    )
    created = servers.cli("tokens", "create", "--org", "acme", "--role", "admin")
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}

    first, url = servers.serve()
    servers.wait_healthy(first, url)
    lock_file = Path(str(servers.database) + ".lock")
    assert f"pid {first.pid} on host {socket.gethostname()}" in lock_file.read_text()
    with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
        project_id = api.post(
            "/api/v1/projects", json={"name": "analytics", "kind": "dbt", "path": "dbt_demo"}
        ).json()["id"]
        job = api.post(
            f"/api/v1/projects/{project_id}/jobs",
            json={"name": "slow", "command": "dbt run --select slow", "schedule": None},
        ).json()
        triggered = api.post(f"/api/v1/projects/{project_id}/jobs/{job['id']}/trigger", json={})
        run_id = triggered.json()["job_run_id"]
        deadline = time.monotonic() + 60
        while "START sql table model main.slow" not in api.get(f"/api/v1/runs/{run_id}/logs").text:
            assert time.monotonic() < deadline
            time.sleep(0.2)

        second, _ = servers.serve()
        out, err = second.communicate(timeout=60)
        assert second.returncode == 3, (out, err)
        assert "another runyard server is serving the database" in err
        assert f"pid {first.pid} on host {socket.gethostname()}" in err
        assert "re-attach" not in err and "Uvicorn running" not in err

        deadline = time.monotonic() + 120
        while not (run := api.get(f"/api/v1/runs/{run_id}").json())["is_terminal"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    assert (run["status"], run["exit_code"], run["error"]) == ("success", 0, None)

    # A crash frees the lock: the kernel releases it with the process.
    first.kill()
    first.communicate(timeout=30)
    third, third_url = servers.serve()
    servers.wait_healthy(third, third_url)
    assert f"pid {third.pid}" in lock_file.read_text()
    with httpx.Client(base_url=third_url, headers=headers, timeout=30) as api:
        assert api.get(f"/api/v1/runs/{run_id}").json()["status"] == "success"
