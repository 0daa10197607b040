"""Runs one command for the local executor and leaves its exit code in a file.

    python -I -S local_wrapper.py EXIT_FILE [--sandbox PLAN_JSON] -- ARGV...

The executor starts this script (standard library only, so it starts in milliseconds) as the
leader of a new process group, with stdout and stderr going to the run's spool file. The
script runs ARGV as an argument list (never through a shell), waits for it and writes its
exit code to EXIT_FILE. If runyard dies meanwhile, the command keeps running, and a
restarted runyard can re-attach: it follows the spool file and, once the process has gone,
reads the exit code from EXIT_FILE (only a parent can wait for a child's exit status).

Stop signals sent to the group reach the command directly; this script outlives them so it
can record how the command ended. SIGKILL ends both.

With ``--sandbox``, the command is confined between fork and exec (``local_sandbox.apply``:
Landlock, no_new_privs, capabilities or uid), and runs with umask 077. The wrapper itself
stays as it was started so it can write EXIT_FILE beside the spool, where the command
cannot reach. If the confinement cannot be applied, the command does not run (exit 126).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def _note(signum: int, frame: object) -> None:
    """A handler rather than SIG_IGN: ignored signals would be inherited by the command,
    handlers are reset to the default when it starts."""


def _write_exit_code(path: str, code: int) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{code}\n")
    Path(tmp).replace(path)  # atomic: a reader sees no file or the whole code


def _confine(plan_json: str) -> Callable[[], None]:
    """The child's preexec function: apply the plan or end the child (never run the
    command unconfined). Imported by path: ``-I`` keeps this folder off sys.path."""
    spec = importlib.util.spec_from_file_location(
        "local_sandbox", Path(__file__).resolve().with_name("sandbox.py")
    )
    assert spec is not None and spec.loader is not None
    local_sandbox = importlib.util.module_from_spec(spec)
    sys.modules["local_sandbox"] = local_sandbox  # dataclasses look their module up
    spec.loader.exec_module(local_sandbox)

    plan = local_sandbox.Plan.from_json(plan_json)
    local_sandbox.abi_version()  # loads libc now rather than in the forked child

    def preexec() -> None:
        try:
            applied = local_sandbox.apply(plan)
        except Exception as exc:  # whatever it is, the command must not run
            os.write(2, f"runyard: the run's sandbox could not be applied: {exc}\n".encode())
            os._exit(126)
        os.write(2, f"[runyard] sandbox: {', '.join(applied) or 'none'}\n".encode())

    return preexec


def main(args: list[str]) -> int:
    plan = None
    if len(args) >= 3 and args[1] == "--sandbox":
        plan, args = args[2], [args[0], *args[3:]]
    if len(args) < 3 or args[1] != "--":
        print("usage: local_wrapper.py EXIT_FILE [--sandbox PLAN] -- ARGV...", file=sys.stderr)
        return 2
    exit_file, command = args[0], args[2:]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _note)
    confine = _confine(plan) if plan is not None else None
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            preexec_fn=confine,  # the wrapper has one thread: fork is safe
            umask=0o077 if confine is not None else -1,
        )
    except FileNotFoundError:
        print(
            f"runyard: {command[0]!r} was not found on PATH ({os.environ.get('PATH', '')}); "
            "install it in runyard's environment",
            file=sys.stderr,
            flush=True,
        )
        code = 127
    except PermissionError:
        print(
            f"runyard: {command[0]!r} is not executable, or not reachable from the run's "
            "sandbox (only the interpreter's environment and system folders are)",
            file=sys.stderr,
            flush=True,
        )
        code = 126
    else:
        code = process.wait()
        if code < 0:  # killed by a signal: report it the way shells and Kubernetes do
            code = 128 - code
    _write_exit_code(exit_file, code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
