"""``runyard orgs``: organizations and their cap on concurrently running runs, on this
machine's database (like ``runyard tokens``; a running server reads the cap at each run
it starts, so a change applies at once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from app.cli.common import CliError
from app.cli.local import _settings, open_store
from app.cli.output import Output
from app.exit_codes import EXIT_OK, EXIT_REFUSED, EXIT_USAGE

if TYPE_CHECKING:
    from app.models import Organization
    from app.store import Store

MAX_CAP = 10_000


def _store() -> tuple[Store, int]:
    """The store on RUNYARD_DATABASE (which must exist) and the server's default cap."""
    settings = _settings()
    return open_store(settings), settings.local_max_runs_per_org


def _document(org: Organization, default: int) -> dict[str, Any]:
    return {
        "slug": org.slug,
        "id": org.id,
        "created_at": org.created_at.isoformat(),
        "max_concurrent_runs": org.max_concurrent_runs,
        # What applies: the org's own value, else RUNYARD_LOCAL_MAX_RUNS_PER_ORG (the local
        # executor's default; on Kubernetes an org without its own value has no cap).
        "effective_max_concurrent_runs": org.max_concurrent_runs or default,
    }


def _show(found: list[Organization], default: int, as_json: bool) -> None:
    out = Output(as_json)
    docs = [_document(org, default) for org in found]
    if as_json:
        out.document({"orgs": docs})
        return
    out.table(
        ["ORG", "ID", "MAX CONCURRENT RUNS", "CREATED"],
        [
            [
                d["slug"],
                d["id"],
                str(d["max_concurrent_runs"])
                if d["max_concurrent_runs"] is not None
                else f"{default} (default, local executor)",
                d["created_at"][:16].replace("T", " "),
            ]
            for d in docs
        ],
    )


@click.group()
def orgs() -> None:
    """Organizations and their cap on concurrently running runs (on this machine's
    database)."""


@orgs.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
def orgs_list(as_json: bool) -> int:
    """List organizations with their max_concurrent_runs."""
    store, default = _store()
    try:
        _show(store.orgs.all(), default, as_json)
    finally:
        store.close()
    return EXIT_OK


@orgs.command("get")
@click.argument("org")
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
def orgs_get(org: str, as_json: bool) -> int:
    """Show one organization."""
    store, default = _store()
    try:
        found = store.orgs.by_slug(org)
        if found is None:
            raise CliError(f"no organization {org!r} (runyard orgs list shows them)", EXIT_REFUSED)
        if as_json:
            Output(True).document(_document(found, default))
        else:
            _show([found], default, False)
    finally:
        store.close()
    return EXIT_OK


@orgs.command("set")
@click.argument("org")
@click.option(
    "--max-concurrent-runs",
    type=int,
    help="runs of the org running at once; more wait in the queue (docs/queues.md)",
)
@click.option(
    "--default",
    "use_default",
    is_flag=True,
    help="clear the org's own value: RUNYARD_LOCAL_MAX_RUNS_PER_ORG applies",
)
def orgs_set(org: str, max_concurrent_runs: int | None, use_default: bool) -> int:
    """Set an organization's max_concurrent_runs (the server applies it to the next run it
    starts or dequeues)."""
    if (max_concurrent_runs is None) == (not use_default):
        raise CliError("give --max-concurrent-runs N or --default (one of the two)", EXIT_USAGE)
    if max_concurrent_runs is not None and not 1 <= max_concurrent_runs <= MAX_CAP:
        raise CliError(
            f"--max-concurrent-runs: use 1 to {MAX_CAP}; got {max_concurrent_runs}", EXIT_USAGE
        )
    store, default = _store()
    try:
        if not store.orgs.set_max_concurrent_runs(org, max_concurrent_runs):
            raise CliError(
                f"no organization {org!r}: an organization is made by its first token "
                "(runyard tokens create --org ...)",
                EXIT_REFUSED,
            )
        shown = (
            max_concurrent_runs
            if max_concurrent_runs is not None
            else f"{default} (default, local executor)"
        )
        click.echo(f"Organization {org}: max_concurrent_runs {shown}.")
    finally:
        store.close()
    return EXIT_OK
