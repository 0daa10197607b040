"""Signing in and out through the forms, and what a stranger sees."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser.conftest import Page
from tests.browser.world import World, csrf_of, session_client

pytestmark = pytest.mark.slow


def test_a_deep_link_asks_to_sign_in_then_lands_there_and_sign_out_ends_it(
    page: Page, ui: World
) -> None:
    page.open(f"/ui/jobs/{ui.job_id}")
    page.wait(lambda: page.path.startswith("/ui/signin"), "the sign-in page")
    assert parse_qs(urlsplit(page.path).query)["next"] == [f"/ui/jobs/{ui.job_id}"], page.path

    page.sign_in("admin")
    page.wait(lambda: page.path == f"/ui/jobs/{ui.job_id}", "the job page after signing in")
    assert "nightly" in page.text("job-config")

    page.by_id("signout").click()
    page.wait(lambda: page.path.startswith("/ui/signin"), "the sign-in page after signing out")
    # The session is over on the server too, not only in this browser's cookie jar.
    page.open("/ui/")
    page.wait(lambda: page.path.startswith("/ui/signin"), "signing in again")


def test_a_wrong_token_is_refused_and_grants_nothing(page: Page, ui: World) -> None:
    page.open("/ui/signin")
    page.by_id("signin-token").send_keys("ryd_not-a-token-at-all")
    page.by_id("signin-submit").click()
    page.wait(lambda: page.all("#signin-token"), "the sign-in form again")
    assert page.path.startswith("/ui/signin"), page.path
    assert "ryd_not-a-token-at-all" not in page.driver.page_source  # not echoed back
    with session_client(page.driver, ui.url) as http:
        assert http.get("/ui/").status_code == 303
    with httpx.Client(base_url=ui.url, timeout=30) as http:
        form = http.get("/ui/signin")
        refused = http.post(
            "/ui/signin", data={"token": "ryd_nope", "csrf_token": csrf_of(form.text)}
        )
        assert refused.status_code == 401, refused.status_code
        assert http.get("/ui/").status_code == 303
