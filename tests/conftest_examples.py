"""Helpers to run the example projects (examples/dbt_demo, examples/sqlmesh_demo) with the
real dbt and SQLMesh, offline, as subprocesses. Plain functions, not fixtures: import what
you need (``from tests.conftest_examples import copy_example, engine_env, ...``).

Moving SQLMesh's clock: ``sqlmesh run`` has no execution-time option and runs only the
intervals whose cron has elapsed, so a run on the day of the plan has nothing to do.
``sqlmesh_at(when, "run")`` is an argv that runs SQLMesh's own CLI in a Python process
whose clock time-machine has moved to ``when`` (ticking from there). The in-process
alternative is ``sqlmesh.Context(paths=...).run(execution_time=...)``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DBT_DEMO = EXAMPLES / "dbt_demo"
SQLMESH_DEMO = EXAMPLES / "sqlmesh_demo"

# What the engines write into a project directory; never copied along with a project.
GENERATED = (
    "target",
    "logs",
    "dbt_packages",
    ".cache",
    "__pycache__",
    ".sqlmesh",
    "*.duckdb",
    "*.duckdb.wal",
    "*.db",
    "*.db.wal",
    ".user.yml",
)

OFFLINE_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
    "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS": "1",
}

# A Python program that runs SQLMesh's CLI with the clock moved:
#   python -c TIME_TRAVEL_CODE <ISO time> <sqlmesh arguments...>
TIME_TRAVEL_CODE = (
    "import sys, time_machine\n"
    "time_machine.travel(sys.argv[1], tick=True).start()\n"
    "from sqlmesh.cli.main import cli\n"
    "sys.argv = ['sqlmesh', *sys.argv[2:]]\n"
    "cli()\n"
)


def copy_example(name: str, dest: Path) -> Path:
    """Copy ``examples/<name>`` to ``dest`` (created; must not exist) without generated
    files, and return ``dest``."""
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns(*GENERATED))
    return dest


def tool(name: str) -> str:
    """The ``dbt`` or ``sqlmesh`` executable beside the running interpreter (the venv's),
    else the one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed in this environment")
    return found


def engine_env(project_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment built from scratch for dbt or SQLMesh in ``project_dir``: offline,
    no colours, dbt's profiles from the project directory, SQLMesh's user file in the
    project's ``.sqlmesh`` (it writes one even with analytics off, under $HOME otherwise).
    Nothing else of the caller's environment leaks in (a DBT_* or RUNYARD_DEMO_FAIL set
    in the shell would change what the tools do)."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "TMPDIR") if name in os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        {
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONIOENCODING": "utf-8",
            "DBT_PROFILES_DIR": str(project_dir),
            "DBT_USE_COLORS": "false",
            "NO_COLOR": "1",
            "SQLMESH_HOME": str(project_dir / ".sqlmesh"),
        }
    )
    env.update(OFFLINE_ENV)
    env.update(extra or {})
    return env


def run_tool(
    argv: Sequence[str],
    cwd: Path,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (an argument list, no shell) in ``cwd`` with ``engine_env``; stdout and
    stderr together in ``.stdout``."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=engine_env(cwd, extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def sqlmesh_at(when: str, *args: str) -> list[str]:
    """argv running ``sqlmesh <args>`` with the clock at ``when`` (ISO 8601, e.g.
    ``2024-03-11T01:00:00Z``)."""
    return [sys.executable, "-c", TIME_TRAVEL_CODE, when, *args]
