"""An example FastAPI service over the data layer: projects and tasks.

Run it with ``uvicorn examples.fastapi_app:app`` (configuration from the environment, schema
migrated at start-up).
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from pydantic import BaseModel, Field

from app.config import Settings
from app.domain import Project, Task, TaskPriority, TaskStatus
from app.integrations.fastapi import ReadUoW, WriteUoW, data_layer_lifespan, install_error_handlers


class ProjectIn(BaseModel):
    title: str = Field(min_length=1)
    description: str = ""


class TaskIn(BaseModel):
    title: str = Field(min_length=1)
    description: str = ""
    status: TaskStatus = TaskStatus.TODO
    priority: TaskPriority = TaskPriority.MEDIUM
    assignee: str = "User"
    parent_task_id: uuid.UUID | None = None


class MoveIn(BaseModel):
    position: int = Field(ge=0)
    status: TaskStatus | None = None


class ArchiveOut(BaseModel):
    archived: int


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """The example application; tests pass explicit settings."""
    api = FastAPI(title="Archon projects", lifespan=data_layer_lifespan(settings, migrate=migrate))
    install_error_handlers(api)

    @api.post("/projects", status_code=201)
    async def create_project(body: ProjectIn, uow: WriteUoW) -> Project:
        return await uow.projects.add(Project(title=body.title, description=body.description))

    @api.get("/projects")
    async def list_projects(uow: ReadUoW) -> list[Project]:
        return await uow.projects.list(order_by=["-created_at"], limit=100)

    @api.post("/projects/{project_id}/tasks", status_code=201)
    async def create_task(project_id: uuid.UUID, body: TaskIn, uow: WriteUoW) -> Task:
        await uow.projects.get_or_raise(project_id)
        position = await uow.tasks.count({"project_id": project_id, "status": body.status})
        task = Task(project_id=project_id, task_order=position, **body.model_dump())
        return await uow.tasks.add(task)

    @api.get("/projects/{project_id}/tasks")
    async def list_tasks(
        project_id: uuid.UUID, uow: ReadUoW, include_archived: bool = False
    ) -> list[Task]:
        return await uow.tasks.list_for_project(project_id, include_archived=include_archived)

    @api.post("/tasks/{task_id}/move")
    async def move_task(task_id: uuid.UUID, body: MoveIn, uow: WriteUoW) -> Task:
        return await uow.tasks.move(task_id, body.position, status=body.status)

    @api.post("/tasks/{task_id}/archive")
    async def archive_task(task_id: uuid.UUID, uow: WriteUoW) -> ArchiveOut:
        return ArchiveOut(archived=await uow.tasks.archive(task_id, archived_by="api"))

    return api


app = create_app()
