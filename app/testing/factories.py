"""factory-boy factories for every Archon entity, and async helpers that save what they build.

Factories *build* valid, realistic entities (nothing touches a database); ``save`` and
``create`` write them through a Unit of Work's repositories and flush. Children take their
parent as a parameter, e.g. ``CrawledPageFactory.build(source=source)``; without one they
get a fresh parent id, so save the parent first (``save`` orders its arguments by foreign
keys, parents before children). Needs the ``factory-boy`` package (a test dependency).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any

import factory

from app.domain import (
    AgentWorkOrder,
    AgentWorkOrderStep,
    CodeExample,
    ConfiguredRepository,
    CrawledPage,
    DocumentVersion,
    MigrationRecord,
    PageMetadata,
    Project,
    ProjectSource,
    Prompt,
    Setting,
    Source,
    Task,
    TaskPriority,
    TaskStatus,
)

KNOWLEDGE_TYPES = ("technical", "business")


def source_id_for(url: str) -> str:
    """Archon's source id: the first 16 hex digits of the SHA-256 of the URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _parent_id(parent: Any, attr: str, fallback: Any) -> Any:
    return getattr(parent, attr) if parent is not None else fallback()


class SourceFactory(factory.Factory):
    class Meta:
        model = Source

    source_url = factory.Sequence(lambda n: f"https://docs{n}.example.com/")
    source_id = factory.LazyAttribute(lambda o: source_id_for(o.source_url))
    source_display_name = factory.Faker("company")
    title = factory.LazyAttribute(lambda o: f"{o.source_display_name} documentation")
    summary = factory.Faker("paragraph", nb_sentences=2)
    total_word_count = factory.Faker("pyint", min_value=0, max_value=200_000)
    metadata_ = factory.LazyAttribute(
        lambda o: {
            "knowledge_type": KNOWLEDGE_TYPES[len(o.source_url) % 2],
            "tags": ["docs", "api"],
            "source_type": "url",
            "original_url": o.source_url,
            "update_frequency": 7,
        }
    )


class _ChunkFactory(factory.Factory):
    class Params:
        source = None

    source_id = factory.LazyAttribute(
        lambda o: _parent_id(o.source, "source_id", lambda: uuid.uuid4().hex[:16])
    )
    url = factory.Sequence(lambda n: f"https://docs.example.com/guide/page-{n}")
    chunk_number = factory.Sequence(lambda n: n % 50)
    content = factory.Faker("paragraph", nb_sentences=6)
    metadata_ = factory.LazyAttribute(
        lambda o: {
            "url": o.url,
            "source": o.source_id,
            "headers": "# Guide",
            "word_count": len(o.content.split()),
            "char_count": len(o.content),
            "chunk_index": o.chunk_number,
        }
    )
    embedding_model = "text-embedding-3-small"
    embedding_dimension = 1536
    llm_chat_model = "gpt-4o-mini"


class CrawledPageFactory(_ChunkFactory):
    class Meta:
        model = CrawledPage


class CodeExampleFactory(_ChunkFactory):
    class Meta:
        model = CodeExample

    content = factory.Faker(
        "random_element",
        elements=(
            "def add(a: int, b: int) -> int:\n    return a + b\n",
            "async def main() -> None:\n    await client.connect()\n",
            "SELECT id, url FROM archon_crawled_pages WHERE source_id = $1;\n",
        ),
    )
    summary = factory.Faker("sentence")


class PageMetadataFactory(factory.Factory):
    class Meta:
        model = PageMetadata

    class Params:
        source = None

    source_id = factory.LazyAttribute(
        lambda o: _parent_id(o.source, "source_id", lambda: uuid.uuid4().hex[:16])
    )
    url = factory.Sequence(lambda n: f"https://docs.example.com/reference/{n}")
    full_content = factory.Faker("text", max_nb_chars=2000)
    section_title = factory.Faker("sentence", nb_words=3)
    section_order = factory.Sequence(lambda n: n)
    word_count = factory.LazyAttribute(lambda o: len(o.full_content.split()))
    char_count = factory.LazyAttribute(lambda o: len(o.full_content))
    chunk_count = 3
    metadata_ = factory.LazyFunction(lambda: {"crawl_type": "sitemap"})


class ProjectFactory(factory.Factory):
    class Meta:
        model = Project

    title = factory.Faker("catch_phrase")
    description = factory.Faker("paragraph")
    docs = factory.LazyFunction(lambda: [{"id": str(uuid.uuid4()), "title": "PRD", "blocks": []}])
    features = factory.LazyFunction(lambda: [{"name": "search", "status": "planned"}])
    data = factory.LazyFunction(list)
    github_repo = factory.Sequence(lambda n: f"https://github.com/example/project-{n}")
    pinned = False


