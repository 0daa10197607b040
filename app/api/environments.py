"""/api/v1/projects/{project_id}/environments: thin handlers over EnvironmentService."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post, put

from app.models import Environment, EnvironmentOut, Principal, redacted
from app.services.environments import EnvironmentCreate, EnvironmentPatch, EnvironmentService
from app.services.tokens import ACTION_OPT


class EnvironmentList(msgspec.Struct):
    environments: list[EnvironmentOut]
    total: int


def environment_out(environment: Environment) -> EnvironmentOut:
    out = msgspec.convert(environment, EnvironmentOut, from_attributes=True)
    out.secret_environment = redacted(environment.secret_environment)
    return out


class EnvironmentController(Controller):
    path = "/api/v1/projects/{project_id:str}/environments"
    tags = ["environments"]

    @get("/", sync_to_thread=True, summary="List the project's environments")
    def list_environments(
        self, principal: Principal, environments: EnvironmentService, project_id: str
    ) -> EnvironmentList:
        found = [environment_out(e) for e in environments.list_environments(principal, project_id)]
        return EnvironmentList(found, len(found))

    @post(
        "/",
        sync_to_thread=True,
        summary="Create an environment",
        opt={ACTION_OPT: "write"},
    )
    def create_environment(
        self,
        principal: Principal,
        environments: EnvironmentService,
        project_id: str,
        data: EnvironmentCreate,
    ) -> EnvironmentOut:
        return environment_out(environments.create(principal, project_id, data))

    @get("/{environment_id:str}", sync_to_thread=True, summary="Read an environment")
    def get_environment(
        self,
        principal: Principal,
        environments: EnvironmentService,
        project_id: str,
        environment_id: str,
    ) -> EnvironmentOut:
        return environment_out(environments.get(principal, project_id, environment_id))

    @put(
        "/{environment_id:str}",
        sync_to_thread=True,
        summary="Update an environment (only the supplied fields change)",
        opt={ACTION_OPT: "write"},
    )
    def update_environment(
        self,
        principal: Principal,
        environments: EnvironmentService,
        project_id: str,
        environment_id: str,
        data: EnvironmentPatch,
    ) -> EnvironmentOut:
        return environment_out(environments.update(principal, project_id, environment_id, data))

    @delete(
        "/{environment_id:str}",
        sync_to_thread=True,
        status_code=204,
        summary="Delete an environment (not the default, nor one a job uses)",
        opt={ACTION_OPT: "write"},
    )
    def delete_environment(
        self,
        principal: Principal,
        environments: EnvironmentService,
        project_id: str,
        environment_id: str,
    ) -> None:
        environments.delete(principal, project_id, environment_id)
