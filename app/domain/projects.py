"""Project-management entities: projects, tasks, linked sources and document versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.naming import conv
from sqlmodel import Field

from app.domain.base import ArchonModel
from app.domain.enums import TaskPriority, TaskStatus
from app.domain.types import (
    MYSQL_TABLE_OPTIONS,
    JSONType,
    LongText,
    TZDateTime,
    enum_type,
    keyed_text,
    mysql_prefix,
    new_list,
    new_uuid,
    utcnow,
)

_PROJECT_FK = "archon_projects.id"


def _uuid_pk() -> Any:
    return Field(default_factory=new_uuid, sa_column=sa.Column(sa.Uuid, primary_key=True))


def _json_list() -> Any:
    return Field(default_factory=new_list, sa_type=JSONType)


def _timestamp() -> Any:
    return Field(default_factory=utcnow, sa_type=TZDateTime)


class Project(ArchonModel, table=True):
    """A project with its JSON documents (``archon_projects``)."""

    __tablename__ = "archon_projects"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    id: uuid.UUID = _uuid_pk()
    title: str = Field(sa_column=sa.Column(LongText, nullable=False))
    description: str | None = Field(default="", sa_type=LongText)
    docs: list[Any] | None = _json_list()
    features: list[Any] | None = _json_list()
    data: list[Any] | None = _json_list()
    github_repo: str | None = Field(default=None, sa_type=LongText)
    pinned: bool | None = Field(default=False)
    created_at: datetime | None = _timestamp()
    updated_at: datetime | None = _timestamp()


class Task(ArchonModel, table=True):
    """A task of a project, possibly a subtask (``archon_tasks``)."""

    __tablename__ = "archon_tasks"
    __table_args__ = (
        sa.CheckConstraint("assignee IS NOT NULL AND assignee <> ''", name="assignee"),
        sa.Index("idx_archon_tasks_project_id", "project_id"),
        sa.Index("idx_archon_tasks_status", "status"),
        sa.Index("idx_archon_tasks_assignee", "assignee", **mysql_prefix("assignee")),
        sa.Index("idx_archon_tasks_order", "task_order"),
        sa.Index("idx_archon_tasks_priority", "priority"),
        sa.Index("idx_archon_tasks_archived", "archived"),
        sa.Index("idx_archon_tasks_archived_at", "archived_at"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = _uuid_pk()
    project_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey(_PROJECT_FK, ondelete="CASCADE")),
    )
    parent_task_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("archon_tasks.id", ondelete="CASCADE")),
    )
    title: str = Field(sa_column=sa.Column(LongText, nullable=False))
    description: str | None = Field(default="", sa_type=LongText)
    status: TaskStatus | None = Field(
        default=TaskStatus.TODO, sa_type=enum_type(TaskStatus, "task_status")
    )
    assignee: str | None = Field(default="User", sa_type=LongText)
    task_order: int | None = Field(default=0)
    priority: TaskPriority = Field(
        default=TaskPriority.MEDIUM,
        sa_column=sa.Column(enum_type(TaskPriority, "task_priority"), nullable=False),
    )
    feature: str | None = Field(default=None, sa_type=LongText)
    sources: list[Any] | None = _json_list()
    code_examples: list[Any] | None = _json_list()
    archived: bool | None = Field(default=False)
    archived_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    archived_by: str | None = Field(default=None, sa_type=LongText)
    created_at: datetime | None = _timestamp()
    updated_at: datetime | None = _timestamp()


class ProjectSource(ArchonModel, table=True):
    """A knowledge source linked to a project (``archon_project_sources``)."""

    __tablename__ = "archon_project_sources"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "source_id"),
        sa.Index("idx_archon_project_sources_project_id", "project_id"),
        sa.Index("idx_archon_project_sources_source_id", "source_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = _uuid_pk()
    project_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey(_PROJECT_FK, ondelete="CASCADE")),
    )
    # No foreign key, as in Archon: a link may outlive its source.
    source_id: str = Field(sa_column=sa.Column(keyed_text(255), nullable=False))
    linked_at: datetime | None = _timestamp()
    created_by: str | None = Field(default="system", sa_type=LongText)
    notes: str | None = Field(default=None, sa_type=LongText)


class DocumentVersion(ArchonModel, table=True):
    """A snapshot of one JSON field of a project (``archon_document_versions``)."""

    __tablename__ = "archon_document_versions"
    __table_args__ = (
        sa.CheckConstraint(
            "(project_id IS NOT NULL AND task_id IS NULL) OR "
            "(project_id IS NULL AND task_id IS NOT NULL)",
            # Archon's own name, kept verbatim (conv() bypasses the naming convention).
            name=conv("chk_project_or_task"),
        ),
        sa.UniqueConstraint(
            "project_id",
            "task_id",
            "field_name",
            "version_number",
            name="archon_document_versions_project_id_task_id_field_name_vers_key",
        ),
        sa.Index("idx_archon_document_versions_project_id", "project_id"),
        sa.Index("idx_archon_document_versions_task_id", "task_id"),
        sa.Index("idx_archon_document_versions_field_name", "field_name"),
        sa.Index("idx_archon_document_versions_version_number", "version_number"),
        sa.Index("idx_archon_document_versions_created_at", "created_at"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = _uuid_pk()
    project_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey(_PROJECT_FK, ondelete="CASCADE")),
    )
    task_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("archon_tasks.id", ondelete="CASCADE")),
    )
    field_name: str = Field(sa_column=sa.Column(keyed_text(64), nullable=False))
    version_number: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    content: Any = Field(sa_column=sa.Column(JSONType, nullable=False))
    change_summary: str | None = Field(default=None, sa_type=LongText)
    change_type: str | None = Field(default="update", sa_type=LongText)
    document_id: str | None = Field(default=None, sa_type=LongText)
    created_by: str | None = Field(default="system", sa_type=LongText)
    created_at: datetime | None = _timestamp()
