"""A few hundred accepted commands, split by a real /bin/sh, must give the validator's argv.

One shell process prints the arguments of every command (``printf '[%s]\\n' <command>``), so
the whole check costs one subprocess. It runs in an empty directory seeded with files that any
wrongly accepted file-name pattern would match, with HOME pointing nowhere, so an expansion the
validator missed would show up as a difference.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.validators import posix_reference
from validators import validate_command

SAMPLE_SIZE = 400

# Characters to build quoted values from: shell syntax, quotes, backslashes, look-alikes and
# other scripts, all of which must come out of the shell unchanged when quoted.
VALUE_CHARS = list("abcXYZ019 -_.,:/=+@%;&|<>()$`*?[]{}#~!^\"'\\") + list("é日本；｜＆＄")
SAFE_CHARS = list("abcXYZ019-_.,:/=+@%")
STARTS = ["dbt run --select", "dbt build --exclude", "sqlmesh run --select-model x --start"]


def _single_quoted(rng: random.Random) -> str:
    body = "".join(rng.choice(VALUE_CHARS) for _ in range(rng.randint(1, 8)))
    return "'" + body.replace("'", "") + "'"


def _double_quoted(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 8)):
        ch = rng.choice(VALUE_CHARS)
        if ch in '"$`':
            out.append("\\" + ch)
        elif ch == "\\":
            # Either an escaped backslash, or a lone one before an ordinary character, which
            # POSIX keeps as a backslash.
            out.append(rng.choice(["\\\\", "\\a"]))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _bare(rng: random.Random) -> str:
    return "".join(rng.choice(SAFE_CHARS) for _ in range(rng.randint(1, 6)))


def _word(rng: random.Random) -> str:
    makers = [_single_quoted, _double_quoted, _bare]
    return "".join(rng.choice(makers)(rng) for _ in range(rng.randint(1, 3)))


def accepted_sample(size: int, seed: int = 20240601) -> list[tuple[str, tuple[str, ...]]]:
    """Commands the validator accepts, with the argv it returns."""
    rng = random.Random(seed)
    sample: list[tuple[str, tuple[str, ...]]] = []
    while len(sample) < size:
        start = rng.choice(STARTS)
        count = 1 if start.endswith("--start") else rng.randint(1, 4)
        text = start + " " + " ".join(_word(rng) for _ in range(count))
        result = validate_command(text.split(" ", 1)[0], text)
        if result.command is not None:
            sample.append((text, result.command.argv))
    return sample


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell on this machine")
def test_accepted_commands_split_like_a_real_posix_shell(tmp_path: Path) -> None:
    for name in ("a", "ab", "abc", "x;y", "dbt", "[", "~"):
        (tmp_path / name).touch()
    sample = accepted_sample(SAMPLE_SIZE)
    # Each accepted command contains no shell syntax, so it is safe to hand to printf verbatim.
    script = "\n".join(f"printf '[%s]\\n' {text}; echo ==" for text, _ in sample)
    completed = subprocess.run(
        ["sh", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "nowhere"), "LC_ALL": "C.UTF-8"},
        capture_output=True,
        check=True,
        timeout=60,
    )
    blocks = completed.stdout.decode("utf-8").split("==\n")[:-1]
    assert len(blocks) == len(sample)
    for (text, argv), block in zip(sample, blocks, strict=True):
        shell_words = [line[1:-1] for line in block.splitlines()]
        assert shell_words == list(argv), text
        assert posix_reference.read(text).words == shell_words, text
