"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from anyio import to_thread
from litestar import Litestar, Router
from litestar.datastructures import ResponseHeader, State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from litestar.static_files import create_static_files_router

from app import __version__
from app.api.artifacts import ArtifactController
from app.api.audit import AuditController
from app.api.auth import AuthMiddleware, provide_principal, writers_only
from app.api.bodies import RunyardRequest
from app.api.environments import EnvironmentController
from app.api.health import health, ready
from app.api.jobs import JobController
from app.api.k8s import LiveJobController, job_manifest
from app.api.models import ModelHistoryController
from app.api.notifications import NotificationController
from app.api.observe import RequestContextMiddleware, metrics
from app.api.openapi import document_problems
from app.api.options import AllowHeaderMiddleware
from app.api.problems import EXCEPTION_HANDLERS
from app.api.projects import ProjectController
from app.api.read_cache import ReadCache
from app.api.run_waits import RunWaitController
from app.api.runs import RunController
from app.api.schemas import jobfile_schema
from app.container import Container
from app.settings import Settings
from app.web.pages import PageController, SignInController, root
from app.web.render import STATIC, static_headers
from app.web.sessions import SessionManager

_PROMETHEUS = PrometheusConfig(
    app_name="runyard",
    prefix="runyard_http",
    group_path=True,
    exclude_unhandled_paths=True,
    exclude=["/metrics", "/health"],
)

# The API reference at /schema: Redoc from runyard's own copy (app/web/static/vendor/,
# VENDORED.md there), without web fonts or a remote favicon, so it works offline and the page
# names no other host. The schema itself stays at /schema/openapi.json (and .yaml).
_SCHEMA_PAGES = (
    RedocRenderPlugin(
        path="/",
        js_url="/static/vendor/redoc.standalone.js",
        google_fonts=False,
        favicon="",
    ),
    JsonRenderPlugin(),
    YamlRenderPlugin(),
)
# What the reference may load: only runyard's own files. Redoc's init call is an inline
# script and its styles are injected <style> elements (hence 'unsafe-inline'); its search
# runs in a blob: worker. The bundle's menu footer shows a logo from Redocly's CDN: img-src
# blocks it in the browser, so the page makes no request to another host.
_SCHEMA_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _schema_router() -> Router:
    """The router Litestar puts the /schema pages on (one per app: registering mutates it)."""
    return Router(
        path="/schema",
        route_handlers=[],
        include_in_schema=False,
        response_headers=[ResponseHeader(name="Content-Security-Policy", value=_SCHEMA_CSP)],
    )


def _services(container: Container) -> dict[str, Provide]:
    """What handlers may ask for by parameter name: the services they use, never the
    container. (Authentication reads the token service from ``app.state.container``.)"""

    def value(thing: object) -> Provide:
        return Provide(lambda: thing, sync_to_thread=False, use_cache=True)

    return {
        "projects": value(container.projects),
        "jobs": value(container.jobs),
        "environments": value(container.environments),
        "runs": value(container.runs),
        "audit_log": value(container.audit),
        "notifications": value(container.notifications),
        "store": value(container.store),
        "settings": value(container.settings),
        "executor_name": value(container.executor.name),
        "kubernetes": value(container.kubernetes),
        # Built per request with the local executor: the kubernetes client loads on first use.
        "manifests": Provide(container.manifests, sync_to_thread=True),
    }


def _ui_sessions(container: Container) -> SessionManager:
    """Web UI sessions (app/web/sessions.py): cookies signed with a key of their own."""
    return SessionManager(
        container.store,
        container.tokens,
        container.store.database.box.derive(b"web ui session cookies"),
        timedelta(hours=container.settings.ui_session_hours),
        limiter=container.rate_limiter,
    )


def create_app(settings: Settings | None = None, container: Container | None = None) -> Litestar:
    """Build the app. Pass a container to share one with the caller (tests, the demo);
    otherwise one is built from ``settings`` (or the environment) and owned by the app."""
    settings = settings or (container.settings if container else Settings.from_env())
    owned = container is None
    container = container or Container(settings)
    # read_cache: bodies of hot reads served from the event loop (app/api/read_cache.py).
    ui_sessions = _ui_sessions(container)
    state = State(
        {
            "container": container,
            "read_cache": ReadCache(container.store.database),
            # The UI's error pages read the session outside dependency injection.
            "ui_sessions": ui_sessions,
        }
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Starting recovers interrupted runs and starts the scheduler: blocking work.
        the_container: Container = app.state.container
        document_problems(app)
        # Short indexed reads are served from this (the event loop's) thread through a
        # read-only connection; writes stay on worker threads (app/store/db.py).
        the_container.store.database.serve_reads_on_this_thread()
        if owned:
            await to_thread.run_sync(the_container.start)
        try:
            yield
        finally:
            if owned:
                await to_thread.run_sync(the_container.stop)

    return Litestar(
        route_handlers=[
            ProjectController,
            JobController,
            EnvironmentController,
            RunController,
            RunWaitController,
            ModelHistoryController,
            ArtifactController,
            LiveJobController,
            job_manifest,
            NotificationController,
            AuditController,
            health,
            ready,
            metrics,
            jobfile_schema,
            # The web UI (docs/ui.md): pages at /ui, its CSS and JavaScript at /static.
            SignInController,
            PageController,
            root,
            create_static_files_router(
                path="/static",
                directories=[STATIC],
                include_in_schema=False,
                after_request=static_headers,
            ),
        ],
        dependencies={
            "principal": Provide(provide_principal, sync_to_thread=False),
            **_services(container),
            "ui_sessions": Provide(lambda: ui_sessions, sync_to_thread=False, use_cache=True),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        # Outermost first: request ids and HTTP metrics also see 401s and 429s.
        middleware=[
            RequestContextMiddleware,
            _PROMETHEUS.middleware,
            AllowHeaderMiddleware,
            AuthMiddleware,
        ],
        guards=[writers_only],
        state=state,
        lifespan=[lifespan],
        # runyard configures logging itself (app/logs.py); Litestar's default would add a
        # second handler and log every request at INFO.
        logging_config=None,
        request_max_body_size=settings.max_body_bytes,
        request_class=RunyardRequest,
        openapi_config=OpenAPIConfig(
            title="runyard",
            version=__version__,
            description="Run dbt and SQLMesh projects on a schedule.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="A token from 'runyard tokens create'",
                    )
                }
            ),
            security=[{"bearer": []}],
            render_plugins=_SCHEMA_PAGES,
            openapi_router=_schema_router(),
        ),
    )
