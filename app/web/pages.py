"""/ui: the web UI's pages and the forms that act on jobs and runs.

Thin handlers, like the API's: a session from the cookie (app/web/sessions.py), a view
built from the services (app/web/views.py), a template. Everything blocking runs in a
worker thread (``sync_to_thread=True``).
"""

from __future__ import annotations

import math
from typing import Annotated

import msgspec
from litestar import Controller, MediaType, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect

from app.api.auth import OWN_CREDENTIAL
from app.errors import Forbidden, NotFound, Unauthorized
from app.ids import utcnow
from app.notify.outbox import NotificationOutbox
from app.services.environments import EnvironmentService
from app.services.jobs import JobService
from app.services.projects import ProjectService
from app.services.runs import RunService
from app.services.tokens import expired_message
from app.settings import Settings
from app.web import views
from app.web.common import (
    EXCEPTION_HANDLERS,
    ActionForm,
    AnyRequest,
    SignInForm,
    local_ui_path,
    secure_cookies,
    see_other,
    session_of,
    writing,
)
from app.web.render import SECURITY_HEADERS, html
from app.web.sessions import SESSION_COOKIE, SIGNIN_COOKIE, SessionManager, TokenExpired

FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
# Confirmation texts after an action, by code: the page never echoes text from the URL.
DONE = {
    "triggered": "Run started.",
    "enabled": "Job enabled.",
    "disabled": "Job disabled.",
    "deployed": "Project deployed: its schedules are active.",
    "cancelled": "Run cancelled.",
}


# Why the sign-in form is shown, by code (app/web/common.py SignInRequired.reason).
WHY = {
    "expired": "Your session ended because its token expired. Create a new token with "
    "'runyard tokens create' and sign in with it.",
}


def _done(code: str | None) -> str | None:
    return DONE.get(code or "")


class SignInController(Controller):
    """Sign-in and sign-out. The session cookie is HttpOnly, SameSite=Strict, limited to
    /ui, Secure over HTTPS, and expires with the session."""

    path = "/ui"
    include_in_schema = False
    # The session cookie is this route's credential: no bearer token, and the API's role
    # guard does not apply (the handlers check roles themselves).
    opt = {OWN_CREDENTIAL: True}
    exception_handlers = EXCEPTION_HANDLERS

    def _form(
        self,
        request: AnyRequest,
        sessions: SessionManager,
        settings: Settings,
        *,
        next_path: str | None,
        error: str | None = None,
        status: int = 200,
    ) -> Response[str]:
        nonce = sessions.new_signin_nonce()
        response = html(
            "signin.html",
            status=status,
            ui=None,
            title="Sign in",
            csrf=sessions.signin_csrf(nonce),
            next_path=next_path or "",
            error=error,
        )
        response.set_cookie(
            SIGNIN_COOKIE,
            nonce,
            path="/ui/signin",
            max_age=3600,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request, settings),
        )
        return response

    @get("/signin", sync_to_thread=True)
    def signin_form(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        settings: Settings,
        next: Annotated[str | None, Parameter(query="next", max_length=1000)] = None,
        why: Annotated[str | None, Parameter(max_length=40)] = None,
    ) -> Response[str]:
        error = WHY.get(why or "")
        if why == "expired":
            # The date from the session's own token (the cookie is still sent), in the
            # API's words; never text from the address.
            expired = ui_sessions.token_expired_at(request.cookies.get(SESSION_COOKIE))
            if expired is not None:
                error = "Your session ended. " + expired_message(expired)
        return self._form(
            request, ui_sessions, settings, next_path=local_ui_path(next), error=error
        )

    @post("/signin", sync_to_thread=True)
    def signin(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        settings: Settings,
        data: Annotated[SignInForm, FORM],
    ) -> Response[str] | Redirect:
        next_path = local_ui_path(data.next)
        if not ui_sessions.signin_csrf_ok(request.cookies.get(SIGNIN_COOKIE), data.csrf_token):
            return self._form(
                request,
                ui_sessions,
                settings,
                next_path=next_path,
                error="The sign-in form expired. Paste your token again.",
                status=403,
            )
        try:
            cookie, session = ui_sessions.sign_in(data.token)
        except TokenExpired as exc:  # the API's wording: when, and how to get another
            return self._form(
                request, ui_sessions, settings, next_path=next_path, error=exc.detail, status=401
            )
        except Unauthorized:  # malformed, unknown or revoked
            return self._form(
                request,
                ui_sessions,
                settings,
                next_path=next_path,
                error="That token is malformed, unknown or revoked. Paste a token from "
                "'runyard tokens create'.",
                status=401,
            )
        response = see_other(next_path or "/ui/")
        # The session's lifetime, or less when its token expires sooner.
        max_age = int(ui_sessions.lifetime.total_seconds())
        if session.principal.expires_at is not None:
            left = (session.principal.expires_at - utcnow()).total_seconds()
            max_age = max(1, min(max_age, math.ceil(left)))
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            path="/ui",
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request, settings),
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/ui/signin")
        return response

    @post("/signout", sync_to_thread=True)
    def signout(
        self, request: AnyRequest, ui_sessions: SessionManager, data: Annotated[ActionForm, FORM]
    ) -> Redirect:
        cookie = request.cookies.get(SESSION_COOKIE)
        session = ui_sessions.resolve(cookie)
        # A forged form must not sign anyone out either (a nuisance, not a breach).
        if session is not None and ui_sessions.csrf_ok(session, data.csrf_token):
            ui_sessions.sign_out(cookie)
        elif session is not None:
            raise Forbidden("The sign-out form's security token is wrong. Reload the page.")
        response = see_other("/ui/signin")
        response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response


