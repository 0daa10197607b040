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
