"""A failed real dbt run, found from the overview; an admin's retry and rerun (each cancelled
from its own page); a viewer's and another org's view of the same run."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import Page
from tests.browser.world import RUN_URL, World, csrf_of, session_client

pytestmark = pytest.mark.slow


def test_from_the_overview_to_the_failed_model_and_its_error(
    page: Page, ui: World, failed_run: str
) -> None:
    page.sign_in("admin")
    page.open("/ui/")
    row = page.by_id("jobs").find_element(By.CSS_SELECTOR, f'[data-job-id="{ui.job_id}"]')
    assert row.find_element(By.CSS_SELECTOR, ".status.status-failed").text.strip() == "failed"

    failing = page.by_id("failing-now")
    failing.find_element(By.CSS_SELECTOR, f'a[href="/ui/jobs/{ui.job_id}"]').click()
    page.wait(lambda: page.path == f"/ui/jobs/{ui.job_id}", "the failing job's page")

    bar = page.by_id("run-history").find_element(
        By.CSS_SELECTOR, f'a[href="/ui/runs/{failed_run}"]'
    )
    assert "failed" in (bar.get_attribute("aria-label") or "")
    bar.click()
    page.wait(lambda: page.path == f"/ui/runs/{failed_run}", "the failed run's page")

    assert "failed" in page.text("run-status")
    failed = page.by_id("failed-nodes")
    assert "broken_orders" in failed.text
    errors = [e.text for e in failed.find_elements(By.CLASS_NAME, "node-error")]
    assert any("Conversion Error" in e for e in errors), errors
    # The models that did build are listed with the rest.
    assert "customer_orders" in page.text("node-results")
    assert "broken_orders" in page.text("run-log")


def _new_run_from(page: Page, button: str, old: str) -> str:
    page.open(f"/ui/runs/{old}")
    page.by_id(button).click()
    found = page.wait(
        lambda: (m := RUN_URL.search(page.path)) and m.group(1) != old and m.group(1),
        f"the new run's page after {button}",
    )
    assert page.text("run-status").strip(), "the new run's page shows no status"
    return str(found)


def _cancel_here(page: Page, ui: World, run_id: str) -> None:
    """Cancel the run whose page is open (dbt takes seconds to start: it is still active)."""
    page.by_id("btn-cancel").click()
    page.wait(lambda: page.driver.switch_to.alert, "the confirmation").accept()
    page.wait(lambda: "cancelled" in page.text("run-status"), "the run to show cancelled", 30)
    assert ui.run(run_id)["status"] == "cancelled"


def test_an_admin_retries_reruns_and_cancels(page: Page, ui: World, failed_run: str) -> None:
    page.sign_in("admin")
    retry = _new_run_from(page, "btn-retry", failed_run)
    made = ui.run(retry)
    assert made["retry_of"] == failed_run and made["triggered_by"] == "retry", made
    _cancel_here(page, ui, retry)

    rerun = _new_run_from(page, "btn-rerun", failed_run)
    again = ui.run(rerun)
    assert again["rerun_of"] == failed_run and again["command"] == "dbt build", again
    _cancel_here(page, ui, rerun)


def test_a_viewer_sees_no_controls_and_cannot_post_them(
    page: Page, ui: World, failed_run: str
) -> None:
    page.sign_in("viewer")
    for path in ("/ui/", f"/ui/jobs/{ui.job_id}", f"/ui/runs/{failed_run}"):
        page.open(path)
        page.wait(lambda p=path: page.path == p, path)
        controls = [e.get_attribute("id") for e in page.all('[id^="btn-"]')]
        assert controls == [], f"{path} shows a viewer {controls}"
        assert page.by_id("signout").is_displayed(), f"{path} has no way to sign out"
    # The forms are not there, and forging one is refused and starts nothing.
    before = ui.api.get(f"/api/v1/projects/{ui.project_id}/jobs/{ui.job_id}/runs").json()
    with session_client(page.driver, ui.url) as http:
        token = csrf_of(http.get(f"/ui/runs/{failed_run}").text)
        for action in ("rerun", "retry"):
            refused = http.post(f"/ui/runs/{failed_run}/{action}", data={"csrf_token": token})
            assert refused.status_code == 403, (action, refused.status_code)
        refused = http.post(f"/ui/jobs/{ui.job_id}/trigger", data={"csrf_token": token})
        assert refused.status_code == 403, refused.status_code
    after = ui.api.get(f"/api/v1/projects/{ui.project_id}/jobs/{ui.job_id}/runs").json()
    assert after == before


def test_another_org_gets_not_found_for_this_orgs_run_and_job(
    page: Page, ui: World, failed_run: str
) -> None:
    page.sign_in("other")
    page.open("/ui/")
    page.wait(lambda: page.path == "/ui/", "globex's overview")
    assert not page.all(f'[data-job-id="{ui.job_id}"]')
    assert "nightly" not in page.driver.page_source
    page.open(f"/ui/runs/{failed_run}")
    assert not page.all("#run-status") and not page.all("#run-log")
    assert "broken_orders" not in page.driver.page_source
    with session_client(page.driver, ui.url) as http:
        for path in (f"/ui/runs/{failed_run}", f"/ui/jobs/{ui.job_id}"):
            response = http.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert "broken_orders" not in response.text and "nightly" not in response.text
        token = csrf_of(http.get("/ui/").text)
        refused = http.post(f"/ui/runs/{failed_run}/rerun", data={"csrf_token": token})
        assert refused.status_code == 404, refused.status_code
