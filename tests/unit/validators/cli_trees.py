"""The real dbt and SQLMesh click command trees, for the contract tests.

``rule_problems`` compares a rule set with a command tree and lists every difference that would
let the validator accept what the CLI reads differently (or not at all). ``dry_parse`` runs
click's own argument parsing on an argument list, without invoking any command, and
``reading_differences`` compares click's reading with the validator's.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import click
from click.core import ParameterSource

from validators import ParsedCommand
from validators.rules import Arity, FlagSpec, PositionalSpec, RuleSet, ValueKind
from validators.rules.model import PATH_EFFECTS, Effect

DISTRIBUTIONS = {"dbt": "dbt-core", "sqlmesh": "sqlmesh"}
NOT_EXPOSED = object()


@functools.cache
def cli_for(kind: str) -> click.Group:
    if kind == "dbt":
        from dbt.cli.main import cli as dbt_cli

        group: click.Group = dbt_cli
    else:
        from sqlmesh.cli.main import cli as sqlmesh_cli

        group = sqlmesh_cli
    return group


def installed_version(kind: str) -> str:
    return version(DISTRIBUTIONS[kind])


def find_command(group: click.Group, words: list[str]) -> click.Command | None:
    command: click.Command = group
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            return None
        command = command.commands[word]
    return command


# -- comparing the tables with the CLI -------------------------------------------------------------


def takes_value(option: click.Option) -> bool:
    return not (option.is_flag or option.count)


def is_multi_value(option: click.Option) -> bool:
    # dbt's MultiOption (dbt.cli.options) is the only click option that reads several words.
    return type(option).__name__ == "MultiOption"


def find_option(params: list[click.Parameter], spelling: str) -> click.Option | None:
    for param in params:
        if isinstance(param, click.Option) and spelling in (*param.opts, *param.secondary_opts):
            return param
    return None


def flag_problems(spec: FlagSpec, params: list[click.Parameter], where: str) -> list[str]:
    option = find_option(params, spec.name)
    if option is None:
        return [f"{where}: {spec.name} is not an option of the CLI"]
    problems: list[str] = []
    spellings = (*option.opts, *option.secondary_opts)
    for alias in spec.aliases:
        if alias not in spellings:
            problems.append(f"{where}: {alias} is not a spelling of {spec.name} in the CLI")
    for spelling in spec.spellings:
        if not spelling.startswith("--") and len(spelling) != 2:
            problems.append(f"{where}: {spelling} must be a one-letter short option")
    if spec.name in option.secondary_opts and spec.arity is not Arity.NONE:
        problems.append(f"{where}: {spec.name} is a negation and takes no value")
    expected = Arity.NONE if not takes_value(option) else Arity.ONE
    if takes_value(option) and is_multi_value(option):
        expected = Arity.MANY
    if takes_value(option) and option.nargs != 1:
        problems.append(f"{where}: {spec.name} takes {option.nargs} values at once")
    if spec.arity is not expected:
        problems.append(f"{where}: {spec.name} arity is {spec.arity.value}, CLI: {expected.value}")
    repeatable = bool(option.multiple or option.count)
    if spec.repeatable != repeatable:
        problems.append(f"{where}: {spec.name} repeatable={spec.repeatable}, CLI: {repeatable}")
    problems.extend(value_problems(spec, option, where))
    return problems


def value_problems(spec: FlagSpec, option: click.Option, where: str) -> list[str]:
    problems: list[str] = []
    if spec.arity is Arity.NONE:
        return problems
    if spec.value is ValueKind.CHOICE:
        choices = getattr(option.type, "choices", None)
        if choices is None or set(spec.choices) != set(choices):
            problems.append(f"{where}: {spec.name} choices {spec.choices} != CLI {choices}")
    if spec.value is ValueKind.INTEGER and not isinstance(option.type, click.types.IntParamType):
        problems.append(f"{where}: {spec.name} is not an integer option in the CLI")
    # Whatever the CLI treats as a path must be checked as a path (no absolute paths, no '..').
    if isinstance(option.type, click.Path) and spec.value is not ValueKind.PATH:
        problems.append(f"{where}: {spec.name} is a path in the CLI but not checked as one")
    return problems


def rule_problems(rules: RuleSet, cli: click.Group) -> list[str]:
    """Every way the rule set disagrees with the CLI; empty when they agree."""
    problems: list[str] = []
    for spec in rules.global_flags:
        problems.extend(flag_problems(spec, cli.params, f"{rules.program} (global)"))
    for sub in rules.subcommands:
        for name in sub.names:
            where = f"{rules.program} {name}"
            command = find_command(cli, name.split(" "))
            if command is None:
                problems.append(f"{where}: no such subcommand in the CLI")
                continue
            for spec in sub.flags:
                problems.extend(flag_problems(spec, command.params, where))
            problems.extend(positional_problems(rules, sub.positionals, command, where))
            for flag in sub.required_flags:
                if all(flag != f.name for f in sub.flags):
                    problems.append(f"{where}: required flag {flag} is not in its table")
    for name in rules.unsupported:
        if find_command(cli, name.split(" ")) is None:
            problems.append(f"{rules.program} {name}: listed as unsupported but not in the CLI")
    return problems


def positional_problems(
    rules: RuleSet, specs: tuple[Any, ...], command: click.Command, where: str
) -> list[str]:
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    problems: list[str] = []
    if [a.name for a in arguments] != [p.name for p in specs]:
        names = [a.name for a in arguments]
        problems.append(f"{where}: positionals {[p.name for p in specs]} != CLI {names}")
        return problems
    for argument, spec in zip(arguments, specs, strict=True):
        if argument.required != spec.required:
            problems.append(f"{where}: {spec.name} required={spec.required}, CLI disagrees")
        if (argument.nargs == -1) != spec.many:
            problems.append(f"{where}: {spec.name} many={spec.many}, CLI nargs={argument.nargs}")
    return problems


# -- parsing with click ----------------------------------------------------------------------------


@dataclass
class DryParse:
    contexts: list[click.Context]
    """The group's context first, the leaf command's last."""

    @property
    def command_path(self) -> str:
        return " ".join(str(ctx.info_name) for ctx in self.contexts[1:])

    def from_command_line(self) -> Iterator[tuple[click.Parameter, Any]]:
        for ctx in self.contexts:
            assert ctx.command is not None
            for param in ctx.command.params:
                assert param.name is not None
                if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
                    # Options with expose_value=False (SQLMesh's --local) keep no value: the
                    # CLI looks at the raw arguments instead. Being given is all there is.
                    yield param, ctx.params.get(param.name, NOT_EXPOSED)


def _remaining(ctx: click.Context) -> list[str]:
    protected = getattr(ctx, "_protected_args", None)
    if protected is None:
        protected = ctx.protected_args
    return [*protected, *ctx.args]


def dry_parse(kind: str, argv: tuple[str, ...]) -> DryParse:
    """Let click parse ``argv`` as it would before running it; nothing is invoked.

    Raises click.UsageError (or BadParameter) when the CLI would refuse the arguments.
    """
    group = cli_for(kind)
    ctx = group.make_context(argv[0], list(argv[1:]))
    contexts = [ctx]
    command: click.Command = group
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(ctx, _remaining(ctx))
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        contexts.append(ctx)
        command = sub
    return DryParse(contexts)


def reading_differences(rules: RuleSet, parsed: ParsedCommand, click_parse: DryParse) -> list[str]:
    """How click's reading of ``parsed.argv`` differs from the validator's; empty if it does not."""
    problems: list[str] = []
    sub = rules.subcommand(parsed.subcommand)
    assert sub is not None
    if rules.subcommand(click_parse.command_path) is not sub:
        problems.append(f"subcommand: click ran {click_parse.command_path!r}")
    ours: dict[str, tuple[str, ...]] = {}
    for flag, values in parsed.flags.items():
        spec = next((f for f in (*sub.flags, *rules.global_flags) if f.name == flag), None)
        assert spec is not None
        ours[flag] = values
    clicks_options = {}
    clicks_arguments: list[str] = []
    for param, value in click_parse.from_command_line():
        if isinstance(param, click.Argument):
            clicks_arguments.extend([value] if isinstance(value, str) else value)
        else:
            assert isinstance(param, click.Option)
            clicks_options[param.name] = (param, value)
    our_params = {}
    for flag in ours:
        option = find_option(
            [*click_parse.contexts[-1].command.params, *click_parse.contexts[0].command.params],
            flag,
        )
        assert option is not None, flag
        our_params[option.name] = flag
    if set(our_params) != set(clicks_options):
        problems.append(f"options: ours {sorted(our_params)} != click {sorted(clicks_options)}")
        return problems
    for name, flag in our_params.items():
        option, value = clicks_options[name]
        problems.extend(_value_difference(flag, ours[flag], option, value))
    # Whatever is neither a flag nor a flag's value must be exactly what click took as arguments.
    argv_words = Counter(w for w in parsed.argv[1:] if not w.startswith("-"))
    inline = Counter(w.split("=", 1)[1] for w in parsed.argv if w.startswith("--") and "=" in w)
    flag_values = Counter(v for values in ours.values() for v in values) - inline
    plain = argv_words - Counter(click_parse.command_path.split(" ")) - flag_values
    if plain != Counter(clicks_arguments):
        problems.append(f"arguments: ours {sorted(plain.elements())} != click {clicks_arguments}")
    return problems


def _value_difference(
    flag: str, values: tuple[str, ...], option: click.Option, value: Any
) -> list[str]:
    if value is NOT_EXPOSED:
        return []
    if not takes_value(option):
        if option.count:
            return [] if value >= 1 else [f"{flag}: click counted {value}"]
        expected = flag not in option.secondary_opts
        return [] if bool(value) == expected else [f"{flag}: click read {value!r}"]
    if is_multi_value(option):
        # dbt splits the first word of each occurrence on spaces; compare the words.
        ours = " ".join(values).split(" ")
        theirs = " ".join(value).split(" ")
        return [] if ours == theirs else [f"{flag}: ours {ours} != click {theirs}"]
    if option.multiple:
        return [] if tuple(value) == values else [f"{flag}: ours {values} != click {value}"]
    (single,) = values
    if isinstance(option.type, click.types.IntParamType):
        return [] if value == int(single) else [f"{flag}: ours {single} != click {value}"]
    if isinstance(option.type, (click.types.StringParamType, click.Choice, click.Path)):
        return [] if str(value) == single else [f"{flag}: ours {single!r} != click {value!r}"]
    return []  # converted types (YAML, dates): click accepted the text, which is the point


# -- the option audit against the CLI --------------------------------------------------------------

PATH_WORDS = frozenset(
    {"path", "paths", "dir", "file", "folder", "output", "state", "dotenv", "tests"}
)
"""Words that, as part of a parameter's name (``--log-file-dir``), suggest it takes a path."""
NOT_PATHS = {"output_keys": "names of JSON keys that dbt ls prints"}
"""Parameters whose name suggests a path but which take none (with the reason)."""


