"""The web UI's sign-in, sessions, CSRF and roles through real HTTP (uvicorn)."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from app.container import Container
from app.settings import RateLimit
from tests.conftest import ContainerFactory, LiveServer
from tests.integration.web_helpers import browser, csrf_of, seed, sign_in


def test_pages_need_a_session_and_come_back_after_sign_in(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with browser(live_server.url) as client:
        assert client.get("/").headers["location"] == "/ui/"
        page = f"/ui/runs/{world.failed_run_id}?nodes=1"
        response = client.get(page)
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/signin?next=" + quote(page, safe="/")
        signed = sign_in(client, world.token, next_path=page)
        assert signed.status_code == 303
        assert signed.headers["location"] == page
        cookie = signed.headers["set-cookie"]
        assert "runyard_session=" in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert "Max-Age=43200" in cookie  # RUNYARD_UI_SESSION_HOURS, 12 by default
        assert "Secure" not in cookie  # plain HTTP here
        assert world.token not in cookie
        assert client.get(page).status_code == 200
        # The API still takes bearer tokens only: the session cookie (path /ui) is no
        # credential there.
        assert client.get("/api/v1/projects").status_code == 401


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/ui/",
        "//evil.example/ui/",
        "/\\evil.example",
        "/api/v1/projects",
        "/ui/../api/v1/projects",
        "javascript:alert(1)",
    ],
)
def test_sign_in_never_redirects_off_the_ui(
    container: Container, live_server: LiveServer, next_path: str
) -> None:
    world = seed(container)
    with browser(live_server.url) as client:
        assert sign_in(client, world.token, next_path=next_path).headers["location"] == "/ui/"


def test_a_bad_token_gets_the_form_again_with_401(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    revoked, info = container.tokens.create("acme", "viewer")
    container.tokens.revoke(info.id)
    with browser(live_server.url) as client:
        for token in ("nonsense", "ryd_" + "x" * 43, revoked):
            response = sign_in(client, token)
            assert response.status_code == 401
            assert 'id="signin-token"' in response.text and "revoked" in response.text
            assert "runyard_session" not in response.headers.get("set-cookie", "")
        assert client.get("/ui/").status_code == 303
        # And the good one still works from the same browser.
        assert sign_in(client, world.token).status_code == 303


def test_sign_in_form_is_csrf_protected(container: Container, live_server: LiveServer) -> None:
    world = seed(container)
    with browser(live_server.url) as client:
        form = client.get("/ui/signin")
        forged = {"token": world.token, "csrf_token": "0" * 64}
        assert client.post("/ui/signin", data=forged).status_code == 403
        # A form token without its cookie (another browser's form) is refused too.
        with browser(live_server.url) as other:
            stolen = {"token": world.token, "csrf_token": csrf_of(form.text)}
            response = other.post("/ui/signin", data=stolen)
            assert response.status_code == 403
            assert "runyard_session" not in response.headers.get("set-cookie", "")


def test_sign_out_ends_the_session_on_the_server(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with browser(live_server.url) as client:
        sign_in(client, world.token)
        page = client.get("/ui/")
        assert 'id="signout"' in page.text
        kept = client.cookies.get("runyard_session")
        assert kept
        # Without the form's CSRF token, no sign-out.
        assert client.post("/ui/signout", data={"csrf_token": "nope"}).status_code == 403
        assert client.get("/ui/").status_code == 200
        out = client.post("/ui/signout", data={"csrf_token": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
        assert client.get("/ui/").status_code == 303
    # A copy of the cookie taken before signing out opens nothing any more.
    with browser(live_server.url) as thief:
        thief.cookies.set("runyard_session", kept, path="/ui")
        assert thief.get("/ui/").status_code == 303


def test_revoking_the_token_ends_its_sessions_at_once(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with browser(live_server.url) as client:
        sign_in(client, world.token)
        assert client.get(f"/ui/jobs/{world.job_id}").status_code == 200
        container.tokens.revoke(world.principal.token_id)
        # No grace period: the token service's short cache is not used for sessions.
        response = client.get(f"/ui/jobs/{world.job_id}")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/signin")


def test_a_session_expires(container_factory: ContainerFactory) -> None:
    container = container_factory(ui_session_hours=2 / 3600)  # two seconds
    world = seed(container)
    server = LiveServer(container).start()
    try:
        with browser(server.url) as client:
            signed = sign_in(client, world.token)
            assert "Max-Age=2" in signed.headers["set-cookie"]
            assert client.get("/ui/").status_code == 200
            time.sleep(2.2)
            # The browser would have dropped the cookie; the server refuses it anyway.
            assert client.get("/ui/").status_code == 303
    finally:
        server.stop()


def test_forged_and_tampered_cookies_are_refused(
    container: Container, live_server: LiveServer
) -> None:
    world = seed(container)
    with browser(live_server.url) as client:
        sign_in(client, world.token)
        real = client.cookies.get("runyard_session")
        assert real
        session_id, _, mac = real.rpartition(".")
    for forged in (
        session_id,  # no signature
        session_id + "." + "0" * len(mac),
        "A" + session_id[1:] + "." + mac,  # another id under the old signature
        "x" * 5000,
    ):
        with browser(live_server.url) as client:
            client.cookies.set("runyard_session", forged, path="/ui")
            assert client.get("/ui/").status_code == 303, forged[:20]


def test_secure_cookie_behind_an_https_public_url(container_factory: ContainerFactory) -> None:
    container = container_factory(public_url="https://runyard.example.com")
    world = seed(container)
    server = LiveServer(container).start()
    try:
        with browser(server.url) as client:
            form = client.get("/ui/signin")
            assert "Secure" in form.headers["set-cookie"]
            # A browser keeps a Secure cookie for HTTPS; this test talks plain HTTP to the
            # server behind the (pretend) proxy, so it hands the cookie back itself.
            nonce = form.headers["set-cookie"].split(";")[0].split("=", 1)[1]
            signed = client.post(
                "/ui/signin",
                data={"token": world.token, "csrf_token": csrf_of(form.text)},
                headers={"Cookie": f"runyard_signin={nonce}"},
            )
            assert signed.status_code == 303
            session_cookie = next(
                c for c in signed.headers.get_list("set-cookie") if "runyard_session=" in c
            )
            assert "Secure" in session_cookie and "HttpOnly" in session_cookie
    finally:
        server.stop()


def test_a_session_spends_its_tokens_rate_limit(container_factory: ContainerFactory) -> None:
    container = container_factory(rate_limit=RateLimit.parse("8/minute"))
    token, _ = container.tokens.create("acme", "viewer")
    server = LiveServer(container).start()
    try:
        with browser(server.url) as client:
            assert sign_in(client, token).status_code == 303  # one request of the token's
            answers = [client.get("/ui/") for _ in range(10)]
            refused = [a for a in answers if a.status_code == 429]
            assert refused and all(a.status_code in (200, 429) for a in answers)
            assert refused[0].headers["retry-after"]
            assert "text/html" in refused[0].headers["content-type"]
    finally:
        server.stop()