class TaskFactory(factory.Factory):
    class Meta:
        model = Task

    class Params:
        project = None

    project_id = factory.LazyAttribute(lambda o: _parent_id(o.project, "id", lambda: None))
    title = factory.Faker("sentence", nb_words=5)
    description = factory.Faker("paragraph")
    status = factory.Iterator(list(TaskStatus))
    assignee = factory.Iterator(["User", "Archon", "AI IDE Agent"])
    task_order = factory.Sequence(lambda n: n)
    priority = factory.Iterator(list(TaskPriority))
    feature = factory.Faker("word")
    sources = factory.LazyFunction(lambda: [{"url": "https://docs.example.com", "type": "doc"}])
    code_examples = factory.LazyFunction(list)


class ProjectSourceFactory(factory.Factory):
    class Meta:
        model = ProjectSource

    class Params:
        project = None
        source = None

    project_id = factory.LazyAttribute(lambda o: _parent_id(o.project, "id", lambda: None))
    source_id = factory.LazyAttribute(
        lambda o: _parent_id(o.source, "source_id", lambda: uuid.uuid4().hex[:16])
    )
    created_by = "system"
    notes = factory.Iterator(KNOWLEDGE_TYPES)


class DocumentVersionFactory(factory.Factory):
    """Needs a project (``project=`` or ``project_id=``): the table requires one."""

    class Meta:
        model = DocumentVersion

    class Params:
        project = None

    project_id = factory.LazyAttribute(lambda o: _parent_id(o.project, "id", uuid.uuid4))
    field_name = factory.Iterator(["docs", "features", "data", "prd"])
    version_number = factory.Sequence(lambda n: n + 1)
    content = factory.LazyFunction(lambda: [{"title": "Overview", "body": "First draft"}])
    change_summary = factory.Faker("sentence")
    change_type = "update"
    created_by = "system"


class SettingFactory(factory.Factory):
    class Meta:
        model = Setting

    key = factory.Sequence(lambda n: f"SETTING_{n}")
    value = factory.Faker("word")
    is_encrypted = False
    category = factory.Iterator(["rag_strategy", "features", "api_keys", "server_config"])
    description = factory.Faker("sentence")


class PromptFactory(factory.Factory):
    class Meta:
        model = Prompt

    prompt_name = factory.Sequence(lambda n: f"prompt_{n}")
    prompt = factory.Faker("paragraph", nb_sentences=4)
    description = factory.Faker("sentence")


# The Unit of Work attribute holding each entity's repository.
REPOSITORY_OF: dict[type[Any], str] = {
    MigrationRecord: "migrations",
    ConfiguredRepository: "configured_repositories",
    AgentWorkOrder: "work_orders",
    AgentWorkOrderStep: "work_order_steps",
    Source: "sources",
    CrawledPage: "pages",
    CodeExample: "code_examples",
    PageMetadata: "page_metadata",
    Project: "projects",
    Task: "tasks",
    ProjectSource: "project_sources",
    DocumentVersion: "document_versions",
    Setting: "settings",
    Prompt: "prompts",
}
# Parents before children: the order foreign keys need.
_SAVE_ORDER = [Source, PageMetadata, CrawledPage, CodeExample, Project, Task]
_SAVE_ORDER += [ProjectSource, DocumentVersion, Setting, Prompt, MigrationRecord]
_SAVE_ORDER += [ConfiguredRepository, AgentWorkOrder, AgentWorkOrderStep]


def _entities(items: Iterable[Any]) -> list[Any]:
    out = []
    for item in items:
        is_factory = isinstance(item, type) and issubclass(item, factory.Factory)
        out.append(item.build() if is_factory else item)
    return out


async def save(uow: Any, *items: Any) -> list[Any]:
    """Add entities (or a factory class: one entity it builds) through ``uow``'s repositories.

    Parents are written before children whatever the argument order; returns the entities in
    argument order, with generated ids set. Flushes; committing stays the caller's choice.
    """
    entities = _entities(items)
    for model in _SAVE_ORDER:
        group = [e for e in entities if type(e) is model]
        if group:
            await getattr(uow, REPOSITORY_OF[model]).add_many(group)
    unknown = [e for e in entities if type(e) not in REPOSITORY_OF]
    if unknown:
        raise TypeError(f"save() knows no repository for {type(unknown[0]).__name__}")
    return entities


async def create(uow: Any, factory_class: type[factory.Factory], **fields: Any) -> Any:
    """Build one entity with ``factory_class(**fields)`` and save it."""
    (entity,) = await save(uow, factory_class.build(**fields))
    return entity


async def create_batch(
    uow: Any, factory_class: type[factory.Factory], size: int, **fields: Any
) -> list[Any]:
    """Build ``size`` entities and save them in one ``add_many``."""
    return await save(uow, *factory_class.build_batch(size, **fields))
