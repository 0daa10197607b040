"""The main pages pass axe-core's checks (no serious or critical violation), each saved as a
screenshot; the API reference at /schema renders offline from runyard's own files."""

from __future__ import annotations

import pytest

from tests.browser.a11y import assert_accessible
from tests.browser.conftest import Page
from tests.browser.world import World

pytestmark = pytest.mark.slow


def test_the_sign_in_page_is_accessible(page: Page) -> None:
    page.open("/ui/signin")
    page.shot("signin")
    assert_accessible(page.driver)


@pytest.mark.parametrize("which", ["overview", "job", "run"])
def test_the_main_pages_are_accessible(page: Page, ui: World, failed_run: str, which: str) -> None:
    path = {"overview": "/ui/", "job": f"/ui/jobs/{ui.job_id}", "run": f"/ui/runs/{failed_run}"}[
        which
    ]
    page.sign_in("admin")
    page.open(path)
    page.wait(lambda: page.path == path, path)
    page.shot(which)
    assert_accessible(page.driver)


def test_the_api_reference_renders_from_runyards_own_files(page: Page, ui: World) -> None:
    # Record what the page's security policy blocks, from before the page's first script.
    hook = page.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__blocked = []; document.addEventListener("
            "'securitypolicyviolation', e => window.__blocked.push(e.blockedURI));"
        },
    )
    try:
        page.open("/schema")
        # Redoc has rendered the operations (a link per operation in its side menu).
        page.wait(
            lambda: page.driver.execute_script(
                "return document.querySelectorAll('[role=menuitem], li[data-item-id]').length > 5"
            ),
            "Redoc to render the API reference",
            timeout=30,
        )
        assert "trigger" in page.driver.page_source.lower()
        loaded = page.driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".map(e => ({url: e.name, got: e.responseStart > 0 || e.transferSize > 0}))"
        )
        blocked = set(page.driver.execute_script("return window.__blocked"))
    finally:
        page.driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": hook["identifier"]}
        )
    own = f"{ui.url}/"
    assert any(e["url"] == f"{own}static/vendor/redoc.standalone.js" and e["got"] for e in loaded)
    # Anything from elsewhere (the bundle's footer asks for a logo on Redocly's CDN) was
    # stopped by the page's policy before any request left the browser.
    foreign = [
        e
        for e in loaded
        if e["url"].startswith(("http:", "https:")) and not e["url"].startswith(own)
    ]
    assert all(e["url"] in blocked and not e["got"] for e in foreign), (foreign, blocked)
