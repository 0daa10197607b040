"""runyard.yaml accepts steps (docs/steps.md), its JSON Schema describes them, and
``runyard runs show`` lists a run's steps."""

from __future__ import annotations

import io

import pytest

from app.cli.output import Output
from app.cli.waiting import print_run
from app.jobfile import JobFileError, load, schema
from app.models import Step

FILE = """
projects:
  - name: analytics
    kind: dbt
    jobs:
      - name: nightly
        schedule: "0 2 * * *"
        steps:
          - command: dbt source freshness
          - command: dbt build
          - command: dbt docs generate
            name: docs
            run_on_failure: true
"""


def test_steps_in_the_file() -> None:
    (job,) = load(FILE).projects[0].jobs
    assert job.command == ""
    assert job.steps == [
        Step(command="dbt source freshness"),
        Step(command="dbt build"),
        Step(command="dbt docs generate", name="docs", run_on_failure=True),
    ]


def test_an_unknown_step_field_is_refused() -> None:
    with pytest.raises(JobFileError, match="on_failure"):
        load(FILE.replace("run_on_failure: true", "on_failure: true"))


def test_the_schema_describes_steps() -> None:
    document = schema()
    job = document["$defs"]["JobSpec"]["properties"]
    assert "steps" in job and "command" not in document["$defs"]["JobSpec"].get("required", [])
    step = document["$defs"]["Step"]
    assert step["required"] == ["command"]
    assert set(step["properties"]) == {"command", "name", "run_on_failure"}


def test_runs_show_lists_the_steps() -> None:
    out = io.StringIO()
    steps = [
        {"index": 0, "name": "dbt seed", "status": "success", "exit_code": 0},
        {"index": 1, "name": "dbt build", "status": "failed", "exit_code": 1},
        {"index": 2, "name": "docs", "status": "skipped", "exit_code": None},
    ]
    steps[0]["duration_seconds"], steps[1]["duration_seconds"] = 3.25, 5.0
    print_run({"id": "run_1", "status": "failed", "steps": steps}, Output(stream=out))
    text = out.getvalue()
    assert "step 1\tdbt seed (success, 3.2 s)" in text
    assert "step 2\tdbt build (failed, exit 1, 5.0 s)" in text
    assert "step 3\tdocs (skipped)" in text
