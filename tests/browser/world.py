"""What the browser tests (and the README screenshots) drive: Debian's chromium through its
chromedriver, and a live runyard with real dbt runs to look at.

The world: a runyard served by uvicorn over real HTTP on a free port, with a temporary
database and projects root; org ``acme`` has the dbt example project (``analytics``, job
``nightly`` running ``dbt build``, whose model ``broken_orders`` fails) and a small project
whose five Python models sleep a second each (``slowpoke``, job ``steps``: a real dbt run
that prints a progress line about every second, for following a log as it grows); tokens for
an admin and a viewer of ``acme`` and an admin of another org, ``globex``.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from app.container import Container
from app.settings import Settings
from tests.conftest import LiveServer
from tests.conftest_examples import copy_example

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TERMINAL = {"success", "failed", "cancelled", "timed_out", "error"}
# Flags for a headless chromium run as root on a machine without a network: no sandbox
# (root), no GPU, and nothing that calls home (sync, component updates, QUIC probes).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-device-scale-factor=1",
)

SLOW_STEPS = 5
_SLOW_MODEL = """import time


def model(dbt, session):
    # A second of work, so dbt's progress lines arrive about a second apart.
    time.sleep(1)
    return session.sql("select 1 as id")
"""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} missing: the browser tests need Debian's chromium and "
        "chromium-driver packages (./dev test installs them when run as root)"
    )


def make_driver(profile: Path, width: int = 1280, height: int = 900) -> WebDriver:
    """A headless chromium under Selenium, with this machine's chromedriver (never one
    Selenium Manager would download) and a fresh profile directory."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def write_slow_project(folder: Path) -> Path:
    """A dbt project on DuckDB whose models each take a second (dbt-duckdb runs Python
    models in the dbt process)."""
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        "name: slowpoke\nversion: '1.0.0'\nconfig-version: 2\nprofile: slowpoke\n"
        "model-paths: ['models']\nflags:\n  send_anonymous_usage_stats: false\n"
    )
    (folder / "profiles.yml").write_text(
        "slowpoke:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: slow.duckdb\n      threads: 1\n"
    )
    for step in range(1, SLOW_STEPS + 1):
        (folder / "models" / f"step_{step}.py").write_text(_SLOW_MODEL)
    return folder


class World:
    """The live server, its tokens, and the ids of what was made."""

    def __init__(self, root: Path) -> None:
        self.root = root
        settings = Settings(database=str(root / "runyard.db"), executor="local")
        self.container = Container(settings)
        self.container.start()
        self.server = LiveServer(self.container).start()
        self.url = self.server.url
        tokens = self.container.tokens
        self.admin_token, _ = tokens.create("acme", "admin")
        self.viewer_token, _ = tokens.create("acme", "viewer")
        self.other_token, _ = tokens.create("globex", "admin")
        self.api = httpx.Client(
            base_url=self.url,
            timeout=60,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        acme = root / "projects" / "acme"
        acme.mkdir(mode=0o700, parents=True)
        self.project_id = self.project("analytics", copy_example("dbt_demo", acme / "dbt_demo"))
        self.job_id = self.job(self.project_id, "nightly", "dbt build")
        self.slow_project_id = self.project("slowpoke", write_slow_project(acme / "slowpoke"))
        self.slow_job_id = self.job(self.slow_project_id, "steps", "dbt run")
        # Started now, waited for by the tests that need it: dbt takes a while to start.
        self._build = self.trigger(self.project_id, self.job_id)

    def project(self, name: str, path: Path) -> str:
        response = self.api.post(
            "/api/v1/projects",
            json={"name": name, "kind": "dbt", "path": str(path), "description": "demo"},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, project_id: str, name: str, command: str) -> str:
        response = self.api.post(
            f"/api/v1/projects/{project_id}/jobs",
            json={"name": name, "command": command, "schedule": "0 2 * * *"},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def trigger(self, project_id: str, job_id: str) -> str:
        response = self.api.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger")
        assert response.status_code == 201, response.text
        return str(response.json()["job_run_id"])

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.api.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in TERMINAL:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s")

    def failed_build(self) -> str:
        """A finished run of ``dbt build`` on the example project: failed, at
        ``broken_orders`` (a Conversion Error) and the singular test."""
        run = self.wait(self._build)
        assert run["status"] == "failed", run
        return self._build

    def close(self) -> None:
        self.api.close()
        self.server.stop()
        self.container.stop()


@contextmanager
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="runyard-browser-") as tmp:
        made = World(Path(tmp))
        try:
            yield made
        finally:
            made.close()


def sign_in(driver: WebDriver, url: str, token: str) -> None:
    """Through the sign-in form, as a person would (the one on the page when the browser
    was sent there, so its ``next`` is kept)."""
    from selenium.webdriver.common.by import By

    if "/ui/signin" not in driver.current_url:
        driver.get(f"{url}/ui/signin")
    field = driver.find_element(By.ID, "signin-token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "signin-submit").click()
    wait_until(driver, lambda: "/ui/signin" not in driver.current_url, "signing in")


def wait_until(driver: WebDriver, condition: Any, what: str, timeout: float = 15) -> Any:
    """Poll ``condition()`` until it is truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the page may be between two loads
            last = exc
        time.sleep(0.1)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (at {driver.current_url}"
        + (f"; last error: {last!r}" if last else "")
        + ")"
    )


def session_client(driver: WebDriver, url: str) -> httpx.Client:
    """An HTTP client carrying the browser's cookies: to read status codes, which
    WebDriver does not show."""
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    return httpx.Client(base_url=url, cookies=cookies, timeout=30, follow_redirects=False)


RUN_URL = re.compile(r"^/ui/runs/(run_[A-Za-z0-9]+)(?:\?.*)?$")
_CSRF = re.compile(
    r"<input[^>]*name=\"csrf_token\"[^>]*value=\"([^\"]*)\""
    r"|<input[^>]*value=\"([^\"]*)\"[^>]*name=\"csrf_token\""
)


def csrf_of(html: str) -> str:
    """The first form's csrf_token in a page."""
    found = _CSRF.search(html)
    assert found, "the page has no csrf_token field"
    return found.group(1) or found.group(2)