def looks_like_path(param: click.Parameter) -> bool:
    """Whether the CLI types the parameter as a path, or its name suggests one."""
    if isinstance(param, click.Option) and not takes_value(param):
        return False
    if isinstance(param.type, (click.Path, click.File)):
        return True
    if isinstance(param.type, (click.types.IntParamType, click.Choice)):
        return False
    names = [param.name or "", *getattr(param, "opts", ())]
    words = {word for name in names for word in re.split(r"[-_]+", name.lower())}
    return param.name not in NOT_PATHS and bool(words & PATH_WORDS)


def _spec_for(
    param: click.Parameter, flags: tuple[FlagSpec, ...], positionals: tuple[PositionalSpec, ...]
) -> FlagSpec | PositionalSpec | None:
    if isinstance(param, click.Argument):
        return next((p for p in positionals if p.name == param.name), None)
    spellings = {*param.opts, *param.secondary_opts}
    return next((f for f in flags if f.name in spellings), None)


def audit_problems(rules: RuleSet, cli: click.Group) -> list[str]:
    """Every accepted option and argument is audited, the audit names nothing else, and whatever
    the CLI reads as a path is audited as a read or written path and checked as a path."""
    problems: list[str] = []
    places: list[tuple[str | None, tuple[FlagSpec, ...], tuple[PositionalSpec, ...]]] = [
        (None, rules.global_flags, ())
    ]
    places += [(sub.name, sub.flags, sub.positionals) for sub in rules.subcommands]
    known: set[str] = set()
    for sub_name, flags, positionals in places:
        where = f"{rules.program} {sub_name or '(global)'}"
        names = [f.name for f in flags] + [p.name.upper() for p in positionals]
        for name in names:
            known.update({name, f"{sub_name} {name}"})
            if rules.audit_of(sub_name, name) is None:
                problems.append(f"{where}: {name} has no audit line")
        for flag in flags:
            problems.extend(_effect_problems(rules, sub_name, flag.name, flag.value, where))
        for positional in positionals:
            name = positional.name.upper()
            problems.extend(_effect_problems(rules, sub_name, name, positional.value, where))
        command = cli if sub_name is None else find_command(cli, sub_name.split(" "))
        if command is None:
            continue  # rule_problems reports it
        for param in command.params:
            if not looks_like_path(param):
                continue
            spec = _spec_for(param, flags, positionals)
            label = param.opts[0] if isinstance(param, click.Option) else str(param.name).upper()
            if spec is None:
                if label not in rules.left_out and param.name != "help":
                    problems.append(f"{where}: {label} takes a path but is not audited")
                continue
            name = spec.name if isinstance(spec, FlagSpec) else spec.name.upper()
            audit = rules.audit_of(sub_name, name)
            if audit is not None and audit.effect not in PATH_EFFECTS:
                problems.append(
                    f"{where}: {label} takes a path but is audited {audit.effect.value}"
                )
    stale = [key for key in rules.audit if key not in known]
    return problems + [f"{rules.program}: audit line {key!r} names nothing" for key in stale]


def _effect_problems(
    rules: RuleSet, sub: str | None, name: str, value: ValueKind, where: str
) -> list[str]:
    audit = rules.audit_of(sub, name)
    if audit is None:
        return []
    problems = []
    if (audit.effect in PATH_EFFECTS) != (value is ValueKind.PATH):
        problems.append(
            f"{where}: {name} is audited {audit.effect.value}, checked as {value.value}"
        )
    if (audit.effect is Effect.VALUES) != (value is ValueKind.VARS):
        problems.append(f"{where}: {name} passes values but is not checked for Jinja")
    if (audit.effect is Effect.EXECUTES) != (value is ValueKind.MACRO):
        problems.append(f"{where}: {name} executes code the policy does not list")
    return problems
