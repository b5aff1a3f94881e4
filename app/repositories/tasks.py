"""The task repository: ordering within a project's columns, and archiving with subtasks."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from app.domain import Task, TaskStatus
from app.domain.types import utcnow
from app.errors import InvalidInputError, NotFoundError, translate_errors
from app.repositories.audit import record
from app.repositories.base import SqlAlchemyRepository
from app.repositories.knowledge import chunked
from app.repositories.projects import lock_project, lock_projects, project_locks_first
from app.repositories.validation import entity_list

# MySQL/MariaDB lock every index entry a locking statement scans: through the status or order
# index that includes other projects' tasks, whose writers hold other project locks (a cycle).
# Through the project index a writer touches only rows of the project it has locked.
_BY_PROJECT = "FORCE INDEX (idx_archon_tasks_project_id)"


def _by_project(stmt: Any, table: sa.Table) -> Any:
    for dialect in ("mysql", "mariadb"):
        if isinstance(stmt, sa.Update):  # (UPDATE's with_hint takes its arguments the other way)
            stmt = stmt.with_hint(_BY_PROJECT, selectable=table, dialect_name=dialect)
        else:
            stmt = stmt.with_hint(table, _BY_PROJECT, dialect)
    return stmt


def _not_archived(table: sa.Table) -> sa.ColumnElement[bool]:
    return sa.or_(table.c.archived.is_(None), table.c.archived == sa.false())


class SqlAlchemyTaskRepository(SqlAlchemyRepository[Task]):
    """``TaskRepository`` over SQLAlchemy."""

    model = Task

    # -- writes take the project lock first (see ``project_locks_first``) ----------------------

    async def add_many(self, entities: Iterable[Task]) -> builtins.list[Task]:
        """Insert all of ``entities`` or none, their projects locked first where that matters."""
        items = entity_list(entities, self.model)
        if project_locks_first(self.session):
            self._validator.many(items)
            await self._lock_projects([t.project_id for t in items])
        return await super().add_many(items)

    async def _before_upsert(self, items: builtins.list[Task]) -> None:
        """Lock the projects of the tasks to upsert first, where that matters."""
        if project_locks_first(self.session):
            await self._lock_projects([t.project_id for t in items])

    async def update(self, id: Any, values: Mapping[str, Any]) -> Task:
        """Set ``values`` on the task ``id``; its old and new projects are locked first."""
        if project_locks_first(self.session):
            checked = self._validator.values(values)
            where = self.table.c.id == self._pk_value(id)
            await self._lock_projects_of(where, also=[checked.get("project_id")])
        return await super().update(id, values)

    async def _delete(
        self,
        where: sa.ColumnElement[bool],
        matches: Callable[[dict[str, Any]], bool],
        ids: builtins.list[Any] | None = None,
    ) -> int:
        if project_locks_first(self.session):
            await self._lock_projects_of(where)
        return await super()._delete(where, matches, ids)

    async def _update_where(
        self,
        where: sa.ColumnElement[bool],
        checked: dict[str, Any],
        matches: Callable[[dict[str, Any]], bool],
    ) -> int:
        if project_locks_first(self.session) and checked:
            await self._lock_projects_of(where, also=[checked.get("project_id")])
        return await super()._update_where(where, checked, matches)

    async def _lock_projects_of(
        self, where: sa.ColumnElement[bool], *, also: Sequence[uuid.UUID | None] = ()
    ) -> None:
        """Lock the projects of the tasks matching ``where``, and ``also`` these."""
        await self._lock_projects([*await self._projects_of(where), *also])

    async def _projects_of(self, where: sa.ColumnElement[bool]) -> builtins.list[Any]:
        # A plain read: a project changed under it is rare, and then only costs a retry.
        stmt = sa.select(self.table.c.project_id).where(where).distinct()
        with translate_errors("finding the projects of Task"):
            return builtins.list((await self.session.scalars(stmt)).all())

    async def _lock_projects(self, project_ids: Sequence[uuid.UUID | None]) -> None:
        async with self._single("locking the projects of"):
            await lock_projects(self.session, project_ids)

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
        if project_locks_first(self.session):
            found = [await self._projects_of(self.table.c.id.in_(b)) for b in chunked(ids)]
            await self._lock_projects([p for batch in found for p in batch])
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
        if changed:
            fields = [self.columns.by_name[attr].name for attr in values]
            record(self.session, self.table.name, "update", ids, count=changed, fields=fields)
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
            shifted = await self.session.execute(self._shift(task, target, position))
            await self.session.execute(
                sa.update(self.table)
                .where(self.table.c.id == task.id)
                .values(task_order=position, status=target, updated_at=utcnow())
            )
            await self._reload_loaded(project_id)
        fields = ("task_order", "status", "updated_at")
        record(self.session, self.table.name, "update", [task.id], fields=fields)
        moved = int(shifted.rowcount)  # type: ignore[attr-defined]
        if moved:  # the others of the column, renumbered
            record(self.session, self.table.name, "update", count=moved, fields=["task_order"])
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
        last = await self.session.scalar(_by_project(stmt, self.table))
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
        stmt = (
            sa.update(self.table)
            .where(
                c.project_id == task.project_id,
                c.id != task.id,
                _not_archived(self.table),
                sa.or_(leaving, sa.and_(c.status == target, c.task_order >= position)),
            )
            .values(task_order=after_removal + sa.case((entering, 1), else_=0))
        )
        return _by_project(stmt, self.table)

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
