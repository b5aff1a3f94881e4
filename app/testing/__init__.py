"""Test helpers for code that uses the data layer: factories for every entity and savers.

``from app.testing import SourceFactory, CrawledPageFactory, save`` then, in an async test,
``source = await create(uow, SourceFactory)`` and
``await save(uow, *CrawledPageFactory.build_batch(3, source=source))``. Needs ``factory-boy``.
"""

from app.testing.factories import (
    CodeExampleFactory,
    CrawledPageFactory,
    DocumentVersionFactory,
    PageMetadataFactory,
    ProjectFactory,
    ProjectSourceFactory,
    PromptFactory,
    SettingFactory,
    SourceFactory,
    TaskFactory,
    create,
    create_batch,
    save,
    source_id_for,
)
from app.testing.work_order_factories import (
    AgentWorkOrderFactory,
    AgentWorkOrderStepFactory,
    ConfiguredRepositoryFactory,
    MigrationRecordFactory,
)

__all__ = [
    "AgentWorkOrderFactory",
    "AgentWorkOrderStepFactory",
    "CodeExampleFactory",
    "ConfiguredRepositoryFactory",
    "CrawledPageFactory",
    "DocumentVersionFactory",
    "MigrationRecordFactory",
    "PageMetadataFactory",
    "ProjectFactory",
    "ProjectSourceFactory",
    "PromptFactory",
    "SettingFactory",
    "SourceFactory",
    "TaskFactory",
    "create",
    "create_batch",
    "save",
    "source_id_for",
]
