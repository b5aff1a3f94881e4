"""The task repository: ordering within a project's columns, and archiving with subtasks."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from app.domain import Task, TaskStatus
from app.domain.types import utcnow
from app.errors import InvalidInputError, NotFoundError, translate_errors
from app.repositories.base import SqlAlchemyRepository
from app.repositories.knowledge import chunked
from app.repositories.projects import lock_project


def _not_archived(table: sa.Table) -> sa.ColumnElement[bool]:
    return sa.or_(table.c.archived.is_(None), table.c.archived == sa.false())


class SqlAlchemyTaskRepository(SqlAlchemyRepository[Task]):
    """``TaskRepository`` over SQLAlchemy."""

    model = Task

    async def list_for_project(
        self,
        project_id: uuid.UUID,
        *,
        include_archived: bool = False,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        order_by: Sequence[str] = ("task_order",),
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[Task]:
        """Tasks of a project, archived ones only on request."""
        filters: dict[str, Any] = {"project_id": project_id}
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            filters["status"] = {"in": statuses}
        if not include_archived:
            filters["or"] = [{"archived": False}, {"archived": {"is_null": True}}]
        return await self.list(filters, order_by=list(order_by), limit=limit, offset=offset)

    async def archive(self, task_id: uuid.UUID, *, archived_by: str = "system") -> int:
        """Archive the task and its subtasks at any depth; how many rows changed."""
        now = utcnow()
        values = self._validator.values(
            {"archived": True, "archived_at": now, "archived_by": archived_by, "updated_at": now}
        )
        task = await self._load(task_id)
        if task.archived:
            return 0
        ids = await self._with_descendants(task.id)
        changed = 0
        async with self._atomic("archiving"):
            for batch in chunked(ids):
                stmt = (
                    sa.update(Task)
                    .where(self.table.c.id.in_(batch), _not_archived(self.table))
                    .values(values)
                    .execution_options(synchronize_session="fetch")
                )
                changed += int((await self.session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
        return changed

    async def _with_descendants(self, root: uuid.UUID) -> builtins.list[uuid.UUID]:
        # Level by level rather than a recursive CTE: MySQL cannot UPDATE a table that the
        # statement's subquery reads. `seen` guards against cycles in hand-edited data.
        seen, level = [root], [root]
        parent = self.table.c.parent_task_id
        with translate_errors("finding subtasks"):
            while level:
                found: list[uuid.UUID] = []
                for batch in chunked(level):
                    stmt = sa.select(self.table.c.id).where(parent.in_(batch))
                    found.extend((await self.session.scalars(stmt)).all())
                level = [i for i in dict.fromkeys(found) if i not in seen]
                seen.extend(level)
        return seen

    async def move(
        self, task_id: uuid.UUID, position: int, *, status: TaskStatus | None = None
    ) -> Task:
        """Put the task at ``position`` of its (project, status) column; one UPDATE renumbers."""
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise InvalidInputError(f"position must be a non-negative integer, got {position!r}")
        if status is not None:
            status = self._validator.values({"status": status})["status"]
        task = await self._load(task_id)
        project_id = task.project_id
        if project_id is None:
            raise InvalidInputError(f"Task {task.id!s} belongs to no project: nothing to order in")
        async with self._atomic("moving"):
            await lock_project(self.session, project_id)
            # Read again under the lock: another mover may have just committed.
            task = await self._load(task.id, for_update=True)
            if task.archived:
                raise InvalidInputError(f"Task {task.id!s} is archived; restore it to move it")
            target = status or task.status or TaskStatus.TODO
            position = min(position, await self._end_of(task, target))
            await self.session.execute(self._shift(task, target, position))
            await self.session.execute(
                sa.update(self.table)
                .where(self.table.c.id == task.id)
                .values(task_order=position, status=target, updated_at=utcnow())
            )
            await self._reload_loaded(project_id)
        return task

    async def _reload_loaded(self, project_id: uuid.UUID) -> None:
        """Refresh the project's tasks this session holds: Core UPDATEs bypass the ORM."""
        loaded = [
            obj.id
            for obj in self.session.identity_map.values()
            if isinstance(obj, Task) and obj.project_id == project_id
        ]
        for batch in chunked(loaded):
            stmt = sa.select(Task).where(self.table.c.id.in_(batch))
            await self.session.execute(stmt.execution_options(populate_existing=True))

    async def _end_of(self, task: Task, target: TaskStatus) -> int:
        """The position just after the last other task of the target column, once moved."""
        c = self.table.c
        # A locking read, not max(): MySQL's plain reads may see the snapshot taken before the
        # project lock was granted, and PostgreSQL refuses FOR UPDATE with an aggregate.
        stmt = (
            sa.select(c.task_order)
            .where(
                c.project_id == task.project_id,
                c.status == target,
                c.id != task.id,
                c.task_order.is_not(None),
                _not_archived(self.table),
            )
            .order_by(c.task_order.desc())
            .limit(1)
            .with_for_update()
        )
        last = await self.session.scalar(stmt)
        if last is None:
            return 0
        # Leaving a place in the same column moves the ones after it up by one.
        old = task.task_order
        closes_gap = target == task.status and old is not None and last > old
        return int(last) - int(closes_gap) + 1

    def _shift(self, task: Task, target: TaskStatus, position: int) -> sa.Update:
        """Close the gap the task leaves and open one at ``position``, in one statement."""
        c = self.table.c
        # A task without an order held no place, so it leaves no gap to close.
        leaving = (
            sa.and_(c.status == task.status, c.task_order > task.task_order)
            if task.task_order is not None
            else sa.false()
        )
        after_removal = c.task_order - sa.case((leaving, 1), else_=0)
        entering = sa.and_(c.status == target, after_removal >= position)
        return (
            sa.update(self.table)
            .where(
                c.project_id == task.project_id,
                c.id != task.id,
                _not_archived(self.table),
                sa.or_(leaving, sa.and_(c.status == target, c.task_order >= position)),
            )
            .values(task_order=after_removal + sa.case((entering, 1), else_=0))
        )

    async def _load(self, task_id: Any, *, for_update: bool = False) -> Task:
        """The task as the database has it now (not as this session last saw it)."""
        stmt = sa.select(Task).where(self.table.c.id == self._pk_value(task_id))
        if for_update:
            stmt = stmt.with_for_update()
        with translate_errors("loading Task"):
            found = await self.session.scalar(stmt.execution_options(populate_existing=True))
        if found is None:
            raise NotFoundError(f"Task {task_id!s} does not exist")
        return found
