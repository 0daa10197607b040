"""Property tests: 10,000 generated commands in total.

- Random mixes of command words, quotes, shell metacharacters, look-alikes and control
  characters: whatever the validator accepts splits exactly as the independent reference in
  posix_reference.py splits it, and nothing the reference sees as shell syntax is accepted.
- Shell constructs inserted outside quotes into accepted example commands are always refused.
- Unicode look-alikes of shell characters are refused outside quotes and kept verbatim inside.
- Commands generated from the rule tables are accepted, and the real click CLI reads every flag,
  value and argument of them exactly as the validator does.

(test_posix_shell.py checks the reference itself against /bin/sh.)
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.validators import posix_reference
from tests.unit.validators.cli_trees import dry_parse, reading_differences
from validators import CommandPolicy, KindPolicy, validate_command
from validators.rules import RULES, Arity, FlagSpec, PositionalSpec, ValueKind
from validators.rules.model import OFF_BY_DEFAULT_EFFECTS, Effect
from validators.shell_words import split_words

PROPERTY_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # keep the checkout free of .hypothesis/ files from runs in CI
)

# Pieces that keep a command well formed: words, and balanced quotes around anything.
PLAIN_FRAGMENTS = [
    "dbt", "sqlmesh", "run", "build", "plan", "--select", "--full-refresh", "--vars",
    "--select-model", "tag:nightly", "a", "model+", "path:models/x.sql", "é", "日本", "-x",
    "=", "%", "@", ",", ":", "/", "..", "+", " ", " ", " ",
    "'x y'", '"a b"', "'a;b'", "'$HOME; `id` | *'", '"\\$x"', '"\\\\"', '"\\""', "'\\'",
    "''", '""', '"it\'s"', "'say \"hi\"'", '"a\\b"', "'；｜'", '"＄(x)"',
]  # fmt: skip
# Pieces a shell would act on, or that runyard refuses: lone quotes and backslashes, shell
# syntax, expansions inside double quotes, look-alikes, invisible and control characters.
RISKY_FRAGMENTS = [
    "'", '"', "\\", '"$x"', '"`id`"',
    "$", "$HOME", "$(", "${", "`", ";", "&&", "&", "|", "||", ">", ">>", "<", "*", "?",
    "[", "]", "~", "#", "{", "}", "(", ")", "!", "^",
    "；", "｜", "＆", "＞", "＜", "＄", "｀", "（", "）", "＊", "\u037e", "\ufe54", "—", "‘",
    "\n", "\t", "\x00", "\r", "\x1b", "\x7f", "\x85", "\u200b", "\u202e", "\u2028",
    "\u00a0", "\u3000",
]  # fmt: skip


@st.composite
def mixed_text(draw: st.DrawFn) -> str:
    """Mostly well-formed pieces with zero to two risky ones inserted anywhere, so that a good
    share of the texts is accepted and the rest is refused for one precise reason."""
    pieces = draw(st.lists(st.sampled_from(PLAIN_FRAGMENTS), max_size=12))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(pieces)))
        pieces.insert(at, draw(st.sampled_from(RISKY_FRAGMENTS)))
    return "".join(pieces)


texts = st.one_of(
    mixed_text(),
    st.lists(st.sampled_from(PLAIN_FRAGMENTS + RISKY_FRAGMENTS), max_size=14).map("".join),
)


@pytest.fixture(scope="module", autouse=True)
def cli_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """click checks that dbt's default profiles and project directories exist while parsing."""
    workdir = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_PROFILES_DIR", str(workdir))
        patch.chdir(workdir)
        yield workdir


# -- splitting ---------------------------------------------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=3000)
@given(texts)
def test_split_agrees_with_the_reference_and_refuses_shell_syntax(text: str) -> None:
    result = split_words(text)
    reading = posix_reference.read(text)
    event("split" if not result.errors else "refused")
    if reading.constructs:
        assert result.errors, (text, reading.constructs)
    if not result.errors:
        assert list(result.words) == reading.words


COMMAND_STARTS = [
    # Mostly options that take several words, so that more of the generated texts are accepted.
    "dbt run --select ",
    "dbt build --exclude ",
    "dbt ls --output-keys ",
    "dbt run --vars ",
    "sqlmesh run --select-model ",
    "sqlmesh plan --auto-apply --no-prompts --restate-model ",
]


@settings(PROPERTY_SETTINGS, max_examples=2500)
@given(st.sampled_from(COMMAND_STARTS), texts)
def test_accepted_commands_are_exactly_the_shell_words(start: str, rest: str) -> None:
    text = start + rest
    kind = text.split(" ", 1)[0]
    result = validate_command(kind, text)
    event("accepted" if result.ok else "refused")
    if result.command is None:
        assert result.errors
        return
    reading = posix_reference.read(text)
    assert reading.constructs == []
    assert list(result.command.argv) == reading.words


