"""Steps: a job's ordered list of commands (docs/steps.md), validated into what a run runs.

Each step is checked exactly like a job's ``command`` (the command policy, the option
audit, dbt's state options), and becomes a ``StepPlan``: its name, argument list and
subcommand. The executors run the plans of a run's snapshot in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.errors import FieldError, Invalid
from app.models import MAX_STEPS, Step, StepPlan, step_name
from app.ports import CommandParser

MAX_STEP_NAME = 100


def plan_steps(
    commands: CommandParser, kind: str, steps: Sequence[Step], field: str = "steps"
) -> list[StepPlan]:
    """The validated plans of ``steps``, or a 422 naming each rejected step
    (``steps[1].command``)."""
    if not steps:
        raise Invalid(
            f"The {field} list is empty: give at least one step, or a command instead.",
            [FieldError(field, "give at least one step")],
        )
    if len(steps) > MAX_STEPS:
        raise Invalid(
            f"Too many {field}: at most {MAX_STEPS} steps per run.",
            [FieldError(field, f"at most {MAX_STEPS} steps")],
        )
    plans: list[StepPlan] = []
    errors: list[FieldError] = []
    for index, step in enumerate(steps):
        where = f"{field}[{index}]"
        try:
            parsed = commands.parse(kind, step.command, f"{where}.command")
        except Invalid as exc:
            errors += exc.errors
            continue
        name = step_name(step, parsed.argv)
        if step.name is not None and (
            not step.name.strip()
            or len(step.name) > MAX_STEP_NAME
            or any(not c.isprintable() for c in step.name)
        ):
            errors.append(
                FieldError(
                    f"{where}.name",
                    f"use 1 to {MAX_STEP_NAME} printable characters, or leave it out "
                    f"(the default is the command's first words, here {name!r})",
                )
            )
            continue
        plans.append(
            StepPlan(
                name=name,
                command=step.command,
                argv=list(parsed.argv),
                subcommand=parsed.subcommand,
                run_on_failure=step.run_on_failure,
            )
        )
    if errors:
        raise Invalid(
            f"The {field} were rejected: " + "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors,
        )
    return plans


def replan(commands: CommandParser, kind: str, plans: Sequence[StepPlan]) -> list[StepPlan]:
    """A run's steps replayed (a rerun, a retry), checked against today's command policy;
    each keeps its name."""
    steps = [Step(command=p.command, name=p.name, run_on_failure=p.run_on_failure) for p in plans]
    try:
        return plan_steps(commands, kind, steps)
    except Invalid as refused:
        raise Invalid(
            "The run's steps are not allowed by the current command policy, so they were "
            f"not run again. {refused.detail}",
            refused.errors,
        ) from None
