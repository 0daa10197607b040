"""`runyard environments …` as a subprocess against a real server: create (a secret value
read from the shell's environment, never from the command line), list, update, delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import LiveServer

SECRET = "cli-secret-9e8d7c6b"


def _cli(
    server: LiveServer, token: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    values |= {"RUNYARD_URL": server.url, "RUNYARD_TOKEN": token} | env
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=values,
        timeout=120,
    )


def test_environments_commands(live_server: LiveServer) -> None:
    token, _ = live_server.container.tokens.create("acme", "admin")
    created = _cli(live_server, token, "projects", "create", "analytics", "--kind", "dbt")
    assert created.returncode == 0, created.stderr

    missing = _cli(
        live_server, token, "environments", "create", "analytics", "prod",
        "--secret-var", "SNOWFLAKE_PASSWORD=WAREHOUSE_PW",
    )  # fmt: skip
    assert missing.returncode == 2 and "WAREHOUSE_PW" in missing.stderr

    result = _cli(
        live_server, token, "environments", "create", "analytics", "prod", "--json",
        "--target", "prod", "--var", "WAREHOUSE=PROD_WH",
        "--secret-var", "SNOWFLAKE_PASSWORD=WAREHOUSE_PW",
        WAREHOUSE_PW=SECRET,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    prod: dict[str, Any] = json.loads(result.stdout)
    assert prod["target"] == "prod" and prod["environment"] == {"WAREHOUSE": "PROD_WH"}
    assert prod["secret_environment"] == {"SNOWFLAKE_PASSWORD": "********"}
    assert SECRET not in result.stdout + result.stderr
    org = live_server.container.store.orgs.by_slug("acme")
    assert org is not None
    stored = live_server.container.store.environments.get(org.id, prod["project_id"], prod["id"])
    assert stored is not None and stored.secret_environment == {"SNOWFLAKE_PASSWORD": SECRET}

    listed = _cli(live_server, token, "environments", "list", "analytics")
    assert listed.returncode == 0, listed.stderr
    assert "default" in listed.stdout and "prod" in listed.stdout

    updated = _cli(
        live_server, token, "environments", "update", "analytics", "prod", "--json",
        "--target", "prod2",
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["target"] == "prod2"
    assert json.loads(updated.stdout)["secret_environment"] == {"SNOWFLAKE_PASSWORD": "********"}

    refused = _cli(live_server, token, "environments", "delete", "analytics", "default", "--yes")
    assert refused.returncode == 3 and "default" in refused.stderr
    deleted = _cli(live_server, token, "environments", "delete", "analytics", "prod", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert live_server.container.store.environments.for_project(prod["project_id"])[0].is_default
    assert len(live_server.container.store.environments.for_project(prod["project_id"])) == 1
