"""``runyard demo``: the example dbt and SQLMesh projects, run end to end on this machine.

It copies ``examples/dbt_demo`` and ``examples/sqlmesh_demo`` into the folder of its org
under the projects root (``./runyard-demo/projects/demo/``, the projects root being
``projects/`` beside the database), starts runyard on its embedded defaults (local
executor, SQLite database ``./runyard-demo/runyard.db``, a free port on 127.0.0.1), creates
an org and an admin token, creates the projects (paths relative to the org's folder) and
their jobs through the HTTP API, and triggers four runs,
one after the other: a dbt build that succeeds, a dbt run of a deliberately broken model
(it must fail, naming the model), a SQLMesh plan and a SQLMesh run. It prints what each
did and how to read the logs, leaves the database for inspection, and exits 0 when every
run behaved as expected. Offline: dbt and SQLMesh work on local DuckDB files.

Running it again starts from scratch: the demo directory (recognised by a marker file) is
replaced. A directory of the same name that the demo did not create is left alone.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import msgspec

from app.engines.results import failed_nodes, first_error_line
from app.executors.local.process import interpreter_bin_dirs
from app.models import TERMINAL_STATUSES, NodeSummary
from app.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ORG = "demo"
MARKER = ".runyard-demo"
# What the engines write into a project directory; never copied from the examples.
GENERATED = ("target", "logs", "dbt_packages", ".sqlmesh", ".cache", "__pycache__", "*.duckdb*")
RUN_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Step:
    project: str
    job: str
    command: str
    expect: str  # the status this run should end with


STEPS = (
    Step("dbt-demo", "build", "dbt build --exclude tag:broken", "success"),
    Step("dbt-demo", "broken", "dbt run --select tag:broken", "failed"),
    Step("sqlmesh-demo", "plan", "sqlmesh plan --auto-apply --no-prompts", "success"),
    Step("sqlmesh-demo", "run", "sqlmesh run", "success"),
)
PROJECTS = {"dbt-demo": ("dbt", "dbt_demo"), "sqlmesh-demo": ("sqlmesh", "sqlmesh_demo")}


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runyard demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", default="runyard-demo", help="where to put the demo (default: ./runyard-demo)"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep serving the API after the runs, until Ctrl-C, to explore it",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_demo(Path(args.dir), serve=args.serve)
    except DemoError as exc:
        print(f"runyard demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrunyard demo: interrupted; the runs were stopped.", file=sys.stderr)
        return 130


def run_demo(directory: Path, *, serve: bool = False, out: TextIO = sys.stdout) -> int:
    """Run the demo in ``directory``; 0 when every run ended as expected."""
    _check_engines()
    base = _prepare(directory)
    database = base / "runyard.db"
    # The projects root is the default one, projects/ beside the database.
    settings = Settings(database=str(database), executor="local")
    show = _Printer(out, base)
    show.line(f"runyard demo in {show.rel(base)} (database {show.rel(database)})")

    from app.container import Container  # the service itself: imported when needed

    container = Container(settings)
    token, _ = container.tokens.create(ORG, "admin")
    container.start()
    try:
        with (
            _serving(container) as url,
            httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as api,
        ):
            show.line(f"  server    {url} (local executor, org 'demo', an admin token)")
            jobs = _create(api, base, show)
            runs = [_run_step(api, step, jobs, index, show) for index, step in enumerate(STEPS)]
            ok = _report(runs, show, token)
            if serve:
                show.line(f"\nServing {url} until Ctrl-C; try:")
                show.line(f'  curl -H "Authorization: Bearer {token}" {url}/api/v1/runs')
                _wait_forever()
    finally:
        container.stop()
    return 0 if ok else 1


# --- setting up -------------------------------------------------------------------------


def _check_engines() -> None:
    missing = [
        name
        for name in ("dbt", "sqlmesh")
        if not any((Path(d) / name).exists() for d in interpreter_bin_dirs())
        and shutil.which(name) is None
    ]
    if missing:
        raise DemoError(
            f"{' and '.join(missing)} not installed beside runyard. Install the engines with "
            "`pip install -e '.[engines]'` (dbt-core 1.11 with dbt-duckdb, and sqlmesh[duckdb])."
        )
    if not (EXAMPLES / "dbt_demo").is_dir() or not (EXAMPLES / "sqlmesh_demo").is_dir():
        raise DemoError(
            f"the example projects are not in {EXAMPLES}; run the demo from a clone of "
            "the runyard repository."
        )


def _prepare(directory: Path) -> Path:
    """A fresh demo directory with copies of the example projects."""
    base = directory.expanduser().resolve()
    if base.exists():
        if not (base / MARKER).exists() and any(base.iterdir()):
            raise DemoError(
                f"{base} exists and was not made by the demo; remove it or pass --dir "
                "with another directory."
            )
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / MARKER).write_text("Made by `runyard demo`; it replaces this directory.\n")
    org_folder = _org_folder(base)
    for folder in (org_folder.parent, org_folder):  # private, as runyard makes them
        folder.mkdir(mode=0o700, exist_ok=True)
    for kind_dir in ("dbt_demo", "sqlmesh_demo"):
        shutil.copytree(
            EXAMPLES / kind_dir, org_folder / kind_dir, ignore=shutil.ignore_patterns(*GENERATED)
        )
    return base


def _org_folder(base: Path) -> Path:
    """Where the demo org's projects live: ``<projects root>/<org>/``."""
    return Settings(database=str(base / "runyard.db")).projects_root_path / ORG


