"""Process plumbing for the local executor: working directory, environment, spawning,
recognising a process again after a restart, and stopping a process group.

POSIX only (process groups, signals), like the rest of the local executor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from app.engines.environment import ENGINE_ENV
from app.errors import FieldError, Invalid
from app.executors.local.paths import ProjectPaths
from app.models import RunRecord
from validators.environment import permitted

WRAPPER = Path(__file__).with_name("wrapper.py")

# Variables copied from runyard's own environment. Nothing else is: runyard's settings and
# secrets (RUNYARD_SLACK_TOKEN, cloud credentials in the shell that started it...) must not
# reach a project's code. PATH is kept so tools installed beside dbt (git for `dbt deps`)
# resolve; it carries no secrets.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR")


def project_dir(run: RunRecord, paths: ProjectPaths, org_slug: str) -> Path:
    """The directory the run's command runs in, resolved again at launch (a symlink
    swapped in since the project was saved is caught here), or a 422 that says how to
    set it."""
    snapshot = run.snapshot
    environment = snapshot.environment
    if environment is not None and (environment.secret_env or environment.secret_env_from):
        # Kubernetes Secret references: a local process has no cluster to read them from,
        # and running without the credentials would fail later, less clearly.
        raise Invalid(
            f"Environment {environment.name!r} takes credentials from Kubernetes Secrets "
            "(secret_env, secret_env_from), which the local executor cannot read. Give them "
            "in the environment's secret_environment instead.",
            [FieldError("secret_env", "Kubernetes only")],
        )
    if not snapshot.path:
        folder = paths.org_folder(org_slug)
        raise Invalid(
            f"Project {snapshot.project_name!r} has no path. The local executor runs the "
            f"command in the project's directory, a folder in {str(folder)!r}: set it with "
            f'PUT /api/v1/projects/{run.project_id} with {{"path": "<folder name>"}}.',
            [FieldError("path", "required to run the project with the local executor")],
        )
    return paths.resolve(org_slug, snapshot.path)


def interpreter_bin_dirs() -> list[str]:
    """Where the running interpreter's scripts live (the venv's bin), so ``dbt`` and
    ``sqlmesh`` installed beside runyard are found. sys.executable is not resolved: in a
    venv it is a symlink, and its own directory is the venv's."""
    dirs = [str(Path(sys.executable).parent), str(Path(sys.prefix) / "bin")]
    return list(dict.fromkeys(dirs))


def build_env(
    run: RunRecord,
    cwd: Path,
    *,
    parent: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The child's environment, from scratch: a safe base, the project's variables, the
    job's (which win), then what runyard and the engines need. Secret variables (decrypted
    from the run's snapshot) join their plain counterparts; the run's log masks them."""
    parent = os.environ if parent is None else parent
    env = {name: parent[name] for name in _INHERITED if parent.get(name)}
    path = [*interpreter_bin_dirs(), *(parent.get("PATH") or os.defpath).split(os.pathsep)]
    env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in path if p))
    env.setdefault("HOME", str(Path.home()))
    env.update({"LANG": "C.UTF-8", "TZ": "UTC"})
    snapshot = run.snapshot
    # The project's, its environment's (docs/environments.md), then the job's.
    environment = snapshot.environment
    for variables in (
        snapshot.project_environment,
        snapshot.project_secret_environment,
        environment.environment if environment else {},
        environment.secret_environment if environment else {},
        snapshot.job.environment,
        snapshot.job.secret_environment,
    ):
        env.update(permitted(variables))  # a record older than a rule keeps no refused name
    env.update(ENGINE_ENV)
    env["DBT_PROFILES_DIR"] = str(cwd)
    env.update(extra or {})
    return env


def spawn(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    spool: Path,
    exit_file: Path,
    sandbox: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` under the wrapper, as the leader of a new session and process group,
    with stdout and stderr appended to ``spool`` (created 0600). ``sandbox``: the JSON
    plan (``local_sandbox.Plan``) the wrapper confines the command with."""
    with contextlib.suppress(FileNotFoundError):
        exit_file.unlink()
    fd = os.open(spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "ab") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask, and for a file left before
        wrapper = [sys.executable, "-I", "-S", str(WRAPPER), str(exit_file)]
        if sandbox is not None:
            wrapper += ["--sandbox", sandbox]
        return subprocess.Popen(
            [*wrapper, "--", *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


# --- recognising a process after a restart ------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT_ID = _boot_id()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) from /proc, or None without /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ("gone", "")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], fields[19]


def identity(pid: int) -> str | None:
    """A string that differs for two processes that had the same pid: boot id and start
    time. None when the process does not exist (or is a zombie)."""
    if Path("/proc").is_dir():
        stat = _proc_stat(pid)
        if stat is not None:
            state, start = stat
            return None if state in ("gone", "Z", "X") else f"{_BOOT_ID}:{start}"
    try:  # macOS and other systems without /proc
        out = subprocess.run(
            ["ps", "-o", "stat=,lstart=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out or out.startswith("Z"):
        return None
    return "ps:" + out.split(None, 1)[-1]


def is_same_process(pid: int, expected: str) -> bool:
    return identity(pid) == expected


def reap(pid: int) -> None:
    """Collect the exit status of a child of this process that another owner left behind
    (tests restart runyard inside one process); a no-op for other processes."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def signal_group(pid: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to the process group led by ``pid``; False when it is gone."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the group is not ours (pid reused)
        return False
    return True


def read_exit_code(exit_file: Path) -> int | None:
    try:
        return int(exit_file.read_text().strip())
    except (OSError, ValueError):
        return None
