"""Runs one command for the local executor and leaves its exit code in a file.

    python -I -S local_wrapper.py EXIT_FILE -- ARGV...

The executor starts this script (standard library only, so it starts in milliseconds) as the
leader of a new process group, with stdout and stderr going to the run's spool file. The
script runs ARGV as an argument list (never through a shell), waits for it and writes its
exit code to EXIT_FILE. If runyard dies meanwhile, the command keeps running, and a
restarted runyard can re-attach: it follows the spool file and, once the process has gone,
reads the exit code from EXIT_FILE (only a parent can wait for a child's exit status).

Stop signals sent to the group reach the command directly; this script outlives them so it
can record how the command ended. SIGKILL ends both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def _note(signum: int, frame: object) -> None:
    """A handler rather than SIG_IGN: ignored signals would be inherited by the command,
    handlers are reset to the default when it starts."""


def _write_exit_code(path: str, code: int) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(f"{code}\n")
    tmp.replace(path)  # atomic: a reader sees no file or the whole code


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: local_wrapper.py EXIT_FILE -- ARGV...", file=sys.stderr)
        return 2
    exit_file, command = args[0], args[2:]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _note)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        print(
            f"runyard: {command[0]!r} was not found on PATH ({os.environ.get('PATH', '')}); "
            "install it in runyard's environment",
            file=sys.stderr,
            flush=True,
        )
        code = 127
    except PermissionError:
        print(f"runyard: {command[0]!r} is not executable", file=sys.stderr, flush=True)
        code = 126
    else:
        code = process.wait()
        if code < 0:  # killed by a signal: report it the way shells and Kubernetes do
            code = 128 - code
    _write_exit_code(exit_file, code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
