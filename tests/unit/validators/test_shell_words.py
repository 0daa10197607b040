"""Splitting a command into words, and what is refused before any dbt or SQLMesh rule applies."""

from __future__ import annotations

import pytest

from validators import validate_command
from validators.shell_words import MAX_COMMAND_LENGTH, split_words


def words(text: str) -> list[str]:
    result = split_words(text)
    assert result.errors == (), result.errors
    return list(result.words)


def refused_tokens(text: str) -> list[str]:
    result = split_words(text)
    assert result.words == ()
    return [error.token for error in result.errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dbt run", ["dbt", "run"]),
        ("  dbt   run  ", ["dbt", "run"]),
        ("dbt run --select 'tag:nightly'", ["dbt", "run", "--select", "tag:nightly"]),
        ("""--vars '{"a": 1}'""", ["--vars", '{"a": 1}']),
        ('--vars "{\\"a\\": 1}"', ["--vars", '{"a": 1}']),
        ("'a b'c\"d e\"", ["a bcd e"]),
        ("--select='a b'", ["--select=a b"]),
        ("'it'\"'\"'s'", ["it's"]),
        ("'$HOME; `id` | *'", ["$HOME; `id` | *"]),
        ('"\\$HOME"', ["$HOME"]),
        ('"a\\b"', ["a\\b"]),  # a backslash before an ordinary character stays in "..."
        ('"\\\\"', ["\\"]),
        ("''", [""]),  # an empty word; validate_command refuses it later
        ("dbt run --select modèle 日本", ["dbt", "run", "--select", "modèle", "日本"]),
        ("stg_orders+ 2+model @x a,b path:m/x.sql 50%", None),
    ],
)
def test_words_are_what_a_posix_shell_passes(text: str, expected: list[str] | None) -> None:
    assert words(text) == (expected if expected is not None else text.split(" "))


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("dbt run; rm -rf /", ";"),
        ("dbt run && echo", "&&"),
        ("dbt run || echo", "||"),
        ("dbt run | tee x", "|"),
        ("dbt run &", "&"),
        ("dbt run > out", ">"),
        ("dbt run >> out", ">>"),
        ("dbt run 2>&1", ">&"),
        ("dbt run < in", "<"),
        ("dbt run `id`", "`"),
        ("dbt run $(id)", "$("),
        ("dbt run ${HOME}", "${"),
        ("dbt run $HOME", "$HOME"),
        ("dbt run $1", "$1"),
        ("dbt run --select a*", "*"),
        ("dbt run --select a?", "?"),
        ("dbt run --select [ab]", "["),
        ("dbt run --state ~/x", "~"),
        ("dbt run #comment", "#"),
        ("dbt run --select {a,b}", "{"),
        ("dbt run (x)", "("),
        ("dbt run !x", "!"),
        ("dbt run a\\;b", "\\"),
        ('dbt run --vars "$HOME"', "$HOME"),
        ('dbt run --vars "`id`"', "`"),
        ('dbt run --vars "$(id)"', "$("),
        ("dbt run --select 'unclosed", "'"),
        ('dbt run --select "unclosed', '"'),
    ],
)
def test_shell_syntax_outside_single_quotes_is_refused(text: str, token: str) -> None:
    assert token in refused_tokens(text)


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("dbt run\nrm -rf /", "\\n"),
        ("dbt run\r", "\\r"),
        ("dbt\trun", "\\t"),
        ("dbt run\x00", "\\0"),
        ("dbt run --vars '\n'", "\\n"),  # refused inside quotes too
        ("dbt run --vars 'a\x1bb'", "U+001B"),
        ("dbt run\u200b", "U+200B ZERO WIDTH SPACE"),
        ("dbt run --vars '\u202e'", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("dbt\u00a0run", "U+00A0 NO-BREAK SPACE"),
        ("dbt\u3000run", "U+3000 IDEOGRAPHIC SPACE"),
        ("dbt run\u2028", "U+2028 LINE SEPARATOR"),
    ],
)
def test_control_and_invisible_characters_are_refused_anywhere(text: str, token: str) -> None:
    assert token in refused_tokens(text)


@pytest.mark.parametrize(
    "lookalike", ["；", "｜", "＆", "＞", "＜", "＄", "｀", "（", "＊", "\u037e"]
)
def test_lookalikes_are_refused_outside_quotes(lookalike: str) -> None:
    result = split_words(f"dbt run{lookalike}echo")
    assert [e.token for e in result.errors] == [lookalike]
    assert "looks like" in result.errors[0].reason


def test_lookalikes_inside_quotes_are_kept_exactly_as_typed() -> None:
    assert words("--vars '{x: \"a；b｜c\"}'") == ["--vars", '{x: "a；b｜c"}']


def test_fullwidth_letters_are_plain_letters_and_are_not_normalised() -> None:
    assert words("dbt run --select ｍodel") == ["dbt", "run", "--select", "ｍodel"]
    # Not turned into "dbt" either: the program name must be exactly dbt.
    assert not validate_command("dbt", "ｄｂｔ run").ok


def test_errors_name_the_word_they_occur_in() -> None:
    (error,) = split_words("dbt run --select a;b").errors
    assert (error.token, error.position) == (";", 3)
    (error,) = split_words("dbt run\u200b").errors
    assert error.position == 1


def test_several_problems_are_reported_at_once() -> None:
    tokens = refused_tokens("dbt run; echo $(id) > out")
    assert tokens == [";", "$(", ")", ">"]


def test_overlong_commands_are_refused() -> None:
    result = split_words("dbt run --vars '" + "a" * MAX_COMMAND_LENGTH + "'")
    assert "longer than" in result.errors[0].reason
    assert len(result.errors[0].token) < 50


@pytest.mark.parametrize(
    ("text", "reason_start"),
    [
        ("dbt run —select x", "is a typographic dash (U+2014 EM DASH)"),
        ("dbt run –full-refresh", "is a typographic dash (U+2013 EN DASH)"),
        ("dbt run --select ‘tag:x’", "is a typographic quote (U+2018"),
        ("dbt run --vars “x”", "is a typographic quote (U+201C"),
        ("dbt run --select a→b", "is a symbol (U+2192 RIGHTWARDS ARROW) outside quotes"),
    ],
)
def test_typographic_characters_from_pasted_text_are_explained(
    text: str, reason_start: str
) -> None:
    assert split_words(text).errors[0].reason.startswith(reason_start)
