"""The commands that work on this machine, not through the API: serve, tokens, reconcile,
demo."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli.common import CliError
from app.cli.output import Output
from app.exit_codes import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from app.settings import Settings, SettingsError

if TYPE_CHECKING:
    from app.services.tokens import TokenService
    from app.store import Store


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


@click.command()
@click.option("--host", help="listen address (RUNYARD_HOST, default 127.0.0.1)")
@click.option("--port", type=int, help="port (RUNYARD_PORT, default 8080)")
def serve(host: str | None, port: int | None) -> int:
    """Run the HTTP service."""
    import uvicorn

    from app.container import ServerLockHeld, hold_server_lock
    from app.logs import configure_logging
    from app.main import create_app

    settings = _settings()
    # First, before anything writes (migrations, re-attaching to runs, the scheduler): a
    # second server on this database would take the first one's runs for its own.
    try:
        lock = hold_server_lock(settings.database)
    except ServerLockHeld as exc:
        raise CliError(str(exc), EXIT_REFUSED) from None
    configure_logging(settings)
    try:
        app = create_app(settings)
    except SettingsError as exc:  # a secret key that cannot read the database, say
        raise CliError(str(exc), EXIT_USAGE) from None
    app.state.server_lock = lock  # held (open) for the life of the process
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return EXIT_OK


# --- tokens -------------------------------------------------------------------------------


def _token_service(*, create: bool) -> TokenService:
    """The token service on the database RUNYARD_DATABASE names. Only ``tokens create`` may
    make a new database: a read or a revoke on a missing one is a mistaken path, and quietly
    creating an empty file there would hide it."""
    from app.services.tokens import TokenService

    return TokenService(open_store(_settings(), create=create))


def open_store(settings: Settings, *, create: bool = False) -> Store:
    """The migrated store on the database RUNYARD_DATABASE names, for commands that work on
    the server's database directly (tokens, orgs). It must exist unless ``create``."""
    from app.store import Store

    path = Path(settings.database).resolve()
    source = "RUNYARD_DATABASE" if _database_from_env() else "the default; RUNYARD_DATABASE unset"
    if not create and not path.exists():
        raise CliError(
            f"no runyard database at {path} ({source}). Set RUNYARD_DATABASE to the "
            "database the server uses (runyard serve reads the same variable).",
            EXIT_USAGE,
        )
    click.echo(f"database: {path} ({source})", err=True)
    store = Store(settings.database, settings.secret_key)
    store.migrate()
    return store


def _database_from_env() -> bool:
    import os

    return bool(os.environ.get("RUNYARD_DATABASE"))


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (on this machine's database)."""


@tokens.command("create")
@click.option("--org", required=True, help="organization slug (created if new)")
@click.option("--role", required=True, type=click.Choice(["admin", "viewer"]))
@click.option("--name", default="", help="a name to recognise the token by (shown in the audit)")
@click.option("--project", help="scope it to this project (name or id): no other is visible")
@click.option(
    "--actions",
    help="only these actions, comma-separated: read, trigger, write, deploy, audit "
    "(read is always included); default: all the role allows",
)
@click.option("--expires-in", help="lifetime, e.g. 90d, 12h or 2w; default: no expiry")
def tokens_create(
    org: str,
    role: str,
    name: str,
    project: str | None,
    actions: str | None,
    expires_in: str | None,
) -> int:
    """Create a token (printed once, alone on the last line of standard output)."""
    from app.errors import RunyardError
    from app.services.audit import Actor, acting_as

    service = _token_service(create=True)
    try:
        with acting_as(Actor.cli()):  # the audit trail names the local operator "cli"
            token, info = service.create(
                org, role, name, project=project, actions=actions, expires_in=expires_in
            )
    except RunyardError as exc:
        raise CliError(exc.detail, EXIT_USAGE) from None
    scope = _scope(info.scope_project_name, info.scope_actions)
    expiry = f", expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else ""
    click.echo(
        f"Created {info.role} token {info.id} for org {info.org_slug} ({scope}{expiry}). "
        "It is shown once; store it now.",
        err=True,
    )
    click.echo(token)
    return EXIT_OK


def _scope(project: str | None, actions: list[str] | None) -> str:
    where = f"project {project}" if project else "all projects"
    what = ",".join(actions) if actions is not None else "all actions"
    return f"{where}; {what}"


@tokens.command("list")
@click.option("--org", help="only this organization")
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
def tokens_list(org: str | None, as_json: bool) -> int:
    """List tokens (never their values), with when each was last used."""
    import msgspec

    service = _token_service(create=False)
    found = service.list_tokens(org)
    out = Output(as_json)
    if as_json:
        out.document({"tokens": msgspec.to_builtins(found)})
        return EXIT_OK

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    out.table(
        ["ID", "ORG", "ROLE", "NAME", "SCOPE", "PREFIX", "EXPIRES", "LAST USED", "REVOKED"],
        [
            [
                t.id,
                t.org_slug,
                t.role,
                t.name,
                _scope(t.scope_project_name, t.scope_actions),
                t.prefix + "…",
                when(t.expires_at),
                when(t.last_used_at),
                when(t.revoked_at),
            ]
            for t in found
        ],
    )
    return EXIT_OK


@tokens.command("revoke")
@click.argument("token_id")
def tokens_revoke(token_id: str) -> int:
    """Revoke a token by id or prefix."""
    from app.errors import RunyardError
    from app.services.audit import Actor, acting_as

    service = _token_service(create=False)
    try:
        with acting_as(Actor.cli()):
            service.revoke(token_id)
    except RunyardError as exc:
        raise CliError(exc.detail, EXIT_REFUSED) from None
    click.echo(f"Revoked {token_id}. A running server stops accepting it within seconds.")
    return EXIT_OK


# --- reconcile and demo -------------------------------------------------------------------


@click.command()
def reconcile() -> int:
    """Bring the cluster's CronJobs back to the database once (Kubernetes executor)."""
    from app.container import Container
    from app.errors import RunyardError

    logging.basicConfig(level=logging.WARNING)
    container = Container(_settings())
    if container.kubernetes is None:
        container.store.close()  # the local executor was never started: nothing to stop
        raise CliError(
            "reconcile applies to the Kubernetes executor; this runyard runs jobs "
            "as local processes (set RUNYARD_EXECUTOR=kubernetes, or KUBECONFIG).",
            EXIT_USAGE,
        )
    try:
        try:
            report = container.kubernetes.reconcile()
        except RunyardError as exc:
            raise CliError(exc.detail, EXIT_REFUSED) from None
        click.echo(
            f"CronJobs: {report.created} created, {report.updated} updated, "
            f"{report.deleted} deleted, {report.unchanged} unchanged, {report.failed} failed"
        )
        for error in report.errors:
            click.echo(f"  {error}", err=True)
        return EXIT_REFUSED if report.failed else EXIT_OK
    finally:
        container.stop()


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("demo_args", nargs=-1, type=click.UNPROCESSED)
def demo(demo_args: tuple[str, ...]) -> int:
    """Run the example dbt and SQLMesh projects end to end (see runyard demo --help)."""
    from app.demo import main as demo_main

    result: int = demo_main(list(demo_args))
    return result
