"""/api/v1/projects: thin handlers over ProjectService."""

from __future__ import annotations

from litestar import Controller, delete, get, post, put

from app.api.auth import ORG_WIDE
from app.api.views import DeployResult, ProjectList, deploy_result, project_out
from app.models import Principal, ProjectOut
from app.services.projects import ProjectCreate, ProjectPatch, ProjectService
from app.services.tokens import ACTION_OPT


class ProjectController(Controller):
    path = "/api/v1/projects"
    tags = ["projects"]

    @get("/", sync_to_thread=True, summary="List the organization's projects")
    def list_projects(self, principal: Principal, projects: ProjectService) -> ProjectList:
        found = [project_out(p) for p in projects.list_projects(principal)]
        return ProjectList(found, len(found))

    @post(
        "/",
        sync_to_thread=True,
        summary="Create a project",
        opt={ACTION_OPT: "write", ORG_WIDE: True},
    )
    def create_project(
        self, principal: Principal, projects: ProjectService, data: ProjectCreate
    ) -> ProjectOut:
        return project_out(projects.create(principal, data))

    @get("/{project_id:str}", sync_to_thread=True, summary="Read a project")
    def get_project(
        self, principal: Principal, projects: ProjectService, project_id: str
    ) -> ProjectOut:
        return project_out(projects.get(principal, project_id))

    @put(
        "/{project_id:str}",
        sync_to_thread=True,
        summary="Update a project (only the supplied fields change)",
        opt={ACTION_OPT: "write"},
    )
    def update_project(
        self, principal: Principal, projects: ProjectService, project_id: str, data: ProjectPatch
    ) -> ProjectOut:
        return project_out(projects.update(principal, project_id, data))

    @delete(
        "/{project_id:str}",
        sync_to_thread=True,
        status_code=204,
        summary="Delete a project (?cascade=true to delete its jobs too)",
        opt={ACTION_OPT: "write"},
    )
    def delete_project(
        self, principal: Principal, projects: ProjectService, project_id: str, cascade: bool = False
    ) -> None:
        projects.delete(principal, project_id, cascade)

    @post(
        "/{project_id:str}/deploy",
        sync_to_thread=True,
        status_code=200,
        summary="Make the project's schedules live (CronJobs on Kubernetes)",
        opt={ACTION_OPT: "deploy"},
    )
    def deploy(
        self,
        principal: Principal,
        projects: ProjectService,
        project_id: str,
        executor_name: str,
    ) -> DeployResult:
        project, report = projects.deploy(principal, project_id)
        return deploy_result(project.id, True, report, executor_name)

    @post(
        "/{project_id:str}/undeploy",
        sync_to_thread=True,
        status_code=200,
        summary="Remove the project's schedules",
        opt={ACTION_OPT: "deploy"},
    )
    def undeploy(
        self,
        principal: Principal,
        projects: ProjectService,
        project_id: str,
        executor_name: str,
    ) -> DeployResult:
        project, report = projects.undeploy(principal, project_id)
        return deploy_result(project.id, False, report, executor_name)
