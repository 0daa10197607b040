"""Make or check the lock files that ./dev and CI install from.

    python requirements/lock.py                         # compile the locks (keeps versions)
    python requirements/lock.py --upgrade               # move every package to its newest
    python requirements/lock.py --upgrade-package NAME  # move one package
    python requirements/lock.py --check                 # are the locks made from pyproject.toml?

Three locks, one per way of installing runyard: ``runtime.lock`` (the service alone, for the
container image), ``engines.lock`` (plus dbt and SQLMesh: ``./dev demo`` and ``./dev serve``)
and ``dev.lock`` (plus the test and lint tools: ``./dev test``). ``dev.lock`` is compiled first
and constrains the other two, so a package has the same version in all three. Each is
universal (markers for every Python from 3.11 and every platform) and names packages from PyPI
only, so pip installs it anywhere.

Compiling needs ``uv`` (in the dev lock, so ``.venv/bin/uv`` after ``./dev test``, or
``pip install uv``). Each lock records a digest of the dependency declarations it was made
from; ``--check`` (run by ./dev before installing) fails when pyproject.toml declares
something else, so a dependency added without a new lock stops CI with instructions instead of
going missing at import time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
HERE = ROOT / "requirements"
# Compiled in this order: dev first, the others constrained by it.
LOCKS = {"dev": ["--extra", "dev"], "engines": ["--extra", "engines"], "runtime": []}
DIGEST_PREFIX = "# pyproject.toml dependencies: sha256:"
COMPILE_COMMAND = "just lock"


def declared_digest() -> str:
    """A digest of what pyproject.toml declares (not its tool settings, which change often)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    declared = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    text = json.dumps(declared, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    if not lock.exists():
        return None
    for line in lock.read_text().splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return None


def check() -> int:
    digest = declared_digest()
    stale = [name for name in LOCKS if recorded_digest(HERE / f"{name}.lock") != digest]
    if not stale:
        return 0
    names = ", ".join(f"requirements/{name}.lock" for name in stale)
    print(
        f"{names} not made from the dependencies pyproject.toml declares now.\n"
        "Regenerate the locks and commit them with pyproject.toml:\n"
        "    just lock        (or: .venv/bin/python requirements/lock.py)\n"
        "See docs/development.md, 'Updating dependencies'.",
        file=sys.stderr,
    )
    return 1


def find_uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise SystemExit("uv is needed to compile the locks: pip install uv")
    return found


def compile_locks(extra_args: list[str]) -> None:
    uv = find_uv()
    digest = declared_digest()
    for name, extras in LOCKS.items():
        lock = HERE / f"{name}.lock"
        command = [
            uv,
            "pip",
            "compile",
            str(PYPROJECT.relative_to(ROOT)),
            *extras,
            "--universal",
            "--python-version",
            "3.11",
            "--index-url",
            "https://pypi.org/simple",  # PyPI only, whatever this machine's pip.conf adds
            "--quiet",
            "--output-file",
            str(lock.relative_to(ROOT)),
            *extra_args,
        ]
        if name != "dev":
            command += ["--constraint", "requirements/dev.lock"]
        env = dict(os.environ, UV_CUSTOM_COMPILE_COMMAND=COMPILE_COMMAND)
        print(f"compiling requirements/{name}.lock", file=sys.stderr)
        subprocess.run(command, cwd=ROOT, env=env, check=True)
        lines = lock.read_text().splitlines()
        lines = [line for line in lines if not line.startswith(DIGEST_PREFIX)]
        header = next(i for i, line in enumerate(lines) if not line.startswith("#"))
        lines.insert(header, DIGEST_PREFIX + digest)
        lock.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the locks")
    args, extra = parser.parse_known_args()
    if args.check:
        return check()
    compile_locks(extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
