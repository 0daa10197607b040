"""The ``runyard`` command: serve, tokens, reconcile, demo, and the client commands.

Exit codes: 0 success, 1 a run failed (client commands), 2 usage error, 3 the server
refused or could not be reached (or a local operation failed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from app.cli_client import add_client_commands, run_client_command
from app.exit_codes import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from app.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"runyard: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.container import ServerLockHeld, hold_server_lock
    from app.logs import configure_logging
    from app.main import create_app

    settings = _settings()
    host = args.host or settings.host
    port = args.port or settings.port
    # First, before anything writes (migrations, re-attaching to runs, the scheduler): a
    # second server on this database would take the first one's runs for its own.
    try:
        lock = hold_server_lock(settings.database)
    except ServerLockHeld as exc:
        print(f"runyard: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    configure_logging(settings)
    try:
        app = create_app(settings)
    except SettingsError as exc:  # a secret key that cannot read the database, say
        print(f"runyard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    app.state.server_lock = lock  # held (open) for the life of the process
    uvicorn.run(
        app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=30
    )
    return EXIT_OK


def _token_store() -> tuple[object, object]:
    from app.services.tokens import TokenService
    from app.store import Store

    settings = _settings()
    store = Store(settings.database, settings.secret_key)
    store.migrate()
    return store, TokenService(store)


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from app.errors import RunyardError
    from app.services.tokens import TokenService

    _, service = _token_store()
    assert isinstance(service, TokenService)
    try:
        token, info = service.create(args.org, args.role, args.name or "")
    except RunyardError as exc:
        print(f"runyard: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"Created {info.role} token {info.id} for org {info.org_slug}. It is shown once; "
        "store it now.",
        file=sys.stderr,
    )
    print(token)
    return EXIT_OK


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from app.services.tokens import TokenService

    _, service = _token_store()
    assert isinstance(service, TokenService)
    rows = [("ID", "ORG", "ROLE", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED")]
    for t in service.list_tokens(args.org):
        rows.append(
            (
                t.id,
                t.org_slug,
                t.role,
                t.name,
                t.prefix + "…",
                t.created_at.strftime("%Y-%m-%d %H:%M"),
                t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "-",
                t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "-",
            )
        )
    print_table(rows)
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from app.errors import RunyardError
    from app.services.tokens import TokenService

    _, service = _token_store()
    assert isinstance(service, TokenService)
    try:
        service.revoke(args.token_id)
    except RunyardError as exc:
        print(f"runyard: {exc.detail}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"Revoked {args.token_id}. A running server stops accepting it within seconds.")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    """One pass of the Kubernetes executor's drift repair, then a summary."""
    from app.container import Container
    from app.errors import RunyardError

    container = Container(_settings())
    if container.kubernetes is None:
        container.store.close()  # the local executor was never started: nothing to stop
        print(
            "runyard: reconcile applies to the Kubernetes executor; this runyard runs jobs "
            "as local processes (set RUNYARD_EXECUTOR=kubernetes, or KUBECONFIG).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        try:
            report = container.kubernetes.reconcile()
        except RunyardError as exc:
            print(f"runyard: {exc.detail}", file=sys.stderr)
            return EXIT_REFUSED
        print(
            f"CronJobs: {report.created} created, {report.updated} updated, "
            f"{report.deleted} deleted, {report.unchanged} unchanged, {report.failed} failed"
        )
        for error in report.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_REFUSED if report.failed else EXIT_OK
    finally:
        container.stop()


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import main as demo_main

    result: int = demo_main(args.demo_args)
    return result


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runyard", description="Run dbt and SQLMesh projects on a schedule."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (RUNYARD_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (RUNYARD_PORT, default 8080)")
    serve.set_defaults(func=cmd_serve)

    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION")
    create = tsub.add_parser("create", help="create a token (printed once, on the last line)")
    create.add_argument("--org", required=True, help="organization slug (created if new)")
    create.add_argument("--role", required=True, choices=["admin", "viewer"])
    create.add_argument("--name", help="a note to recognise the token by")
    create.set_defaults(func=cmd_tokens_create)
    listing = tsub.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("--org", help="only this organization")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id or prefix")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_tokens_revoke)

    add_client_commands(sub)

    reconcile = sub.add_parser(
        "reconcile", help="bring the cluster's CronJobs back to the database once (kubernetes)"
    )
    reconcile.set_defaults(func=cmd_reconcile)

    demo = sub.add_parser("demo", help="run the example dbt and SQLMesh projects end to end")
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "client_func", None):
        return run_client_command(args)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
