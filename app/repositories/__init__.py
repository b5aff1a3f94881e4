"""Repositories: the ports services depend on and their SQLAlchemy adapters."""

from app.repositories.audit_log import AuditLog, SqlAlchemyAuditRepository
from app.repositories.base import Repository, SqlAlchemyRepository
from app.repositories.knowledge import (
    SqlAlchemyCodeExampleRepository,
    SqlAlchemyCrawledPageRepository,
    SqlAlchemyPageMetadataRepository,
    SqlAlchemySourceRepository,
)
from app.repositories.paging import Page
from app.repositories.ports import (
    CodeExampleRepository,
    CrawledPageRepository,
    DocumentVersionRepository,
    PageMetadataRepository,
    ProjectRepository,
    ProjectSourceRepository,
    PromptRepository,
    SettingRepository,
    SourceRepository,
    SourceSummary,
    TaskRepository,
)
from app.repositories.projects import (
    SqlAlchemyDocumentVersionRepository,
    SqlAlchemyProjectRepository,
    SqlAlchemyProjectSourceRepository,
)
from app.repositories.settings import SqlAlchemyPromptRepository, SqlAlchemySettingRepository
from app.repositories.tasks import SqlAlchemyTaskRepository

__all__ = [
    "AuditLog",
    "CodeExampleRepository",
    "CrawledPageRepository",
    "DocumentVersionRepository",
    "Page",
    "PageMetadataRepository",
    "ProjectRepository",
    "ProjectSourceRepository",
    "PromptRepository",
    "Repository",
    "SettingRepository",
    "SourceRepository",
    "SourceSummary",
    "SqlAlchemyAuditRepository",
    "SqlAlchemyCodeExampleRepository",
    "SqlAlchemyCrawledPageRepository",
    "SqlAlchemyDocumentVersionRepository",
    "SqlAlchemyPageMetadataRepository",
    "SqlAlchemyProjectRepository",
    "SqlAlchemyProjectSourceRepository",
    "SqlAlchemyPromptRepository",
    "SqlAlchemyRepository",
    "SqlAlchemySettingRepository",
    "SqlAlchemySourceRepository",
    "SqlAlchemyTaskRepository",
    "TaskRepository",
]
