"""A running dbt run's page follows its log as lines arrive, without reloading while the run
is active, and the search box filters the lines."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Page
from tests.browser.world import SLOW_STEPS, World

pytestmark = pytest.mark.slow


def test_the_log_of_a_running_run_grows_in_the_open_page(page: Page, ui: World) -> None:
    page.sign_in("admin")
    run_id = ui.trigger(ui.slow_project_id, ui.slow_job_id)
    page.open(f"/ui/runs/{run_id}")
    # A mark on this document: a reload or a navigation would lose it.
    page.driver.execute_script("window.__sameDocument = true;")

    first_done = f"1 of {SLOW_STEPS} OK"
    last_done = f"{SLOW_STEPS} of {SLOW_STEPS} OK"
    seen = page.wait(
        lambda: (text := page.text("run-log")) and first_done in text and text,
        f"'{first_done}' in the log",
        timeout=60,
    )
    # Seen while the run was still going: the page showed a part of the log, not the end.
    assert last_done not in seen, "the whole run was over before its page could follow it"
    grown = page.wait(
        lambda: (text := page.text("run-log")) and len(text) > len(seen) and text,
        "more of the log",
        timeout=30,
    )
    assert grown.startswith(seen.splitlines()[0])
    if last_done not in grown:
        # Still running, and the lines came into the same document: no reload, no navigation.
        assert page.driver.execute_script("return window.__sameDocument === true;")
    # Once the run has ended the page shows its final state (ui.js reloads it then).
    page.wait(lambda: "success" in page.text("run-status"), "the status to become success", 60)
    page.wait(lambda: last_done in page.text("run-log"), f"'{last_done}' in the log", timeout=30)
    assert ui.run(run_id)["status"] == "success"

    search = page.by_id("log-search")
    search.send_keys("step_3")
    page.wait(
        lambda: all("step_3" in line for line in page.text("run-log").splitlines() if line),
        "the log filtered to step_3's lines",
    )
    assert "step_3" in page.text("run-log")
    search.clear()
    search.send_keys(" ")  # some browsers fire no input event for clear()
    search.clear()
    page.driver.execute_script(
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", search
    )
    page.wait(lambda: "step_1" in page.text("run-log"), "the whole log again")
