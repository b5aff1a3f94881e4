"""Typed Archon entities. Importing this package loads no database driver and no vector SDK."""

from app.domain.base import ArchonModel, metadata
from app.domain.enums import TaskPriority, TaskStatus
from app.domain.knowledge import CodeExample, CrawledPage, PageMetadata, Source
from app.domain.projects import DocumentVersion, Project, ProjectSource, Task
from app.domain.settings import MigrationRecord, Prompt, Setting
from app.domain.work_orders import AgentWorkOrder, AgentWorkOrderStep, ConfiguredRepository

__all__ = [
    "AgentWorkOrder",
    "AgentWorkOrderStep",
    "ArchonModel",
    "CodeExample",
    "ConfiguredRepository",
    "CrawledPage",
    "DocumentVersion",
    "MigrationRecord",
    "PageMetadata",
    "Project",
    "ProjectSource",
    "Prompt",
    "Setting",
    "Source",
    "Task",
    "TaskPriority",
    "TaskStatus",
    "metadata",
]
