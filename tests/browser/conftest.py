"""Fixtures of the browser tests: one live runyard with real dbt runs (tests/browser/world.py)
and one headless chromium for the whole session, and a ``page`` per test that starts signed
out and whose screenshot (and HTML) is saved when the test fails.

Screenshots go to $RUNYARD_TEST_ARTIFACTS/browser (default: <temp dir>/runyard-artifacts/
browser); a failing test's report names its files.

Without chromium and chromedriver the tests skip, saying why; under CI (CI=true) they fail
instead, so CI never passes without having driven a browser.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.world import World, browser_missing, make_driver, sign_in, wait_until, world

ARTIFACTS = (
    Path(
        os.environ.get("RUNYARD_TEST_ARTIFACTS")
        or Path(tempfile.gettempdir()) / "runyard-artifacts"
    )
    / "browser"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failing test's screenshot is taken here, at the moment of failure, and named in the
    # report (the section is printed with the failure).
    report = yield
    if report.when == "call" and report.failed:
        page = getattr(item, "funcargs", {}).get("page")
        if isinstance(page, Page):
            try:
                shot = page.shot("failure")
            except Exception as exc:  # a dead browser must not hide the failure
                report.sections.append(("browser screenshot", f"none: {exc!r}"))
            else:
                report.sections.append(
                    ("browser screenshot", f"{shot}\n{shot.with_suffix('.html')}")
                )
    return report


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = browser_missing()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"{reason}; CI must run the browser tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ui(browser_available: None) -> Iterator[World]:
    with world() as made:
        yield made


@pytest.fixture(scope="session")
def failed_run(ui: World) -> str:
    """The id of a finished, failed ``dbt build`` of the example project."""
    return ui.failed_build()


@pytest.fixture(scope="session")
def driver(
    browser_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebDriver]:
    # Screenshots of an earlier session would pass for this one's.
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    made = make_driver(tmp_path_factory.mktemp("chromium-profile"))
    yield made
    made.quit()


class Page:
    """The browser, pointed at the live server, for one test."""

    def __init__(self, driver: WebDriver, ui: World, name: str) -> None:
        self.driver = driver
        self.ui = ui
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]
        self.saved: list[Path] = []

    def open(self, path: str) -> None:
        self.driver.get(self.ui.url + path)

    def sign_in(self, role: str) -> None:
        token = {
            "admin": self.ui.admin_token,
            "viewer": self.ui.viewer_token,
            "other": self.ui.other_token,
        }[role]
        sign_in(self.driver, self.ui.url, token)

    @property
    def path(self) -> str:
        return re.sub(r"^https?://[^/]+", "", self.driver.current_url)

    def by_id(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, element_id: str) -> str:
        return self.by_id(element_id).text

    def wait(self, condition: Any, what: str, timeout: float = 15) -> Any:
        return wait_until(self.driver, condition, what, timeout)

    def shot(self, label: str) -> Path:
        """A full-width screenshot of the page now, and its HTML beside it."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"{self.name}--{label}.png"
        self.driver.save_screenshot(str(target))
        target.with_suffix(".html").write_text(self.driver.page_source, encoding="utf-8")
        self.saved.append(target)
        return target


@pytest.fixture
def page(driver: WebDriver, ui: World, request: pytest.FixtureRequest) -> Iterator[Page]:
    # Each test starts signed out on a blank page, whatever the last one did.
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    yield Page(driver, ui, request.node.name)
