"""A reference for POSIX word splitting and quote removal, for the property tests.

It is written differently from validators.shell_words on purpose (one regular expression over
whole quoted segments instead of a character-by-character scanner) and is more permissive: it
also performs backslash escapes outside quotes, which the validator refuses. Besides the words
it reports the shell constructs it saw, i.e. everything on which a shell would do more than
split words and remove quotes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

SEGMENT = re.compile(
    r"""
      (?P<blank>[ ]+)
    | '(?P<single>[^']*)'
    | "(?P<double>(?:[^"\\]|\\.)*)"
    | \\(?P<escaped>.)
    | (?P<plain>[^ '"\\]+)
    """,
    re.VERBOSE | re.DOTALL,
)

# What a POSIX shell (or bash) acts on when it appears outside quotes: operators, expansions,
# file-name patterns, comments, brace expansion and history expansion.
SHELL_SYNTAX = frozenset("|&;<>()$`*?[#~{}!\t\n")
# Inside double quotes, these still expand.
EXPANDS_IN_DOUBLE_QUOTES = frozenset("$`")


@dataclass
class Reading:
    words: list[str] = field(default_factory=list)
    constructs: list[str] = field(default_factory=list)


def read(text: str) -> Reading:
    """The words a POSIX shell passes after quote removal, and the constructs it would act on."""
    reading = Reading()
    reading.constructs.extend(f"control {ch!r}" for ch in text if unicodedata.category(ch) == "Cc")
    word: str | None = None
    position = 0
    while position < len(text):
        match = SEGMENT.match(text, position)
        if match is None:
            reading.constructs.append("unterminated quote")
            break
        position = match.end()
        group = match.lastgroup
        if group == "blank":
            if word is not None:
                reading.words.append(word)
            word = None
            continue
        piece = match.group(group or "")
        if group == "double":
            piece = _double_quoted(piece, reading)
        elif group == "plain":
            reading.constructs.extend(f"unquoted {ch!r}" for ch in piece if ch in SHELL_SYNTAX)
        word = (word or "") + piece
    if word is not None:
        reading.words.append(word)
    return reading


def _double_quoted(body: str, reading: Reading) -> str:
    out = []
    for unit in re.findall(r"\\.|.", body, re.DOTALL):
        if unit in EXPANDS_IN_DOUBLE_QUOTES:
            reading.constructs.append(f"{unit!r} in double quotes")
        if len(unit) == 2 and unit[1] in '$`"\\':
            out.append(unit[1])
        else:
            out.append(unit)
    return "".join(out)


def unquoted_offsets(text: str) -> list[int]:
    """Offsets at which inserted text would land outside any quotes (text must be well quoted)."""
    offsets: list[int] = []
    position = 0
    while position < len(text):
        match = SEGMENT.match(text, position)
        assert match is not None, text
        if match.lastgroup in ("blank", "plain"):
            offsets.extend(range(match.start(), match.end()))
        else:
            offsets.append(match.start())
        position = match.end()
    offsets.append(len(text))
    return offsets
