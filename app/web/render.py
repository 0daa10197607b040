"""Jinja templates (autoescaped) and the headers every UI response carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import MediaType, Response

from app import __version__
from app.web import format as fmt

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Scripts, styles and images only from runyard itself: no inline script or style, no
# framing (clickjacking), forms post only back here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show an organization's data: never kept by a shared cache or the back button
    # after sign-out.
    "Cache-Control": "no-store",
}

_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
_ENV.filters.update(
    duration=fmt.duration,
    when=fmt.when,
    iso=fmt.iso,
    status_class=fmt.status_class,
    percent=fmt.percent,
    ordinal=fmt.ordinal,
    run_status=fmt.run_status,
    clip=fmt.clip,
)
_ENV.globals["version"] = __version__


def static_headers(response: Response[Any]) -> Response[Any]:
    """The CSS and JavaScript: never sniffed as another type, cached for a short while
    (their names carry no version)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def html(template: str, status: int = 200, **context: Any) -> Response[str]:
    body = _ENV.get_template(template).render(**context)
    return Response(
        body,
        status_code=status,
        media_type=MediaType.HTML,
        headers=SECURITY_HEADERS,
    )
