"""runyard.yaml accepts steps (docs/steps.md), and its JSON Schema describes them."""

from __future__ import annotations

import pytest

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
