"""The ``runyard`` command: serve, tokens, orgs, reconcile, demo, apply, and the client commands
(projects, environments, jobs, runs, audit) that talk to a runyard server over its API.

Exit codes (app/exit_codes.py): 0 success, 1 a run failed (client commands), 2 usage error,
3 the server refused or could not be reached (or a local operation failed), 130 interrupted.
Shell completion: ``eval "$(_RUNYARD_COMPLETE=bash_source runyard)"`` (zsh_source, fish_source).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from app.cli.apply import apply
from app.cli.audit import audit
from app.cli.common import CliError
from app.cli.environments import environments
from app.cli.http import ApiError
from app.cli.local import demo, reconcile, serve, tokens
from app.cli.orgs import orgs
from app.cli.resources import jobs, projects
from app.cli.runs import runs
from app.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="runyard", prog_name="runyard")
def cli() -> None:
    """Run dbt and SQLMesh projects on a schedule.

    Client commands (projects, jobs, runs, apply) talk to RUNYARD_URL with RUNYARD_TOKEN
    (or --url and --token); serve, tokens and reconcile work on RUNYARD_DATABASE.
    """


for command in (
    serve,
    tokens,
    orgs,
    projects,
    environments,
    jobs,
    runs,
    apply,
    audit,
    reconcile,
    demo,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="runyard",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:  # --help, --version
        return int(exc.exit_code)
    except click.ClickException as exc:  # usage errors: bad or missing arguments
        exc.show()
        return EXIT_USAGE
    except click.Abort:
        click.echo("runyard: interrupted", err=True)
        return EXIT_INTERRUPTED
    except CliError as exc:
        click.echo(f"runyard: {exc}", err=True)
        return exc.code
    except ApiError as exc:
        first, *rest = exc.lines()
        click.echo(f"runyard: {first}", err=True)
        for line in rest:
            click.echo(line, err=True)
        return EXIT_REFUSED
    if result is None:  # a group without a command prints its help
        return EXIT_OK
    return int(result)


__all__ = ["cli", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