# -- shell constructs outside quotes -------------------------------------------------------------

CONSTRUCTS = [
    ";", "; rm -rf x", "&&", "& ", "||", "|", "| cat", ">", ">>out", "<in", "2>&1", "$(id)",
    "`id`", "$HOME", "${HOME}", "$1", "$", "*", "?", "[ab]", "~", "~/x", "#", " #comment",
    "{a,b}", "(x)", "!", "\n", "\r", "\t", "\x00", "\x1b",
]  # fmt: skip
# Not shell syntax for POSIX, but refused anyway: an escape outside quotes, and characters that
# hide what the command says.
REFUSED_BY_DESIGN = ["\\;", "\\ ", "\u2028", "\u200b", "\u00a0", "\u202e"]
EXAMPLES = [(kind, text) for kind, rules in RULES.items() for text in rules.examples]


@st.composite
def example_with_construct(draw: st.DrawFn) -> tuple[str, str, str]:
    kind, text = draw(st.sampled_from(EXAMPLES))
    offset = draw(st.sampled_from(posix_reference.unquoted_offsets(text)))
    construct = draw(st.sampled_from(CONSTRUCTS + REFUSED_BY_DESIGN))
    return kind, construct, text[:offset] + construct + text[offset:]


@settings(PROPERTY_SETTINGS, max_examples=2500)
@given(example_with_construct())
def test_a_construct_outside_quotes_is_always_refused(case: tuple[str, str, str]) -> None:
    kind, construct, text = case
    if construct in CONSTRUCTS:
        assert posix_reference.read(text).constructs
    result = validate_command(kind, text)
    assert not result.ok
    assert result.command is None and result.errors


# -- look-alikes -------------------------------------------------------------------------------

SHELL_ASCII = set("|&;<>()$`*?[]#~{}!'\"\\ ")


def _lookalikes() -> list[str]:
    """Every BMP character whose compatibility form contains shell syntax (full-width ';' ...)."""
    found = []
    for code in range(0x80, 0x10000):
        ch = chr(code)
        if unicodedata.category(ch)[0] in "CZ":
            continue  # control, format and space characters are refused everywhere
        if SHELL_ASCII & set(unicodedata.normalize("NFKC", ch)):
            found.append(ch)
    return found


LOOKALIKES = _lookalikes()


def test_the_lookalike_list_covers_the_usual_suspects() -> None:
    assert {"；", "｜", "＆", "＞", "＜", "＄", "｀", "\u037e", "﹔"} <= set(LOOKALIKES)


@settings(PROPERTY_SETTINGS, max_examples=1000)
@given(
    st.sampled_from(EXAMPLES),
    st.sampled_from(LOOKALIKES),
    st.data(),
)
def test_lookalikes_are_refused_outside_quotes_and_kept_verbatim_inside(
    example: tuple[str, str], lookalike: str, data: st.DataObject
) -> None:
    kind, text = example
    offset = data.draw(st.sampled_from(posix_reference.unquoted_offsets(text)))
    assert not validate_command(kind, text[:offset] + lookalike + text[offset:]).ok

    value = f"{{note: 'a{lookalike}b'}}" if lookalike != "'" else "x"
    quoted = "'" + value.replace("'", "'\"'\"'") + "'"
    command = f"dbt run --vars {quoted}" if kind == "dbt" else f"sqlmesh run --start {quoted}"
    result = validate_command(kind, command)
    assert result.command is not None, result.errors
    assert result.command.argv[-1] == value


# -- agreement with the real CLIs --------------------------------------------------------------

MACROS = frozenset({"grant_select", "ops.vacuum"})
POLICY = CommandPolicy(dbt=KindPolicy(run_operation_macros=MACROS))

# Values the CLIs convert (YAML, dates, durations) need text they can convert.
VALUES_BY_FLAG = {
    "--vars": ['{"a": 1}', "{a: b, c: [1, 2]}", "{}"],
    "--args": ['{"role": "reporter"}', "{dry_run: true}"],
    "--warn-error-options": ['{"error": "all"}', "{error: [NoNodesForSelectionCriteria]}"],
    "--event-time-start": ["2024-01-01", "2024-01-01T10:00:00"],
    "--event-time-end": ["2024-02-01", "2024-02-01 00:00:00"],
    "--sample": ["3 days", "1 hour"],
}
VALUES_BY_KIND = {
    ValueKind.TEXT: ["tag:nightly", "a b", "x;y|z", "model+", "2 days ago", "it's", '"q"', "$x"],
    ValueKind.NAME: ["prod", "dev_1", "eu-west.1"],
    ValueKind.PATH: ["target/state", "artifacts", "a b/c.json", "state.d/x"],
    ValueKind.INTEGER: ["0", "4", "16"],
    ValueKind.MACRO: sorted(MACROS),
}
# Paths that options write to must lie in the output folders (target/, logs/).
WRITTEN_PATHS = ["target/state", "logs/a b.txt", "target/d.html", "./target/x.json"]
SAFE = set(string.ascii_letters + string.digits + "-_.,:/=+@%")