@contextmanager
def _serving(container: Any) -> Iterator[str]:
    """runyard's app under uvicorn on a free port, in a background thread."""
    import uvicorn

    from app.main import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(container=container)
    # The app configures logging at INFO (access logs, run events): the demo prints its own
    # account of what happens, so only warnings and errors go to the terminal.
    for name in ("runyard", "httpx", "litestar"):
        logging.getLogger(name).setLevel(logging.WARNING)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="runyard-demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DemoError("the HTTP server did not start; see the messages above")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _create(api: httpx.Client, base: Path, show: _Printer) -> dict[str, tuple[str, str]]:
    """Projects and jobs through the API; (project id, job id) per 'project/job'."""
    project_ids = {}
    for name, (kind, folder) in PROJECTS.items():
        body = {
            "name": name,
            "kind": kind,
            "path": folder,  # relative to the org's folder under the projects root
            "description": f"the example {kind} project of runyard demo",
        }
        project = _ok(api.post("/api/v1/projects", json=body), 201)
        project_ids[name] = project["id"]
        where = show.rel(_org_folder(base) / folder)
        show.line(f"  project   {name} ({kind}, {where}): {project['id']}")
    jobs = {}
    for step in STEPS:
        job_body: dict[str, Any] = {"name": step.job, "command": step.command, "schedule": None}
        url = f"/api/v1/projects/{project_ids[step.project]}/jobs"
        job = _ok(api.post(url, json=job_body), 201)
        jobs[f"{step.project}/{step.job}"] = (project_ids[step.project], job["id"])
    return jobs


# --- running ----------------------------------------------------------------------------


def _run_step(
    api: httpx.Client,
    step: Step,
    jobs: dict[str, tuple[str, str]],
    index: int,
    show: _Printer,
) -> tuple[Step, dict[str, Any]]:
    project_id, job_id = jobs[f"{step.project}/{step.job}"]
    label = f"[{index + 1}/{len(STEPS)}] {step.project}/{step.job}"
    show.line(f"\n{label}: {step.command}", end="", flush=True)
    triggered = _ok(api.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={}), 201)
    run_id = triggered["job_run_id"]
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        run = _ok(api.get(f"/api/v1/runs/{run_id}"), 200)
        if run["status"] in TERMINAL_STATUSES:
            break
        if time.monotonic() > deadline:
            api.post(f"/api/v1/runs/{run_id}/cancel")
            run = _ok(api.get(f"/api/v1/runs/{run_id}"), 200)
            break
        time.sleep(0.25)
    expected = " (expected)" if run["status"] == step.expect != "success" else ""
    show.line(f"\n    {run['status']} in {_seconds(run)}{expected}   run {run_id}")
    for node in _failed_nodes(run):
        reason = first_error_line(node.message) or "no message"
        show.line(f"    failed {node.resource_type} {node.name}: {reason}")
    if run["status"] != step.expect and run.get("error"):
        show.line(f"    error: {run['error']}")
    return step, run


