"""The jobs-as-code file and the CLI's name resolution, without a server."""

from __future__ import annotations

import io

import pytest

from app.cli.http import ApiError, _one
from app.cli.output import Output
from app.jobfile import FromEnv, JobFileError, load, resolve


def test_a_file_decodes_with_the_servers_defaults() -> None:
    found = load(
        "projects:\n"
        "  - name: shop\n    kind: dbt\n"
        "    secret_environment: {PASSWORD: {from_env: WAREHOUSE_PASSWORD}}\n"
        "    jobs:\n      - {name: build, command: dbt build}\n"
    )
    job = found.projects[0].jobs[0]
    assert job.timeout_seconds == 1800 and job.concurrency_policy == "Forbid"
    assert found.projects[0].secret_environment == {"PASSWORD": FromEnv("WAREHOUSE_PASSWORD")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("projects: [{name: a, kind: dbt, scheduel: x}]", "unknown field `scheduel`"),
        (
            "projects: [{name: a, kind: dbx}]",
            "Invalid enum value 'dbx' - at `$.projects[0].kind`; use one of: dbt, sqlmesh",
        ),
        (
            "projects: [{name: a, kind: dbt, jobs: [{name: b, command: x, webhook_events: [x]}]}]",
            "webhook_events[0]`; use one of: started, success, failure, cancelled",
        ),
        ("projects: [{name: a, kind: dbt}, {name: a, kind: dbt}]", "'a' is listed twice"),
        (
            "projects: [{name: a, kind: dbt, jobs: [{name: b, command: x, depends_on: "
            "[{job: c}]}]}]",
            "depends_on names 'c'",
        ),
        (
            "projects: [{name: a, kind: dbt, jobs: [{name: b, command: x, webhook_secret: s}]}]",
            "projects[0].jobs[0].webhook_secret: a literal secret in the file is refused",
        ),
        (
            "projects: [{name: a, kind: dbt, secret_environment: {X: lit}}]",
            "projects[0].secret_environment.X: a literal secret",
        ),
        ("projects: [{name: a, kind: dbt, secret_environment: {X: {from_env: 1x}}}]", "match"),
        ("- a list", "must be a mapping"),
        ("projects: [", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_with_where(text: str, message: str) -> None:
    with pytest.raises(JobFileError) as caught:
        load(text)
    assert message in str(caught.value)


def test_an_unset_variable_is_named() -> None:
    with pytest.raises(JobFileError, match="WAREHOUSE_PASSWORD is not set"):
        resolve(FromEnv("WAREHOUSE_PASSWORD"), "shop.secret_environment.P", {})
    assert resolve(FromEnv("P"), "x", {"P": "v"}) == "v"


def test_names_resolve_to_one_item_or_a_clear_error() -> None:
    items = [{"id": "proj_1", "name": "a"}, {"id": "proj_2", "name": "b"}]
    assert _one("project", "b", items, "HINT")["id"] == "proj_2"
    assert _one("project", "proj_1", items, "HINT")["name"] == "a"
    with pytest.raises(ApiError, match=r"no project with the name or id 'c'.*HINT"):
        _one("project", "c", items, "HINT")
    twice = [*items, {"id": "proj_3", "name": "a"}]
    with pytest.raises(ApiError, match=r"2 projects are named 'a' \(proj_1, proj_3\)"):
        _one("project", "a", twice, "HINT")


def test_pipe_output_is_tab_separated_without_header_or_colours() -> None:
    stream = io.StringIO()
    out = Output(stream=stream, err=io.StringIO())
    out.table(["ID", "STATUS"], [["run_1", "failed"], ["run_2", None]])
    out.fields([("status", "success"), ("tags", ["a"]), ("ok", True)])
    assert stream.getvalue() == ('run_1\tfailed\nrun_2\t-\nstatus\tsuccess\ntags\t["a"]\nok\tyes\n')
