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
    page.open("/schema")
    # Redoc has rendered the operations (a link per operation in its side menu).
    page.wait(
        lambda: page.driver.execute_script(
            "return document.querySelectorAll('[role=menuitem], li[data-item-id]').length > 5"
        ),
        "Redoc to render the API reference",
        timeout=30,
    )
    assert "Trigger" in page.driver.page_source or "trigger" in page.driver.page_source
    loaded = page.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    foreign = [
        url
        for url in loaded
        if url.startswith(("http:", "https:", "ws:", "wss:")) and not url.startswith(ui.url + "/")
    ]
    assert foreign == [], f"/schema loaded from other hosts: {foreign}"
    assert f"{ui.url}/static/vendor/redoc.standalone.js" in loaded
