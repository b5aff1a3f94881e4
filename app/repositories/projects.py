"""Project repositories: projects, linked sources and document versions (tasks: tasks.py)."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import DocumentVersion, Project, ProjectSource
from app.errors import NotFoundError, translate_errors
from app.repositories.audit import given_fields, record, recorder_of
from app.repositories.base import SqlAlchemyRepository
from app.repositories.knowledge import chunked
from app.repositories.validation import columns_of


async def lock_project(session: AsyncSession, project_id: uuid.UUID) -> None:
    """Lock the project row until the transaction ends; NotFoundError when it does not exist.

    Writers that number things within a project (task order, document versions) take this lock
    before reading, so they run one after another. PostgreSQL gets FOR NO KEY UPDATE, which
    still lets other transactions insert rows that reference the project; MySQL FOR UPDATE.
    SQLite has no row locks and needs none: its writers hold the database lock from BEGIN.
    """
    table = columns_of(Project).table
    stmt = sa.select(table.c.id).where(table.c.id == project_id).with_for_update(key_share=True)
    with translate_errors("locking the project"):
        found = (await session.execute(stmt)).first()
    if found is None:
        raise NotFoundError(f"Project {project_id!s} does not exist")


def project_locks_first(session: AsyncSession) -> bool:
    """Whether task writers must lock their projects before writing a task.

    On MySQL/MariaDB an INSERT's foreign-key check takes a shared lock on the project row; a move
    in the same transaction then asks for it FOR UPDATE, and two such writers deadlock. Taking
    the project lock first makes them queue instead. PostgreSQL's foreign-key lock (KEY SHARE)
    does not conflict with the move's FOR NO KEY UPDATE, and SQLite has no row locks.
    """
    return session.get_bind().dialect.name in ("mysql", "mariadb")


async def lock_projects(session: AsyncSession, project_ids: Iterable[uuid.UUID | None]) -> None:
    """Lock these projects' rows, in id order (one order for all: no lock cycle between them).

    Missing projects are skipped: the write that follows reports them as it always did.
    """
    ids = sorted({i for i in project_ids if i is not None}, key=str)
    table = columns_of(Project).table
    for batch in chunked(ids):
        stmt = (
            sa.select(table.c.id)
            .where(table.c.id.in_(batch))
            .order_by(table.c.id)
            .with_for_update(key_share=True)
        )
        with translate_errors("locking the projects"):
            await session.execute(stmt)


class SqlAlchemyProjectRepository(SqlAlchemyRepository[Project]):
    """``ProjectRepository`` over SQLAlchemy."""

    model = Project

    async def list_pinned(self) -> builtins.list[Project]:
        """Pinned projects, most recently updated first."""
        return await self.list({"pinned": True}, order_by=["-updated_at"])


class SqlAlchemyProjectSourceRepository(SqlAlchemyRepository[ProjectSource]):
    """``ProjectSourceRepository`` over SQLAlchemy."""

    model = ProjectSource

    async def link(
        self,
        project_id: uuid.UUID,
        source_id: str,
        *,
        notes: str | None = None,
        created_by: str = "system",
    ) -> ProjectSource:
        """Link a source to a project; linking again returns the existing link unchanged."""
        link = ProjectSource(
            project_id=project_id, source_id=source_id, notes=notes, created_by=created_by
        )
        # Insert-or-ignore in one native statement: concurrent links never duplicate or fail.
        await self.upsert_many([link], on=["project_id", "source_id"], update=[])
        found = await self.list({"project_id": link.project_id, "source_id": source_id}, limit=1)
        return found[0]

    async def unlink(self, project_id: uuid.UUID, source_id: str) -> bool:
        """Remove the link; whether there was one."""
        return await self.delete_where({"project_id": project_id, "source_id": source_id}) > 0

    async def source_ids(
        self, project_id: uuid.UUID, *, notes: str | None = None
    ) -> builtins.list[str]:
        """The source ids linked to a project, oldest link first."""
        filters: dict[str, Any] = {"project_id": project_id}
        if notes is not None:
            filters["notes"] = notes
        stmt = sa.select(self.table.c.source_id).order_by(*self._order(["linked_at"]))
        where = self._where(filters)
        if where is not None:
            stmt = stmt.where(where)
        with translate_errors("listing linked sources"):
            return list((await self.session.scalars(stmt)).all())


class SqlAlchemyDocumentVersionRepository(SqlAlchemyRepository[DocumentVersion]):
    """``DocumentVersionRepository`` over SQLAlchemy."""

    model = DocumentVersion

    async def create_next(
        self,
        project_id: uuid.UUID,
        field_name: str,
        content: Any,
        *,
        change_summary: str | None = None,
        change_type: str = "update",
        document_id: str | None = None,
        created_by: str = "system",
    ) -> DocumentVersion:
        """Store version max + 1 of (project, field), numbered under the project's row lock."""
        version = DocumentVersion(
            project_id=project_id,
            field_name=field_name,
            version_number=1,  # provisional, for validation; set under the lock below
            content=content,
            change_summary=change_summary,
            change_type=change_type,
            document_id=document_id,
            created_by=created_by,
        )
        self._validate(version)
        assert version.project_id is not None
        async with self._atomic("creating the next"):
            await lock_project(self.session, version.project_id)
            version.version_number = await self._current(version.project_id, field_name) + 1
            self.session.add(version)
            await self.session.flush()
        if recorder_of(self.session) is not None:
            fields = given_fields(self.columns.attr_of, [version])
            record(self.session, self.table.name, "insert", [version.id], fields=fields)
        return version

    async def _current(self, project_id: uuid.UUID, field_name: str) -> int:
        c = self.table.c
        # A locking read: on MySQL a plain SELECT may read the transaction's older snapshot.
        stmt = (
            sa.select(c.version_number)
            .where(c.project_id == project_id, c.field_name == field_name)
            .order_by(c.version_number.desc())
            .limit(1)
            .with_for_update()
        )
        return int(await self.session.scalar(stmt) or 0)

    async def latest(self, project_id: uuid.UUID, field_name: str) -> DocumentVersion | None:
        """The highest-numbered version of (project, field), or None."""
        found = await self.list(
            {"project_id": project_id, "field_name": field_name},
            order_by=["-version_number"],
            limit=1,
        )
        return found[0] if found else None

    async def list_for(
        self, project_id: uuid.UUID, field_name: str | None = None
    ) -> builtins.list[DocumentVersion]:
        """Versions of a project (one field, if given), by field, newest first."""
        filters: dict[str, Any] = {"project_id": project_id}
        if field_name is not None:
            filters["field_name"] = field_name
        return await self.list(filters, order_by=["field_name", "-version_number"])
