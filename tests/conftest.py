"""Shared fixtures: a real app over a temporary SQLite database, and tokens for three
callers: an admin and a viewer of org "acme", and an admin of another org "globex"."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.main import create_app
from app.settings import Settings

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("SQLMESH__DISABLE_ANONYMIZED_ANALYTICS", "1")

ContainerFactory = Callable[..., Container]


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database": str(tmp_path / "runyard.db"),
            "executor": "local",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def container_factory(settings_factory: Callable[..., Settings]) -> Iterator[ContainerFactory]:
    """Builds started containers; every one is stopped at the end of the test."""
    made: list[Container] = []

    def make(start: bool = True, **overrides: Any) -> Container:
        container = Container(settings_factory(**overrides))
        if start:
            container.start()
        made.append(container)
        return container

    yield make
    for container in reversed(made):
        container.stop()


@pytest.fixture
def container(container_factory: ContainerFactory) -> Container:
    return container_factory()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(container=container)) as test_client:
        yield test_client


def _headers(container: Container, org: str, role: str) -> dict[str, str]:
    token, _ = container.tokens.create(org, role)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_headers(container: Container) -> dict[str, str]:
    return _headers(container, "acme", "admin")


@pytest.fixture
def viewer_headers(container: Container) -> dict[str, str]:
    return _headers(container, "acme", "viewer")


@pytest.fixture
def other_org_headers(container: Container) -> dict[str, str]:
    return _headers(container, "globex", "admin")


@pytest.fixture(autouse=True)
def _quiet_http_client_logs() -> None:
    # httpx logs every request at INFO; test output is easier to read without them.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class LiveServer:
    """runyard served by a real uvicorn on a free port, in a background thread."""

    def __init__(self, container: Container) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.container = container
        config = uvicorn.Config(
            create_app(container=container),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> LiveServer:
        import time

        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


@pytest.fixture
def live_server(container: Container) -> Iterator[LiveServer]:
    server = LiveServer(container).start()
    yield server
    server.stop()


def org_folder(tmp_path: Path, org: str = "acme") -> Path:
    """The folder of ``org``'s local projects under the default projects root of
    ``settings_factory`` (``projects/`` beside the database), created 0700."""
    folder = tmp_path / "projects" / org
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


@pytest.fixture
def dbt_project_dir(tmp_path: Path) -> Path:
    """A fresh copy of examples/dbt_demo to run real dbt in, in org acme's folder."""
    import shutil

    target = org_folder(tmp_path) / "dbt_demo"
    shutil.copytree(
        Path(__file__).parent.parent / "examples" / "dbt_demo",
        target,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "dbt_packages"),
    )
    return target


@pytest.fixture
def sqlmesh_project_dir(tmp_path: Path) -> Path:
    """A fresh copy of examples/sqlmesh_demo to run real SQLMesh in, in org acme's folder."""
    import shutil

    target = org_folder(tmp_path) / "sqlmesh_demo"
    shutil.copytree(
        Path(__file__).parent.parent / "examples" / "sqlmesh_demo",
        target,
        ignore=shutil.ignore_patterns("logs", ".cache", "*.duckdb", "*.db"),
    )
    return target
