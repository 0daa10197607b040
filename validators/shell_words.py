"""Split a command line into words the way a POSIX shell would, refusing anything a shell would
treat as more than plain words.

runyard never runs a command through a shell, but people write commands as they would type them
in one. So the words returned here must be exactly the arguments ``/bin/sh`` would pass after
quote removal, and any text on which a shell would do something else (run a second command,
redirect, expand a variable or a file pattern, start a comment) is refused rather than
interpreted. Characters that merely look like shell syntax are refused outside quotes too, so
nothing is silently turned into something else.

Accepted grammar:

- words are separated by plain spaces (U+0020);
- outside quotes, only letters, digits, and ``- _ . , : / = + @ %`` (plus non-ASCII letters,
  digits and marks that do not normalise to anything else);
- ``'...'`` keeps everything literally;
- ``"..."`` keeps everything literally except that ``\\`` before ``$ ` " \\`` escapes it; an
  unescaped ``$`` or backquote inside double quotes is refused, because shells expand it there;
- control, invisible and non-space whitespace characters are refused everywhere, even in quotes.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass

from validators.result import CommandError

MAX_COMMAND_LENGTH = 8192
"""Longer texts are refused outright: no real dbt or SQLMesh command needs more."""

MAX_ERRORS = 20
"""Scanning continues after a problem so one answer lists several, but not endlessly."""

_ALNUM = frozenset(string.ascii_letters + string.digits)
SAFE_UNQUOTED = _ALNUM | frozenset("-_.,:/=+@%")
"""Characters with no meaning to any common shell, accepted outside quotes."""

QUOTE_HINT = (
    "plain words of letters, digits and - _ . , : / = + @ %; put any other character of a "
    "value inside single quotes, e.g. 'stg_*'"
)

# Why each ASCII character outside the safe set is refused when it appears outside quotes.
_UNQUOTED_REASONS = {
    ";": "separates shell commands; a job runs exactly one command",
    "&": "runs a command in the background or chains commands",
    "|": "pipes output into another command",
    "<": "redirects input from a file",
    ">": "redirects output to a file",
    "`": "runs another command and pastes its output",
    "$": "expands a variable or runs another command",
    "(": "starts a subshell",
    ")": "ends a subshell",
    "*": "is a file-name pattern that the shell would expand",
    "?": "is a file-name pattern that the shell would expand",
    "[": "is a file-name pattern that the shell would expand",
    "]": "belongs to a file-name pattern",
    "~": "expands to a home directory",
    "#": "starts a comment, so the shell would ignore the rest of the line",
    "\\": "escapes the next character; quote the value instead",
    "{": "is brace expansion in some shells",
    "}": "is brace expansion in some shells",
    "!": "negates or recalls commands in some shells",
    "^": "is a pipe in old shells",
}
_GENERIC_REASON = "has a special meaning in shells"

# Characters that make multi-character operators, so the error names the whole operator.
_OPERATOR_FOLLOWERS = {"&": "&", "|": "|&", ">": ">&|", "<": "<&>", ";": ";"}

_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\\0"}


@dataclass(frozen=True, slots=True)
class SplitResult:
    words: tuple[str, ...]
    errors: tuple[CommandError, ...]


def describe_char(ch: str) -> str:
    """A printable name for a character that should not be shown raw."""
    if ch in _CONTROL_NAMES:
        return _CONTROL_NAMES[ch]
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".rstrip()


def refused_anywhere(ch: str) -> str | None:
    """Why ``ch`` is refused even inside quotes, or None when it is fine there."""
    if ch == " ":
        return None
    category = unicodedata.category(ch)
    if category == "Cc":
        if ch == "\n" or ch == "\r":
            return "is a line break, which would start a second command"
        return "is a control character"
    if category == "Cf":
        return "is an invisible formatting character that hides what the command says"
    if category in ("Zs", "Zl", "Zp"):
        return "is a space or line break that is not a plain space"
    if category == "Cs":
        return "is an unpaired surrogate, not a real character"
    if category == "Co":
        return "is a private-use character"
    return None


def lookalike_of(ch: str) -> str | None:
    """The shell syntax a non-ASCII character stands in for (e.g. ';' for a full-width ';')."""
    normalised = unicodedata.normalize("NFKC", ch)
    if normalised == ch:
        return None
    shell_like = [c for c in normalised if c.isascii() and c not in SAFE_UNQUOTED]
    return normalised if shell_like else None


def split_words(text: str) -> SplitResult:
    """The shell words of ``text`` after quote removal, or the reasons it cannot be split safely.

    ``errors`` is empty exactly when every character is accounted for; ``words`` is then the
    argument list. Positions in errors are indexes of the word being read.
    """
    if len(text) > MAX_COMMAND_LENGTH:
        return SplitResult(
            (),
            (
                CommandError(
                    token=text[:40] + "...",
                    reason=f"the command is longer than {MAX_COMMAND_LENGTH} characters",
                    allowed="a shorter command; long --vars values belong in the project",
                ),
            ),
        )
    return _Splitter(text).run()


class _Splitter:
    """A character-at-a-time scanner with three states: outside quotes, in '...' and in "..."."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.words: list[str] = []
        self.current: list[str] = []
        self.in_word = False  # distinguishes an empty quoted word ('') from no word at all
        self.errors: list[CommandError] = []

    def run(self) -> SplitResult:
        self._check_every_character()
        while self.i < len(self.text) and len(self.errors) < MAX_ERRORS:
            ch = self.text[self.i]
            if ch == " ":
                self._end_word()
                self.i += 1
            elif ch == "'":
                self._single_quoted()
            elif ch == '"':
                self._double_quoted()
            else:
                self._unquoted(ch)
        self._end_word()
        if self.errors:
            return SplitResult((), tuple(self.errors[:MAX_ERRORS]))
        return SplitResult(tuple(self.words), ())

    def _fail(self, token: str, reason: str, allowed: str = QUOTE_HINT) -> None:
        self.errors.append(CommandError(token, reason, allowed, len(self.words)))

    def _end_word(self) -> None:
        if self.in_word:
            self.words.append("".join(self.current))
        self.current = []
        self.in_word = False

    def _check_every_character(self) -> None:
        # Done up front and for the whole text, so a newline inside quotes is caught too. The
        # position is that of the word in which the character sits; since the text has not been
        # split yet, it counts space-separated runs (exact unless quotes contain spaces).
        for index, ch in enumerate(self.text):
            reason = refused_anywhere(ch)
            if reason is not None:
                before = self.text[:index]
                word_index = len([run for run in before.split(" ") if run])
                if before and not before.endswith(" "):
                    word_index -= 1  # the character continues the word before it
                self.errors.append(
                    CommandError(
                        describe_char(ch),
                        reason,
                        "printable characters and plain spaces only, also inside quotes",
                        word_index,
                    )
                )
                if len(self.errors) >= MAX_ERRORS:
                    return

    def _single_quoted(self) -> None:
        end = self.text.find("'", self.i + 1)
        if end < 0:
            self._fail("'", "this quote is never closed", "close every quote you open")
            self.i = len(self.text)
            return
        self.current.append(self.text[self.i + 1 : end])
        self.in_word = True
        self.i = end + 1

    def _double_quoted(self) -> None:
        self.in_word = True
        i = self.i + 1
        text = self.text
        while i < len(text):
            ch = text[i]
            if ch == '"':
                self.i = i + 1
                return
            if ch == "\\" and i + 1 < len(text) and text[i + 1] in '$`"\\':
                self.current.append(text[i + 1])
                i += 2
            elif ch == "$" or ch == "`":
                token = self._dollar_token(i) if ch == "$" else "`"
                self._fail(
                    token,
                    "is expanded by the shell even inside double quotes",
                    "single quotes around values that contain $ or `",
                )
                i += len(token)
            else:
                # A backslash before any other character stays, as in POSIX double quotes.
                self.current.append(ch)
                i += 1
        self._fail('"', "this quote is never closed", "close every quote you open")
        self.i = len(text)

    def _unquoted(self, ch: str) -> None:
        if ch in SAFE_UNQUOTED:
            self.current.append(ch)
            self.in_word = True
            self.i += 1
            return
        if refused_anywhere(ch) is not None:
            self.i += 1  # already reported by _check_every_character
            return
        if ch.isascii():
            token = self._operator_token(self.i)
            self._fail(token, _UNQUOTED_REASONS.get(ch, _GENERIC_REASON))
            self.i += len(token)
            return
        shell_char = lookalike_of(ch)
        if shell_char is not None:
            self._fail(
                ch,
                f"looks like {shell_char!r} ({describe_char(ch)}); it is refused outside quotes "
                "so that nothing is mistaken for shell syntax",
                "the plain character inside single quotes if it is part of a value; look-alike "
                "characters are accepted inside quotes and kept exactly as typed",
            )
        elif unicodedata.category(ch)[0] in "LNM":
            # Letters, digits and combining marks of any script are plain word characters.
            self.current.append(ch)
            self.in_word = True
        elif unicodedata.category(ch) == "Pd":
            self._fail(
                ch,
                f"is a typographic dash ({describe_char(ch)}), not '-'; editors and chat tools "
                "often turn -- into one",
                "options typed with plain hyphens, e.g. --select",
            )
        elif unicodedata.category(ch) in ("Pi", "Pf"):
            self._fail(
                ch,
                f"is a typographic quote ({describe_char(ch)}), which shells do not treat as a "
                "quote",
                "plain single quotes ' around values",
            )
        else:
            self._fail(ch, f"is a symbol ({describe_char(ch)}) outside quotes")
        self.i += 1

    def _operator_token(self, start: int) -> str:
        """The operator at ``start``: ``&&`` rather than ``&``, ``$(`` rather than ``$``."""
        ch = self.text[start]
        if ch == "$":
            return self._dollar_token(start)
        followers = _OPERATOR_FOLLOWERS.get(ch, "")
        if start + 1 < len(self.text) and self.text[start + 1] in followers:
            return self.text[start : start + 2]
        return ch

    def _dollar_token(self, start: int) -> str:
        """``$(``, ``${``, ``$NAME`` or ``$`` plus one character, for the error message."""
        text = self.text
        nxt = text[start + 1 : start + 2]
        if nxt in ("(", "{"):
            return "$" + nxt
        end = start + 1
        while end < len(text) and (
            text[end] == "_" or (text[end].isascii() and text[end].isalnum())
        ):
            end += 1
        if end > start + 1:
            return text[start:end]
        if nxt and nxt.isprintable() and nxt not in " '\"":
            return "$" + nxt
        return "$"
