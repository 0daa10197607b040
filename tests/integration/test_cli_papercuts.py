"""Issue 13's CLI papercuts, each with a test that failed before: tokens list shows when a
token was last used; tokens list without RUNYARD_DATABASE names the database it reads and
creates none; the demo's closing commands run exactly as printed."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import demo
from tests.conftest import LiveServer
from tests.integration.web_helpers import sign_in

VENV_BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    """The environment without RUNYARD_* and without the virtualenv on PATH (as a user who
    has not activated it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != VENV_BIN
    )
    return env | extra


def _runyard(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=cwd,
        timeout=120,
    )


def _tokens(database: str, cwd: Path) -> list[dict[str, Any]]:
    result = _runyard("tokens", "list", "--json", cwd=cwd, RUNYARD_DATABASE=database)
    assert result.returncode == 0, result.stderr
    assert f"database: {Path(database).resolve()} (RUNYARD_DATABASE)" in result.stderr
    listed: list[dict[str, Any]] = json.loads(result.stdout)["tokens"]
    return listed


def test_tokens_list_shows_when_a_token_was_last_used(
    live_server: LiveServer, tmp_path: Path
) -> None:
    token, info = live_server.container.tokens.create("acme", "admin")
    database = live_server.container.settings.database
    assert _tokens(database, tmp_path)[0]["last_used_at"] is None
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{live_server.url}/api/v1/projects", headers=headers).status_code == 200
    first = _tokens(database, tmp_path)[0]["last_used_at"]
    assert first is not None
    # Within the minute, further use is not written again (reads stay cheap).
    time.sleep(1.1)
    assert httpx.get(f"{live_server.url}/api/v1/projects", headers=headers).status_code == 200
    assert _tokens(database, tmp_path)[0]["last_used_at"] == first
    table = _runyard("tokens", "list", cwd=tmp_path, RUNYARD_DATABASE=database).stdout
    assert info.id in table and "\t-\t-\n" not in table  # "last used" is a date, not '-'


def test_tokens_list_without_a_database_says_which_and_creates_none(tmp_path: Path) -> None:
    result = _runyard("tokens", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert str(tmp_path / "runyard.db") in result.stderr
    assert "RUNYARD_DATABASE" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no empty runyard.db left behind
    revoke = _runyard("tokens", "revoke", "tok_x", cwd=tmp_path)
    assert revoke.returncode == 2 and list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.slow
def test_the_demos_closing_commands_run_as_printed(
    live_server: LiveServer, dbt_project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = live_server.container.tokens.create("demo", "admin")
    acme, _ = live_server.container.tokens.create("acme", "admin")
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {acme}"}, timeout=90
    ) as http:
        project = http.post(
            "/api/v1/projects", json={"name": "dbt-demo", "kind": "dbt", "path": "dbt_demo"}
        ).json()
        job = http.post(
            f"/api/v1/projects/{project['id']}/jobs",
            json={"name": "broken", "command": "dbt run --select tag:broken", "schedule": None},
        ).json()
        started = http.post(f"/api/v1/projects/{project['id']}/jobs/{job['id']}/trigger", json={})
        run_id = started.json()["job_run_id"]
        run = http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": 60}).json()
    assert run["status"] == "failed"
    token = acme  # the run belongs to acme: the printed token must be able to read it

    # As `runyard demo` started from the virtualenv's script, the user's shell not having it
    # on PATH: printed commands must name it so that they run.
    monkeypatch.setattr(sys, "argv", [str(VENV_BIN / "runyard"), "demo"])
    # The demo looks runyard up on the PATH it runs with, which is the user's shell's; ./dev
    # (and so CI) puts the virtualenv on this process's PATH, which that user's does not have.
    monkeypatch.setenv("PATH", _env()["PATH"])
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    step = demo.Step("dbt-demo", "broken", "dbt run --select tag:broken", "failed")
    demo._report([(step, run)], demo._Printer(out, tmp_path), token)
    commands = [line.strip() for line in out.getvalue().splitlines() if line.startswith("  ")]
    serve = next(c for c in commands if c.endswith(" serve"))
    logs = next(c for c in commands if " runs logs " in c)

    live_server.stop()  # the printed server takes the database's server lock
    port = _free_port()
    server = subprocess.Popen(
        ["bash", "-c", serve],
        cwd=tmp_path,
        env=_env(RUNYARD_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the printed serve command did not start"
            time.sleep(0.2)
        result = subprocess.run(
            ["bash", "-c", logs],
            cwd=tmp_path,
            env=_env(RUNYARD_URL=f"http://127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        # The printed way into the web UI: the same token signs in and opens the run.
        ui = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        page = sign_in(ui, shlex.split(logs)[0].split("=", 1)[1])
        run_page = ui.get(f"/ui/runs/{run_id}")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    served = server.stderr.read().decode(errors="replace") if server.stderr else ""
    assert result.returncode == 0, f"{serve!r} {logs!r}: {result.stderr} {served}"
    assert "Runtime Error in model broken_orders" in result.stdout
    assert any("/ui/" in line for line in out.getvalue().splitlines())
    assert page.status_code == 303 and run_page.status_code == 200, page.text[:500]
    assert "broken_orders" in run_page.text
    assert shlex.split(serve)[0].startswith("RUNYARD_DATABASE=")
