"""Checks for the values of flags and positional arguments, by kind of value."""

from __future__ import annotations

import re
import unicodedata

from validators.rules import ValueKind

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
INTEGER = re.compile(r"^[0-9]{1,9}$")
MACRO = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def value_problem(kind: ValueKind, value: str, choices: tuple[str, ...] = ()) -> str | None:
    """Why ``value`` is not acceptable as a value of this kind, or None when it is.

    Emptiness and leading dashes are checked by the caller, for every kind alike.
    """
    if kind is ValueKind.NAME and not NAME.match(value):
        return "is not a valid name"
    if kind is ValueKind.INTEGER and not INTEGER.match(value):
        return "is not a whole number"
    if kind is ValueKind.CHOICE and value not in choices:
        return "is not one of the accepted values"
    if kind is ValueKind.MACRO and not MACRO.match(value):
        return "is not a macro name (use name or package.name)"
    if kind is ValueKind.PATH:
        return path_problem(value)
    if kind is ValueKind.VARS:
        return jinja_problem(value)
    return None


def path_problem(value: str) -> str | None:
    """Paths must stay inside the project: relative, without ``..``, without ``~``.

    The check also runs on the NFKC form, so full-width dots or slashes (U+FF0E, U+FF0F) cannot
    pass for something harmless here and become a traversal in some other tool later.
    """
    for form in (value, unicodedata.normalize("NFKC", value)):
        if form.startswith("/"):
            return "is an absolute path"
        if form.startswith("~"):
            return "starts with ~, a home directory"
        if "\\" in form:
            return "contains a backslash"
        if ".." in form.split("/"):
            return "leaves the project directory with '..'"
    return None


JINJA_DELIMITERS = ("{{", "{%", "{#")
# YAML double-quoted strings and JSON spell characters as \xHH, \uHHHH or \UHHHHHHHH, so
# "\u007b\u007b" becomes "{{" once parsed. Such escapes are decoded before looking, wherever they
# appear (in a single-quoted YAML string they would stay literal: refusing those too is the
# price of not parsing YAML here).
_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))")


def _unescaped(value: str) -> str:
    def decode(match: re.Match[str]) -> str:
        code = int(next(group for group in match.groups() if group is not None), 16)
        return chr(code) if code <= 0x10FFFF else ""

    return _ESCAPE.sub(decode, value)


def jinja_problem(value: str) -> str | None:
    """dbt renders Jinja inside ``--vars`` values, so a Jinja delimiter there runs code (a
    ``run_query`` call, say) with the power of the refused ``--inline``."""
    for form in (value, _unescaped(value)):
        found = next((d for d in JINJA_DELIMITERS if d in form), None)
        if found is not None:
            spelled = "" if found in value else " once its escapes are decoded"
            return (
                f"contains the Jinja delimiter {found!r}{spelled}, and dbt renders Jinja inside "
                "these values, which would run any SQL or macro like the refused --inline"
            )
    return None


def output_problem(
    value: str, output_dirs: tuple[str, ...], protected: tuple[str, ...]
) -> str | None:
    """Why a path an option writes to is refused (``path_problem`` has already passed).

    Written paths stay in the folders dbt and SQLMesh write anyway (``target/``, ``logs/``), so
    no option can overwrite the project's own files (``profiles.yml``, ``dbt_project.yml``,
    models) or anything else the project folder holds.
    """
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if not parts or parts[0] not in output_dirs:
        folders = " and ".join(f"{d}/" for d in output_dirs)
        return f"is outside {folders}, the only folders an option may write into"
    if "/".join(parts) in protected:
        return "is a file runyard reads back after the run, so nothing else may write it"
    return None
