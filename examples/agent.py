"""An example agent tool: plans a project as tasks in one Unit of Work.

Everything the function writes commits together or not at all: if any step fails, the
``async with`` block exits without ``commit()`` and the Unit of Work rolls back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from app.bootstrap import DataLayer, bootstrap
from app.domain import Project, Task, TaskStatus


async def plan_project(layer: DataLayer, title: str, steps: Sequence[str]) -> uuid.UUID:
    """Create a project with one task per step, in order, and return the project's id."""
    async with layer.uow() as uow:
        project = await uow.projects.add(Project(title=title))
        tasks = [
            Task(project_id=project.id, title=step, task_order=i, assignee="planner-agent")
            for i, step in enumerate(steps)
        ]
        await uow.tasks.add_many(tasks)
        await uow.commit()
        return project.id


async def next_task(layer: DataLayer, project_id: uuid.UUID) -> Task | None:
    """Pick the first open task and mark it as being done: the agent's claim on it."""
    async with layer.uow() as uow:
        todo = await uow.tasks.list_for_project(project_id, status=TaskStatus.TODO, limit=1)
        if not todo:
            return None
        task = await uow.tasks.update(todo[0].id, {"status": TaskStatus.DOING})
        await uow.commit()
        return task


async def _main() -> None:
    layer = bootstrap()
    try:
        await layer.migrate()
        project_id = await plan_project(layer, "Ship search", ["Write schema", "Add index"])
        print("claimed:", await next_task(layer, project_id))
    finally:
        await layer.aclose()


if __name__ == "__main__":
    asyncio.run(_main())