def _report(runs: list[tuple[Step, dict[str, Any]]], show: _Printer, token: str) -> bool:
    show.line("\nRuns")
    width = max(len(f"{s.project}/{s.job}") for s, _ in runs)
    problems = []
    for step, run in runs:
        name = f"{step.project}/{step.job}".ljust(width)
        show.line(f"  {run['id']}  {name}  {run['status']:<9} {_seconds(run):>8}")
        if run["status"] != step.expect:
            problems.append(f"{step.project}/{step.job} ended {run['status']}, not {step.expect}")
        elif step.expect == "failed" and not _failed_nodes(run):
            problems.append(f"{step.project}/{step.job} failed without naming the failed model")
    database = shlex.quote(show.rel(show.base / "runyard.db"))
    runyard = runyard_command()
    broken = next(run for step, run in runs if step.expect == "failed")
    show.line(f"\nThe database is kept for you to look at: {database}. To read a run's logs,")
    show.line("serve it (port 8080, or RUNYARD_PORT):")
    show.line(f"  RUNYARD_DATABASE={database} RUNYARD_EXECUTOR=local {runyard} serve")
    show.line("and in another terminal, in this directory (RUNYARD_URL if not on 8080):")
    show.line(f"  RUNYARD_TOKEN={token} {runyard} runs logs {broken['id']}")
    show.line(
        "or open http://127.0.0.1:8080/ui/ in a browser, sign in with that token and follow"
        " the failing job to its run."
    )
    if problems:
        show.line("\nSomething did not behave as expected:")
        for problem in problems:
            show.line(f"  - {problem}")
        return False
    show.line(
        "\nEverything behaved as expected: the build, the plan and the run succeeded, and the "
        "broken model failed with its error recorded on the run."
    )
    return True


# --- helpers ----------------------------------------------------------------------------


def runyard_command() -> str:
    """The ``runyard`` command as the user can type it here: the way this process was
    started (``.venv/bin/runyard`` when that is how, ``runyard`` when that is on PATH), or
    ``python -m app.cli`` with this interpreter."""
    script = Path(sys.argv[0])
    if script.name == "runyard" and script.is_file():
        found = shutil.which("runyard")
        if found and Path(found).resolve() == script.resolve():
            return "runyard"
        return shlex.quote(_typed_path(script))
    return f"{shlex.quote(_typed_path(Path(sys.executable)))} -m app.cli"


def _typed_path(path: Path) -> str:
    """A path a shell runs as a command: relative below the current directory (with a
    slash, so PATH is not searched), else absolute."""
    try:
        relative = path.absolute().relative_to(Path.cwd())
    except ValueError:
        return str(path.absolute())
    return str(relative) if len(relative.parts) > 1 else f"./{relative}"


class _Printer:
    def __init__(self, out: TextIO, base: Path) -> None:
        self._out = out
        self.base = base

    def line(self, text: str, end: str = "\n", flush: bool = False) -> None:
        print(text, end=end, file=self._out, flush=flush)

    @staticmethod
    def rel(path: Path) -> str:
        """``path`` relative to the current directory when it is below it."""
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)


def _ok(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise DemoError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response.json()


def _failed_nodes(run: dict[str, Any]) -> list[NodeSummary]:
    return failed_nodes(msgspec.convert(run.get("results") or [], list[NodeSummary]))


def _seconds(run: dict[str, Any]) -> str:
    value = run.get("duration_seconds")
    return f"{value:.1f} s" if isinstance(value, int | float) else "-"


def _wait_forever() -> None:
    while True:
        time.sleep(3600)