class PageController(Controller):
    path = "/ui"
    include_in_schema = False
    opt = {OWN_CREDENTIAL: True}
    exception_handlers = EXCEPTION_HANDLERS

    @get("/", sync_to_thread=True)
    def overview(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        projects: ProjectService,
        jobs: JobService,
        runs: RunService,
        page: Annotated[int, Parameter(ge=1, le=100_000)] = 1,
    ) -> Response[str]:
        ui = session_of(request, ui_sessions)
        view = views.overview(ui.principal, projects, jobs, runs, page)
        return html("overview.html", ui=ui, page=view, title="Overview")

    @get("/jobs/{job_id:str}", sync_to_thread=True)
    def job(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        jobs: JobService,
        runs: RunService,
        environments: EnvironmentService,
        job_id: str,
        done: Annotated[str | None, Parameter(max_length=40)] = None,
    ) -> Response[str]:
        ui = session_of(request, ui_sessions)
        page = views.job_page(ui.principal, job_id, jobs, runs, environments)
        return html("job.html", ui=ui, page=page, title=page.job.name, done=_done(done))

    @get("/jobs/{job_id:str}/diff", sync_to_thread=True)
    def diff(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        jobs: JobService,
        job_id: str,
        from_: Annotated[int, Parameter(query="from", ge=1, le=1_000_000)],
        to: Annotated[int, Parameter(ge=1, le=1_000_000)],
    ) -> Response[str]:
        ui = session_of(request, ui_sessions)
        page = views.diff_page(ui.principal, job_id, from_, to, jobs)
        return html("diff.html", ui=ui, page=page, title=f"{page.job.name}: diff")

    @get("/runs/{run_id:str}", sync_to_thread=True)
    def run(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        runs: RunService,
        jobs: JobService,
        notifications: NotificationOutbox,
        run_id: str,
        nodes: Annotated[int, Parameter(ge=1, le=100_000)] = 1,
        q: Annotated[str, Parameter(max_length=500)] = "",
        done: Annotated[str | None, Parameter(max_length=40)] = None,
        # One step's part of the log (docs/steps.md: steps are numbered from 0).
        step: Annotated[int | None, Parameter(ge=0, le=1000)] = None,
    ) -> Response[str]:
        ui = session_of(request, ui_sessions)
        page = views.run_page(ui.principal, run_id, runs, jobs, notifications, nodes, q, step)
        return html("run.html", ui=ui, page=page, title=f"Run {page.run.id}", done=_done(done))

    @get("/runs/{run_id:str}/log", sync_to_thread=True)
    def log_tail(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        runs: RunService,
        run_id: str,
        after: Annotated[int, Parameter(ge=0, le=10**12)] = 0,
    ) -> Response[bytes]:
        ui = session_of(request, ui_sessions)
        tail = views.log_tail(ui.principal, run_id, after, runs)
        return Response(
            msgspec.json.encode(tail), media_type=MediaType.JSON, headers=SECURITY_HEADERS
        )

    @get("/runs/{run_id:str}/log.txt", sync_to_thread=True)
    def log_text(
        self, request: AnyRequest, ui_sessions: SessionManager, runs: RunService, run_id: str
    ) -> Response[str]:
        ui = session_of(request, ui_sessions)
        text = runs.logs(ui.principal, run_id)
        headers = SECURITY_HEADERS | {"Content-Disposition": f'inline; filename="{run_id}.log"'}
        return Response(text, media_type=MediaType.TEXT, headers=headers)

    @get("/{rest:path}", sync_to_thread=False)
    def unknown(self, rest: str) -> Response[str]:
        """Any other /ui address: a 404 page rather than the API's JSON problem."""
        raise NotFound(f"There is no page at /ui{rest[:200]}.")

    # --- actions (admins; CSRF-checked forms) ---------------------------------------------

    @post("/jobs/{job_id:str}/trigger", sync_to_thread=True)
    def trigger(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        jobs: JobService,
        runs: RunService,
        job_id: str,
        data: Annotated[ActionForm, FORM],
    ) -> Redirect:
        with writing(request, ui_sessions, data, "trigger") as ui:
            job = views.find_job(ui.principal, job_id, jobs)
            result = runs.trigger(ui.principal, job.project_id, job.id, None, None, None)
            return see_other(f"/ui/runs/{result.run.id}?done=triggered")

    @post("/jobs/{job_id:str}/toggle", sync_to_thread=True)
    def toggle(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        jobs: JobService,
        job_id: str,
        data: Annotated[ActionForm, FORM],
    ) -> Redirect:
        with writing(request, ui_sessions, data, "write") as ui:
            job = views.find_job(ui.principal, job_id, jobs)
            jobs.set_enabled(ui.principal, job.project_id, [job.id], not job.enabled)
            return see_other(f"/ui/jobs/{job.id}?done={'disabled' if job.enabled else 'enabled'}")

    @post("/jobs/{job_id:str}/deploy", sync_to_thread=True)
    def deploy(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        jobs: JobService,
        projects: ProjectService,
        job_id: str,
        data: Annotated[ActionForm, FORM],
    ) -> Redirect:
        with writing(request, ui_sessions, data, "deploy") as ui:
            job = views.find_job(ui.principal, job_id, jobs)
            projects.deploy(ui.principal, job.project_id)
            return see_other(f"/ui/jobs/{job.id}?done=deployed")

    @post("/runs/{run_id:str}/cancel", sync_to_thread=True)
    def cancel(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        runs: RunService,
        run_id: str,
        data: Annotated[ActionForm, FORM],
    ) -> Redirect:
        with writing(request, ui_sessions, data, "trigger") as ui:
            run = runs.cancel(ui.principal, run_id)
            return see_other(f"/ui/runs/{run.id}?done=cancelled")

    @post("/runs/{run_id:str}/rerun", sync_to_thread=True)
    def rerun(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        runs: RunService,
        run_id: str,
        data: Annotated[ActionForm, FORM],
    ) -> Redirect:
        with writing(request, ui_sessions, data, "trigger") as ui:
            run = runs.rerun(ui.principal, run_id)
            return see_other(f"/ui/runs/{run.id}?done=triggered")

    @post("/runs/{run_id:str}/retry", sync_to_thread=True)
    def retry(
        self,
        request: AnyRequest,
        ui_sessions: SessionManager,
        runs: RunService,
        run_id: str,
        data: Annotated[ActionForm, FORM],
    ) -> Redirect:
        with writing(request, ui_sessions, data, "trigger") as ui:
            run = runs.retry(ui.principal, run_id)
            return see_other(f"/ui/runs/{run.id}?done=triggered")


@get("/", include_in_schema=False, sync_to_thread=False, opt={OWN_CREDENTIAL: True})
def root() -> Redirect:
    """A browser opening runyard's address lands on the UI (the API lives under /api)."""
    return Redirect(path="/ui/", status_code=302)
