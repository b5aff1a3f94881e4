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
    AgentWorkOrderRepository,
    AgentWorkOrderStepRepository,
    CodeExampleRepository,
    ConfiguredRepositoryRepository,
    CrawledPageRepository,
    DocumentVersionRepository,
    MigrationRecordRepository,
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
from app.repositories.settings import (
    SqlAlchemyMigrationRecordRepository,
    SqlAlchemyPromptRepository,
    SqlAlchemySettingRepository,
)
from app.repositories.tasks import SqlAlchemyTaskRepository
from app.repositories.work_orders import (
    SqlAlchemyAgentWorkOrderRepository,
    SqlAlchemyAgentWorkOrderStepRepository,
    SqlAlchemyConfiguredRepositoryRepository,
)

__all__ = [
    "AgentWorkOrderRepository",
    "AgentWorkOrderStepRepository",
    "AuditLog",
    "CodeExampleRepository",
    "ConfiguredRepositoryRepository",
    "CrawledPageRepository",
    "DocumentVersionRepository",
    "MigrationRecordRepository",
    "Page",
    "PageMetadataRepository",
    "ProjectRepository",
    "ProjectSourceRepository",
    "PromptRepository",
    "Repository",
    "SettingRepository",
    "SourceRepository",
    "SourceSummary",
    "SqlAlchemyAgentWorkOrderRepository",
    "SqlAlchemyAgentWorkOrderStepRepository",
    "SqlAlchemyAuditRepository",
    "SqlAlchemyCodeExampleRepository",
    "SqlAlchemyConfiguredRepositoryRepository",
    "SqlAlchemyCrawledPageRepository",
    "SqlAlchemyDocumentVersionRepository",
    "SqlAlchemyMigrationRecordRepository",
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