def quote(rng: random.Random, value: str) -> str:
    styles = ["single", "double"]
    if value and set(value) <= SAFE:
        styles.append("bare")
    style = rng.choice(styles)
    if style == "bare":
        return value
    if style == "double":
        escaped = "".join("\\" + ch if ch in '"\\$`' else ch for ch in value)
        return f'"{escaped}"'
    return "'" + value.replace("'", "'\"'\"'") + "'"


def random_value(rng: random.Random, spec: FlagSpec | PositionalSpec, writes: bool = False) -> str:
    if writes:
        return rng.choice(WRITTEN_PATHS)
    if isinstance(spec, FlagSpec) and spec.name in VALUES_BY_FLAG:
        return rng.choice(VALUES_BY_FLAG[spec.name])
    if spec.value is ValueKind.CHOICE:
        assert isinstance(spec, FlagSpec)
        return rng.choice(spec.choices)
    return rng.choice(VALUES_BY_KIND[spec.value])


def writes(kind: str, sub: str | None, name: str) -> bool:
    audit = RULES[kind].audit_of(sub, name)
    return audit is not None and audit.effect is Effect.WRITES_PATH


def random_flag(rng: random.Random, spec: FlagSpec, written: bool = False) -> list[str]:
    spelling = rng.choice(spec.spellings)
    if spec.arity is Arity.NONE:
        return [spelling]
    values = [random_value(rng, spec, written)]
    if spec.arity is Arity.MANY:
        values += [random_value(rng, spec, written) for _ in range(rng.randint(0, 2))]
    quoted = [quote(rng, v) for v in values]
    if spelling.startswith("--") and rng.random() < 0.5:
        return [f"{spelling}={quoted[0]}", *quoted[1:]]
    return [spelling, *quoted]


def allowed(kind: str, sub: str | None, spec: FlagSpec) -> bool:
    audit = RULES[kind].audit_of(sub, spec.name)
    assert audit is not None, spec.name
    return spec.denied is None and audit.effect not in OFF_BY_DEFAULT_EFFECTS


def random_command(seed: int) -> tuple[str, str]:
    """A command the rule tables allow, built at random from the tables themselves.

    A seeded random.Random rather than many hypothesis draws: generating is then ten times
    cheaper, and a failure still reproduces from the seed hypothesis reports.
    """
    rng = random.Random(seed)
    kind = rng.choice(sorted(RULES))
    rules = RULES[kind]
    subs = [s for s in rules.subcommands if POLICY.subcommand_enabled(kind, s.name)]
    sub = rng.choice(subs)
    words = [rules.program]
    global_flags = [f for f in rules.global_flags if allowed(kind, None, f)]
    chosen_global = rng.sample(global_flags, rng.randint(0, 2))
    for spec in chosen_global:
        words += random_flag(rng, spec, writes(kind, None, spec.name))
    words.append(rng.choice(sub.names))
    given = {spec.name for spec in chosen_global}
    candidates = [f for f in sub.flags if allowed(kind, sub.name, f) and f.name not in given]
    chosen = rng.sample(candidates, min(len(candidates), rng.randint(0, 5)))
    chosen += [f for f in sub.flags if f.name in sub.required_flags and f not in chosen]
    parts: list[list[str]] = [
        random_flag(rng, spec, writes(kind, sub.name, spec.name)) for spec in chosen
    ]
    for positional in sub.positionals:
        count = rng.randint(0, 2) if positional.many else 1
        if not positional.required and not positional.many and rng.random() < 0.5:
            break  # an optional argument can only be left out if all after it are too
        written = writes(kind, sub.name, positional.name.upper())
        parts += [[quote(rng, random_value(rng, positional, written))] for _ in range(count)]
    # Arguments and options may come in any order after the subcommand, but the arguments keep
    # their order among themselves: shuffle the options in around them.
    order = rng.sample(range(len(parts)), len(parts))
    positional_slots = sorted(i for i in order if i >= len(chosen))
    arranged = [parts[i] if i < len(chosen) else parts[positional_slots.pop(0)] for i in order]
    for part in arranged:
        words += part
    return kind, " ".join(words)


@settings(PROPERTY_SETTINGS, max_examples=1000)
@given(st.integers(0, 2**32).map(random_command))
def test_commands_built_from_the_tables_read_the_same_in_the_real_cli(
    case: tuple[str, str],
) -> None:
    kind, text = case
    result = validate_command(kind, text, POLICY)
    assert result.command is not None, (text, result.errors)
    assert list(result.command.argv) == posix_reference.read(text).words
    parsed = dry_parse(kind, result.command.argv)
    assert reading_differences(RULES[kind], result.command, parsed) == [], text
