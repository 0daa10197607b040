"""``runyard apply -f runyard.yaml``: make the server's projects and jobs what the file says.

Idempotent: each field is compared with what the server has and only differences are sent, so
a second apply changes nothing and says so. Secrets are the exception, because the server
never reads them back (``********``): a secret is sent when its project or job is created,
when a name is added to (or removed from) a secret map, or for every secret with
``--update-secrets``; a value changed only in the environment is otherwise not noticed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from app.cli.apply_environments import (
    Environments,
    environment_field,
    plan_environments,
    send_environment,
)
from app.cli.apply_plan import (
    UNCHANGED,
    Change,
    FieldChange,
    Secrets,
    compare,
    plain,
    secret_changes,
)
from app.cli.common import Api, CliError, client_command
from app.cli.http import ApiError
from app.exit_codes import EXIT_OK, EXIT_USAGE
from app.jobfile import (
    JOB_SECRET_MAPS,
    JOB_SECRET_VALUES,
    PROJECT_SECRET_MAPS,
    PROJECT_SECRET_VALUES,
    JobFileError,
    JobSpec,
    ProjectSpec,
    load,
)


def plan(
    api: Api,
    specs: list[ProjectSpec],
    secrets: Secrets,
    *,
    update_secrets: bool,
    prune: bool,
) -> list[Change]:
    """Compare the file with the server: what apply would do, without doing it."""
    existing = {p["name"]: p for p in api.client.get("/api/v1/projects")["projects"]}
    out: list[Change] = []
    for spec in specs:
        current = existing.get(spec.name)
        fields, body = compare(
            spec, plain(spec, PROJECT_SECRET_MAPS + PROJECT_SECRET_VALUES), current
        )
        s_fields, s_body = secret_changes(
            spec.name, spec, current, PROJECT_SECRET_MAPS, PROJECT_SECRET_VALUES, secrets,
            update_secrets,
        )  # fmt: skip
        change = Change(
            "project",
            spec.name,
            "create" if current is None else "update",
            fields + s_fields,
            body | s_body,
            project_id=None if current is None else current["id"],
        )
        env_changes, env_after, environments = plan_environments(
            api,
            spec,
            None if current is None else current["id"],
            secrets,
            update_secrets=update_secrets,
            prune=prune,
        )
        was_deployed = bool(current and current.get("deployed"))
        if spec.deployed is not None and spec.deployed != was_deployed:
            change.deploy = spec.deployed
            change.fields.append(FieldChange("deployed", was_deployed, spec.deployed))
        out.append(change)
        out += env_changes  # before the jobs that run in them
        jobs = (
            {j["name"]: j for j in api.client.get(f"/api/v1/projects/{current['id']}/jobs")["jobs"]}
            if current is not None
            else {}
        )
        names_by_id = {j["id"]: name for name, j in jobs.items()}
        for job in _ordered(spec.jobs):
            out.append(
                _plan_job(
                    spec.name,
                    job,
                    jobs.get(job.name),
                    names_by_id,
                    secrets,
                    update_secrets,
                    environments,
                )
            )
        listed = {job.name for job in spec.jobs}
        for name, job in sorted(jobs.items()):
            if name not in listed:
                out.append(
                    Change(
                        "job",
                        f"{spec.name}/{name}",
                        "delete" if prune else "unlisted",
                        project_id=current["id"] if current else None,
                        job_id=job["id"],
                    )
                )
        out += env_after  # after the jobs have left them
    return out


def _plan_job(
    project: str,
    spec: JobSpec,
    current: dict[str, Any] | None,
    names_by_id: dict[str, str],
    secrets: Secrets,
    update_secrets: bool,
    environments: Environments,
) -> Change:
    where = f"{project}/{spec.name}"
    fields, body = compare(spec, plain(spec, JOB_SECRET_MAPS + JOB_SECRET_VALUES), current)
    s_fields, s_body = secret_changes(
        where, spec, current, JOB_SECRET_MAPS, JOB_SECRET_VALUES, secrets, update_secrets
    )
    change = Change(
        "job",
        where,
        "create" if current is None else "update",
        fields + s_fields,
        body | s_body,
        job_id=None if current is None else current["id"],
    )
    wanted = [(dep.job, dep.on) for dep in spec.depends_on]
    have = [
        (names_by_id.get(d["job_id"], d["job_id"]), d.get("on", "success"))
        for d in (current or {}).get("depends_on") or []
    ]
    if wanted != have:
        change.depends_on = wanted
        show = [f"{name} ({on})" for name, on in wanted]
        if current is not None or wanted:
            change.fields.append(
                FieldChange("depends_on", [f"{n} ({o})" for n, o in have] or None, show or None)
            )
    deferred = (current or {}).get("defer_to_job_id")
    had = names_by_id.get(deferred, deferred) if deferred else None
    if spec.defer_to != had:
        change.defer_to = spec.defer_to
        change.fields.append(FieldChange("defer_to", had, spec.defer_to))
    changed, shown = environment_field(
        spec.environment_name, environments.name_of((current or {}).get("environment_id"))
    )
    if changed:
        change.environment = environments.reference(project, spec.name, spec.environment_name)
        if shown is not None:
            change.fields.append(shown)
    return change


def _ordered(jobs: list[JobSpec]) -> list[JobSpec]:
    """Jobs after the jobs they depend on (so their ids exist when they are sent)."""
    by_name = {job.name: job for job in jobs}
    done: list[JobSpec] = []
    seen: set[str] = set()

    def visit(job: JobSpec, path: tuple[str, ...]) -> None:
        if job.name in seen:
            return
        if job.name in path:
            raise JobFileError(
                [f"depends_on and defer_to form a cycle: {' -> '.join((*path, job.name))}"]
            )
        for dep in job.depends_on:
            if dep.job in by_name:
                visit(by_name[dep.job], (*path, job.name))
        if job.defer_to in by_name:  # the job deferred to must exist first
            visit(by_name[job.defer_to], (*path, job.name))
        seen.add(job.name)
        done.append(job)

    for job in jobs:
        visit(job, ())
    return done


def execute(api: Api, changes: list[Change]) -> None:
    """Send the planned changes in order: projects, their jobs, deletions, deployment. A
    refusal names the change it stopped at; those before it stay made (apply is idempotent:
    fix the file and apply again)."""
    project_ids: dict[str, str] = {}
    job_ids: dict[str, str] = {}
    environment_ids: dict[str, str] = {}
    deploys: list[tuple[Change, bool]] = []
    for index, change in enumerate(changes):
        try:
            if change.resource == "environment":
                project = change.name.partition("/")[0]
                send_environment(api, change, project_ids[project], environment_ids)
            else:
                _send(api, change, project_ids, job_ids, environment_ids)
        except ApiError as exc:
            raise _stopped(exc, change, index) from None
        if change.deploy is not None:
            deploys.append((change, change.deploy))
    for change, deploy in deploys:
        try:
            api.client.post(
                f"/api/v1/projects/{change.project_id}/{'deploy' if deploy else 'undeploy'}"
            )
        except ApiError as exc:
            raise _stopped(exc, change, len(changes)) from None


def _stopped(exc: ApiError, change: Change, index: int) -> ApiError:
    return ApiError(
        f"{change.resource} {change.name} ({change.action}): {exc}\n"
        f"the {index} change(s) before it were applied; fix the file and apply again",
        exc.status,
        exc.errors,
    )


def _send(
    api: Api,
    change: Change,
    project_ids: dict[str, str],
    job_ids: dict[str, str],
    environment_ids: dict[str, str],
) -> None:
    if change.resource == "project":
        if change.action == "create":
            made = api.client.post("/api/v1/projects", {"name": change.name, **change.body})
            change.project_id = made["id"]
        elif change.body:
            api.client.put(f"/api/v1/projects/{change.project_id}", change.body)
        assert change.project_id is not None
        project_ids[change.name] = change.project_id
        return
    project, _, name = change.name.partition("/")
    base = f"/api/v1/projects/{project_ids[project]}/jobs"
    body = dict(change.body)
    if change.depends_on is not None:
        body["depends_on"] = [
            {"job_id": job_ids.get(f"{project}/{dep}", dep), "on": on}
            for dep, on in change.depends_on
        ]
    if change.defer_to is not UNCHANGED:
        target = change.defer_to
        body["defer_to_job_id"] = (
            job_ids.get(f"{project}/{target}", target) if isinstance(target, str) else None
        )
    if change.environment is not UNCHANGED:
        target = change.environment
        body["environment_id"] = (
            environment_ids.get(f"{project}/{target}", target) if isinstance(target, str) else None
        )
    if change.action == "create":
        job_ids[change.name] = api.client.post(base, {"name": name, **body})["id"]
    elif change.action == "update":
        assert change.job_id is not None
        job_ids[change.name] = change.job_id
        if body:
            api.client.put(f"{base}/{change.job_id}", body)
    elif change.action == "delete":
        api.client.delete(f"{base}/{change.job_id}")


# --- output ---------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    return "-" if value is None else repr(value) if isinstance(value, str) else str(value)


def describe(changes: list[Change]) -> list[str]:
    lines: list[str] = []
    for change in changes:
        if change.action == "unlisted":
            lines.append(
                f"{change.resource} {change.name}: not in the file, kept (--prune deletes it)"
            )
            continue
        if not change.changes_something:
            continue
        lines.append(f"{change.resource} {change.name}: {change.action}")
        for f in change.fields:
            if f.secret:
                mark = "-" if f.new == "removed" else "+" if f.old is None else "~"
                lines.append(f"  {mark} {f.field}: {f.new} (secret; the value is not shown)")
            elif change.action == "create":
                lines.append(f"  + {f.field}: {_shown(f.new)}")
            else:
                lines.append(f"  ~ {f.field}: {_shown(f.old)} -> {_shown(f.new)}")
    return lines


def _document(changes: list[Change], dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "changed": any(c.changes_something for c in changes),
        "changes": [
            {
                "resource": c.resource,
                "name": c.name,
                "action": c.action,
                "fields": [
                    {"field": f.field, "old": f.old, "new": f.new, "secret": f.secret}
                    for f in c.fields
                ],
            }
            for c in changes
            if c.changes_something or c.action == "unlisted"
        ],
    }


@click.command()
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="runyard.yaml",
    show_default=True,
    help="the jobs-as-code file ('-' for standard input)",
)
@click.option("--dry-run", is_flag=True, help="print what would change, change nothing")
@click.option("--prune", is_flag=True, help="delete jobs of the file's projects it does not list")
@click.option(
    "--update-secrets",
    is_flag=True,
    help="send every secret again (the server never shows them, so changes are not seen)",
)
@client_command
def apply(api: Api, path: Path, dry_run: bool, prune: bool, update_secrets: bool) -> int:
    """Create and update projects and jobs from a runyard.yaml (idempotent)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    try:
        spec = load(text)
        secrets = Secrets(spec.projects, dict(os.environ))
        changes = plan(api, spec.projects, secrets, update_secrets=update_secrets, prune=prune)
    except JobFileError as exc:
        raise CliError(f"{path}:\n  " + "\n  ".join(exc.problems), EXIT_USAGE) from None
    changed = any(c.changes_something for c in changes)
    if not dry_run and changed:
        execute(api, changes)
    if api.as_json:
        api.out.document(_document(changes, dry_run))
        return EXIT_OK
    for line in describe(changes):
        api.out.line(line)
    if not changed:
        api.out.line("no changes")
    elif dry_run:
        api.out.line("dry run: nothing was changed")
    else:
        counts: dict[str, int] = {}
        for c in changes:
            if c.changes_something:
                key = f"{c.resource}s {c.action}d"
                counts[key] = counts.get(key, 0) + 1
        api.out.line("applied: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if any(f.secret for c in changes for f in c.fields) or update_secrets:
        api.out.note(
            "secrets are sent on create, when a name is added or removed, and with "
            "--update-secrets; their values are never shown"
        )
    return EXIT_OK
