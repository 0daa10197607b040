"""Every API route declares the action it takes (app/services/tokens.py ACTIONS), so a
token's action set can be checked by the guard: a write route without one fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, post

from app.api.auth import OWN_CREDENTIAL, action_of
from app.main import create_app
from app.services.tokens import ACTION_OPT, ACTIONS
from app.settings import Settings

READS = {"GET", "HEAD", "OPTIONS"}


def undeclared(app: Litestar) -> list[str]:
    """Routes under /api/ whose writes declare no action (or an unknown one)."""
    missing = []
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if handler.opt.get(OWN_CREDENTIAL):
                continue  # a pod's own credential, not an API token
            declared = handler.opt.get(ACTION_OPT)
            if declared is not None and declared not in ACTIONS:
                missing.append(f"{route.path}: unknown action {declared!r}")
            for method in set(handler.http_methods) - READS:
                if action_of(handler, method) is None:
                    missing.append(f"{method} {route.path} ({handler.handler_name})")
    return missing


@pytest.fixture
def app(tmp_path: Path) -> Litestar:
    return create_app(Settings(database=str(tmp_path / "r.db"), executor="local"))


def test_every_api_write_route_declares_its_action(app: Litestar) -> None:
    assert undeclared(app) == []


def test_the_walk_finds_a_write_route_without_an_action(tmp_path: Path) -> None:
    @post("/api/v1/things")
    async def make_thing() -> None:
        return None

    app = create_app(Settings(database=str(tmp_path / "r.db"), executor="local"))
    app.register(make_thing)
    assert undeclared(app) == ["POST /api/v1/things (make_thing)"]


@pytest.mark.parametrize(
    ("path", "method", "action"),
    [
        ("/api/v1/projects/{project_id:str}/jobs/{job_id:str}", "PUT", "write"),
        ("/api/v1/projects/{project_id:str}/jobs/{job_id:str}/trigger", "POST", "trigger"),
        ("/api/v1/projects/{project_id:str}/deploy", "POST", "deploy"),
        ("/api/v1/runs/{run_id:str}/cancel", "POST", "trigger"),
        ("/api/v1/runs/{run_id:str}/rerun", "POST", "trigger"),
        ("/api/v1/audit", "GET", "audit"),
        ("/api/v1/runs", "GET", "read"),
    ],
)
def test_the_actions_of_some_routes(app: Litestar, path: str, method: str, action: str) -> None:
    found: list[Any] = [
        handler
        for route in app.routes
        if route.path == path
        for handler in getattr(route, "route_handlers", [])
        if method in handler.http_methods
    ]
    assert len(found) == 1, path
    assert action_of(found[0], method) == action
