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


class Proxy:
    """A real HTTP proxy in front of the server that records each request (method, path,
    body) and can answer 404 for paths ending in one of ``deny`` (an older server)."""

    def __init__(self, target: str, deny: tuple[str, ...] = ()) -> None:
        import http.server
        import threading

        proxy = self
        self.seen: list[tuple[str, str, bytes]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                proxy.seen.append((self.command, path, body))
                if path.endswith(deny):
                    payload = json.dumps(
                        {"title": "Not found", "status": 404, "detail": f"No route matches {path}"}
                    ).encode()
                    self._answer(404, {"Content-Type": "application/problem+json"}, payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                response = httpx.request(
                    self.command, target + self.path, headers=headers, content=body, timeout=90
                )
                kept = {"content-type": response.headers.get("content-type", "text/plain")}
                self._answer(response.status_code, kept, response.content)

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _cli(
    server: LiveServer | Proxy, token: str, *args: str, timeout: float = 180
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


# --- every client command against the real server -----------------------------------------

ANSI = "\x1b["


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert ANSI not in result.stdout + result.stderr  # a pipe gets no colours
    return result.stdout


def test_projects_and_jobs_commands_by_name(setup: dict[str, Any], dbt_project_dir: Path) -> None:
    server, token = setup["server"], setup["token"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(server, token, *args)

    made = json.loads(
        _ok(
            cli(
                "projects",
                "create",
                "shop",
                "--kind",
                "dbt",
                "--path",
                dbt_project_dir.name,
                "--description",
                "the shop",
                "--json",
            )
        )
    )
    assert made["name"] == "shop" and made["kind"] == "dbt"
    lines = _ok(cli("projects", "list")).splitlines()
    rows = [line.split("\t") for line in lines]
    assert [made["id"], "shop", "dbt", "no", "the shop"] in rows  # tab-separated, no header
    _ok(cli("projects", "update", "shop", "--description", "renamed"))
    shown = json.loads(_ok(cli("projects", "show", made["id"], "--json")))  # an id works too
    assert shown["description"] == "renamed"
    assert "description\trenamed" in _ok(cli("projects", "show", "shop"))

    job = json.loads(
        _ok(
            cli(
                "jobs",
                "create",
                "shop",
                "nightly",
                "--command",
                "dbt build",
                "--schedule",
                "0 2 * * *",
                "--json",
            )
        )
    )
    assert job["schedule"] == "0 2 * * *"
    assert _ok(cli("jobs", "list", "shop")).split("\t")[:3] == [job["id"], "nightly", "0 2 * * *"]
    _ok(cli("jobs", "update", "shop", "nightly", "--schedule", "none"))
    _ok(cli("jobs", "disable", "shop", "nightly"))
    assert json.loads(_ok(cli("jobs", "show", "shop", "nightly", "--json")))["enabled"] is False
    _ok(cli("jobs", "enable", "shop", job["id"]))
    shown_job = json.loads(_ok(cli("jobs", "show", "shop", "nightly", "--json")))
    assert shown_job["enabled"] is True and shown_job["schedule"] is None
    versions = json.loads(_ok(cli("jobs", "versions", "shop", "nightly", "--json")))
    assert versions["total"] == 4
    assert len(_ok(cli("jobs", "versions", "shop", "nightly")).splitlines()) == 4
    status = json.loads(_ok(cli("jobs", "status", "shop", "nightly", "--json")))
    assert status["total_runs"] == 0
    assert "total_runs\t0" in _ok(cli("jobs", "status", "shop", "nightly"))

    deployed = _ok(cli("projects", "deploy", "shop"))
    assert deployed.startswith("deployed shop")
    assert json.loads(_ok(cli("projects", "show", "shop", "--json")))["deployed"] is True
    assert _ok(cli("projects", "undeploy", "shop")).startswith("undeployed shop")

    assert "deleted nightly" in _ok(cli("jobs", "delete", "shop", "nightly"))
    assert json.loads(_ok(cli("jobs", "list", "shop", "--json")))["total"] == 0
    _ok(cli("projects", "delete", "shop", "--yes"))
    gone = cli("projects", "show", "shop")
    assert gone.returncode == 3
    assert "no project with the name or id 'shop'" in gone.stderr
    assert "runyard projects list" in gone.stderr


def test_unknown_job_name_is_a_clear_error(setup: dict[str, Any]) -> None:
    result = _cli(setup["server"], setup["token"], "jobs", "show", "analytics", "nope")
    assert result.returncode == 3
    assert "no job with the name or id 'nope'" in result.stderr


def test_server_validation_errors_are_shown_with_their_fields(setup: dict[str, Any]) -> None:
    result = _cli(
        setup["server"],
        setup["token"],
        "jobs",
        "create",
        "analytics",
        "bad",
        "--command",
        "dbt build; rm -rf /",
    )
    assert result.returncode == 3
    first, *rest = result.stderr.splitlines()
    assert first.startswith("runyard: ") and "(422)" in first
    assert any(line.startswith("  command") for line in rest), result.stderr


def test_missing_token_points_at_the_variable_and_the_option(setup: dict[str, Any]) -> None:
    result = _cli(setup["server"], "", "projects", "list")
    assert result.returncode == 3
    assert "RUNYARD_TOKEN" in result.stderr and "--token" in result.stderr


def test_runs_commands(setup: dict[str, Any]) -> None:
    server, token = setup["server"], setup["token"]
    run_id = _ok(_cli(server, token, "jobs", "trigger", "analytics", "build")).strip()
    assert run_id.startswith("run_")
    logs = _ok(_cli(server, token, "runs", "logs", run_id, "--follow"))
    assert "Completed successfully" in logs
    listed = _ok(_cli(server, token, "runs", "list", "--project", "analytics", "--job", "build"))
    assert listed.split("\t")[:2] == [run_id, "success"]
    assert "status\tsuccess" in _ok(_cli(server, token, "runs", "show", run_id))
    tail = _ok(_cli(server, token, "runs", "logs", run_id, "--tail", "2"))
    assert len(tail.splitlines()) == 2
    again = json.loads(_ok(_cli(server, token, "runs", "rerun", run_id, "--wait", "--json")))
    assert again["status"] == "success" and again["rerun_of"] == run_id
    # cancel: a slow run, cancelled while it runs
    slow = _ok(_cli(server, token, "jobs", "trigger", "analytics", "slow")).strip()
    cancelled = _ok(_cli(server, token, "runs", "cancel", slow))
    assert cancelled.startswith(f"{slow}\t")
    final = json.loads(_cli(server, token, "runs", "show", slow, "--json").stdout)
    assert final["status"] in ("cancelled", "pending", "running")


def test_follow_streams_the_log_and_exits_with_the_runs_outcome(setup: dict[str, Any]) -> None:
    result = _cli(
        setup["server"], setup["token"], "jobs", "trigger", "analytics", "broken", "--follow"
    )
    assert result.returncode == 1
    assert "Runtime Error in model broken_orders" in result.stdout  # the log, as it came
    assert "status\tfailed" in result.stdout


def test_retry_and_image_send_the_right_requests(setup: dict[str, Any]) -> None:
    """runs retry and jobs trigger --image (server features built alongside): the requests
    the CLI sends, seen by a recording proxy, and the server's answer shown as it is."""
    server, token = setup["server"], setup["token"]
    failed = json.loads(
        _cli(server, token, "jobs", "trigger", "analytics", "broken", "--wait", "--json").stdout
    )
    with Proxy(server.url) as proxy:
        result = _cli(proxy, token, "runs", "retry", failed["id"], "--wait", "--json")
        retry = [r for r in proxy.seen if r[0] == "POST"]
        assert retry == [("POST", f"/api/v1/runs/{failed['id']}/retry", b"{}")]
        if result.returncode == 3:  # the server refused: its problem, as it said it
            assert result.stderr.startswith("runyard: ") and "(4" in result.stderr
        else:
            assert result.returncode in (0, 1), result.stderr
            assert json.loads(result.stdout)["id"] != failed["id"]
        proxy.seen.clear()
        image = _cli(proxy, token, "jobs", "trigger", "analytics", "build", "--image", "x:1")
        posts = [r for r in proxy.seen if r[0] == "POST"]
        assert len(posts) == 1 and posts[0][1].endswith("/trigger")
        assert json.loads(posts[0][2]) == {"image": "x:1"}
        assert image.returncode in (0, 3), image.stderr
        if image.returncode == 3:
            assert "image" in image.stderr  # the server's problem names the field


def test_wait_and_follow_poll_a_server_without_wait_and_events(setup: dict[str, Any]) -> None:
    server, token = setup["server"], setup["token"]
    with Proxy(server.url, deny=("/wait", "/events")) as proxy:
        waited = _cli(proxy, token, "jobs", "trigger", "analytics", "build", "--wait")
        followed = _cli(proxy, token, "jobs", "trigger", "analytics", "broken", "--follow")
        paths = [path for _, path, _ in proxy.seen]
    assert waited.returncode == 0, waited.stderr
    assert "status\tsuccess" in waited.stdout
    assert followed.returncode == 1, followed.stderr
    assert "Runtime Error in model broken_orders" in followed.stdout
    assert any(p.endswith("/wait") for p in paths) and any(p.endswith("/events") for p in paths)
    assert any(p.endswith("/logs") for p in paths)  # the fallback read the stored log


def test_wait_and_follow_use_the_servers_long_poll_and_events(setup: dict[str, Any]) -> None:
    server, token = setup["server"], setup["token"]
    with Proxy(server.url) as proxy:
        waited = _cli(proxy, token, "jobs", "trigger", "analytics", "build", "--wait")
        paths = [path for _, path, _ in proxy.seen]
    assert waited.returncode == 0, waited.stderr
    run_gets = [p for p in paths if p.startswith("/api/v1/runs/") and p.count("/") == 4]
    assert any(p.endswith("/wait") for p in paths)
    assert run_gets == []  # no polling of the run itself


def test_shell_completion_of_project_and_job_names(setup: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env |= {"RUNYARD_URL": setup["server"].url, "RUNYARD_TOKEN": setup["token"]}

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        result = subprocess.run(
            [sys.executable, "-m", "app.cli"],
            capture_output=True,
            text=True,
            env=env
            | {
                "_RUNYARD_COMPLETE": "bash_complete",
                "COMP_WORDS": line,
                "COMP_CWORD": str(len(words) - 1),
            },
            timeout=60,
        )
        return [row.split(",", 1)[1] for row in result.stdout.splitlines()]

    assert complete("runyard jobs trigger ana") == ["analytics"]
    assert sorted(complete("runyard jobs trigger analytics b")) == ["broken", "build"]
    assert complete("runyard runs list --project analytics --job sl") == ["slow"]


def test_shell_completion_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli"],
        capture_output=True,
        text=True,
        env={**os.environ, "_RUNYARD_COMPLETE": "bash_source"},
        timeout=60,
    )
    assert result.returncode == 0
    assert "_RUNYARD_COMPLETE=bash_complete" in result.stdout
    words = subprocess.run(
        [sys.executable, "-m", "app.cli"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "_RUNYARD_COMPLETE": "bash_complete",
            "COMP_WORDS": "runyard jo",
            "COMP_CWORD": "1",
        },
        timeout=60,
    )
    assert "jobs" in words.stdout


def test_follow_reconnects_after_a_quiet_spell_without_repeating_the_log(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The event stream has no keep-alives: after QUIET_SECONDS without an event the CLI
    connects again, and the log the new connection starts with is not printed twice."""
    from app.cli import main, waiting
    from app.cli.http import RunyardClient

    monkeypatch.setattr(waiting, "QUIET_SECONDS", 0.3)
    connections: list[str] = []
    original = RunyardClient.events

    def counted(self: RunyardClient, path: str, read_timeout: float) -> Any:
        connections.append(path)
        return original(self, path, read_timeout)

    monkeypatch.setattr(RunyardClient, "events", counted)
    server, token = setup["server"], setup["token"]
    code = main(
        ["jobs", "trigger", "analytics", "slow", "--follow", "--url", server.url, "--token", token]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert len(connections) >= 2  # dbt's start-up alone is quieter than 0.3 s
    run_id = connections[0].split("/")[4]
    stored = httpx.get(
        f"{server.url}/api/v1/runs/{run_id}/logs", headers={"Authorization": f"Bearer {token}"}
    ).text
    assert out.startswith(stored)  # the whole log, each line once, then the summary
    assert out.count("Completed successfully") == 1
