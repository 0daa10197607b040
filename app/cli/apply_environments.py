"""``runyard apply``: a project's environments (docs/environments.md) as the file lists them.

Planned like jobs, field by field: an environment the file lists is created or updated
(secrets sent as for jobs); one the server has and the file does not is kept ("unlisted"), or
deleted with ``--prune`` after the jobs have moved away from it. The default environment
is never deleted; listing it (``name: default``) updates it. A job names its environment with
``environment_name``, resolved to an id when it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.cli.apply_plan import Change, FieldChange, Secrets, compare, plain, secret_changes
from app.cli.common import Api
from app.jobfile import (
    ENVIRONMENT_SECRET_MAPS,
    JobFileError,
    ProjectSpec,
    environment_where,
)


@dataclass
class Environments:
    """A project's environments on the server and in the file, by name."""

    by_name: dict[str, dict[str, Any]]
    listed: set[str]

    def name_of(self, environment_id: str | None) -> str | None:
        if environment_id is None:
            return None
        for name, found in self.by_name.items():
            if found["id"] == environment_id:
                return name
        return environment_id

    def reference(self, project: str, job: str, name: str | None) -> str | None:
        """What a job's environment_id is sent as: an existing environment's id, or the name
        of one this apply creates (resolved when sent); None: the default."""
        if name is None:
            return None
        if name in self.by_name:
            return str(self.by_name[name]["id"])
        if name in self.listed:
            return name
        raise JobFileError(
            [
                f"job {project}/{job}: environment_name {name!r} is not an environment of "
                "the project (list it under the project's environments)"
            ]
        )


def plan_environments(
    api: Api,
    spec: ProjectSpec,
    project_id: str | None,
    secrets: Secrets,
    *,
    update_secrets: bool,
    prune: bool,
) -> tuple[list[Change], list[Change], Environments]:
    """(creates and updates, to send before the jobs; deletions or unlisted, after them;
    the project's environments)."""
    existing: dict[str, dict[str, Any]] = (
        {
            e["name"]: e
            for e in api.client.get(f"/api/v1/projects/{project_id}/environments")["environments"]
        }
        if project_id is not None
        else {}
    )
    before: list[Change] = []
    for environment in spec.environments:
        current = existing.get(environment.name)
        where = environment_where(spec.name, environment.name)
        fields, body = compare(environment, plain(environment, ENVIRONMENT_SECRET_MAPS), current)
        s_fields, s_body = secret_changes(
            where, environment, current, ENVIRONMENT_SECRET_MAPS, (), secrets, update_secrets
        )
        before.append(
            Change(
                "environment",
                f"{spec.name}/{environment.name}",
                "create" if current is None else "update",
                fields + s_fields,
                body | s_body,
                project_id=project_id,
                job_id=None if current is None else current["id"],
            )
        )
    listed = {e.name for e in spec.environments}
    after = [
        Change(
            "environment",
            f"{spec.name}/{name}",
            "delete" if prune else "unlisted",
            project_id=project_id,
            job_id=found["id"],
        )
        for name, found in sorted(existing.items())
        if name not in listed and not found.get("is_default")
    ]
    return before, after, Environments(existing, listed)


def send_environment(
    api: Api, change: Change, project_id: str, environment_ids: dict[str, str]
) -> None:
    """One environment change (``change.job_id`` holds the environment's id)."""
    base = f"/api/v1/projects/{project_id}/environments"
    _, _, name = change.name.partition("/")
    if change.action == "create":
        if name == "default":
            # Every project has it from its creation: the file's fields update it.
            found = next(e for e in api.client.get(base)["environments"] if e["is_default"])
            api.client.put(f"{base}/{found['id']}", change.body)
            environment_ids[change.name] = found["id"]
            return
        environment_ids[change.name] = api.client.post(base, {"name": name, **change.body})["id"]
    elif change.action == "update":
        assert change.job_id is not None
        environment_ids[change.name] = change.job_id
        if change.body:
            api.client.put(f"{base}/{change.job_id}", change.body)
    elif change.action == "delete":
        api.client.delete(f"{base}/{change.job_id}")


def environment_field(spec_name: str | None, had: str | None) -> tuple[bool, FieldChange | None]:
    """Whether a job's environment changes, and how to show it."""
    if spec_name == had:
        return False, None
    return True, FieldChange("environment_name", had, spec_name)
