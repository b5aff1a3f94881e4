"""Entity-specific repository ports: what Archon's services may ask of each table.

Every port extends the generic ``Repository[T]`` (add, get, list, update, upsert_many, delete, ...).
Rules shared by all of them: inputs are validated before any SQL runs (``InvalidInputError``);
drivers' errors arrive translated (``ConflictError``, ``RetryableError``, ...); methods flush but
never commit, so nothing is durable until the Unit of Work commits; ``update`` stamps
``updated_at`` on entities that have it, because Archon has no trigger for every table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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
    TaskStatus,
)
from app.repositories.base import Repository

Filters = Mapping[str, Any]
OrderBy = Sequence[str]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SourceSummary:
    """A source with how many chunks and code examples it holds."""

    source: Source
    page_count: int
    code_example_count: int


class SourceRepository(Repository[Source], Protocol):
    """``archon_sources``: one crawled site or uploaded document, keyed by ``source_id``."""

    async def delete_with_content(self, source_id: str) -> int:
        """Delete the source and everything cut from it; return how many rows were removed.

        Code examples, crawled pages and page metadata are deleted explicitly, children first, so
        this works on databases whose foreign keys lack ``ON DELETE CASCADE`` (Archon's early
        schema). Project links (``archon_project_sources``) are kept: they may outlive a source.
        Raises ``NotFoundError`` when there is no such source.
        """
        ...

    async def list_with_counts(
        self,
        filters: Filters | None = None,
        order_by: OrderBy | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[SourceSummary]:
        """Sources matching ``filters`` with their page and code-example counts, in ONE query.

        ``filters``/``order_by`` are those of ``list`` over the source's own fields. Counts of
        sources without content are 0.
        """
        ...

    async def touch(self, source_id: str) -> None:
        """Set ``updated_at`` to now (a crawl refreshed the source). ``NotFoundError`` if absent."""
        ...


class _ChunkRepository(Repository[T], Protocol):
    """Shared by crawled pages and code examples: chunks keyed by ``(url, chunk_number)``."""

    async def delete_by_urls(self, urls: Iterable[str]) -> int:
        """Delete every chunk of these URLs (any number of them); return how many rows went."""
        ...

    async def list_by_source(
        self, source_id: str, *, limit: int | None = None, offset: int | None = None
    ) -> list[T]:
        """The chunks of one source ordered by ``(url, chunk_number)``."""
        ...

    async def get_by_url_chunk(self, url: str, chunk_number: int) -> T | None:
        """The chunk at ``(url, chunk_number)`` (unique across sources), or ``None``."""
        ...

    async def count_by_source(self, source_ids: Iterable[str]) -> dict[str, int]:
        """How many chunks each source holds (one grouped query); absent sources count 0."""
        ...

    async def count_urls_by_source(self, source_ids: Iterable[str]) -> dict[str, int]:
        """How many distinct URLs (documents) each source holds; absent sources count 0."""
        ...


class CrawledPageRepository(_ChunkRepository[CrawledPage], Protocol):
    """``archon_crawled_pages``: document chunks. Embeddings belong to the vector index."""


class CodeExampleRepository(_ChunkRepository[CodeExample], Protocol):
    """``archon_code_examples``: extracted code blocks with their summaries."""


class PageMetadataRepository(Repository[PageMetadata], Protocol):
    """``archon_page_metadata``: whole crawled pages, unique by ``url``."""

    async def get_by_url(self, url: str) -> PageMetadata | None:
        """The page with this URL, or ``None``."""
        ...

    async def list_by_source(self, source_id: str) -> list[PageMetadata]:
        """The pages of one source ordered by ``(section_order, url)``."""
        ...


class ProjectRepository(Repository[Project], Protocol):
    """``archon_projects``."""

    async def list_pinned(self) -> list[Project]:
        """Pinned projects, most recently updated first."""
        ...


class TaskRepository(Repository[Task], Protocol):
    """``archon_tasks``: ordered within (project, status) by ``task_order``; archived softly."""

    async def list_for_project(
        self,
        project_id: uuid.UUID,
        *,
        include_archived: bool = False,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        order_by: OrderBy = ("task_order",),
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Task]:
        """Tasks of a project; archived ones only with ``include_archived``.

        ``status`` is one status or several. ``order_by`` as in ``list`` (``"-created_at"``).
        """
        ...

    async def archive(self, task_id: uuid.UUID, *, archived_by: str = "system") -> int:
        """Archive the task and all its subtasks (at any depth); return how many rows changed.

        Sets ``archived``, ``archived_at``, ``archived_by`` and ``updated_at``. A task that is
        already archived gives 0 and changes nothing. ``NotFoundError`` if there is no such task.
        """
        ...

    async def move(
        self, task_id: uuid.UUID, position: int, *, status: TaskStatus | None = None
    ) -> Task:
        """Put the task at ``task_order == position`` within (project, ``status``); return it.

        ``status`` defaults to the task's own (a move across columns otherwise). Tasks of the
        target column at or after ``position`` move down one, and the tasks after the place the
        task leaves move up one, in one UPDATE statement, so orders that were 0..n-1 stay a
        permutation of 0..n-1; a position past the end puts the task last. Archived tasks are
        not renumbered. The project row is locked
        first (``SELECT ... FOR UPDATE``; SQLite writers are serialized already), so concurrent
        moves in one project never lose an update (at the default isolation level, as for
        ``DocumentVersionRepository.create_next``).
        Raises ``NotFoundError`` (no task), ``InvalidInputError`` (negative position, archived
        task).
        """
        ...


class ProjectSourceRepository(Repository[ProjectSource], Protocol):
    """``archon_project_sources``: knowledge sources linked to projects (no FK to the source)."""

    async def link(
        self,
        project_id: uuid.UUID,
        source_id: str,
        *,
        notes: str | None = None,
        created_by: str = "system",
    ) -> ProjectSource:
        """Link a source to a project and return the link; linking again returns the existing one.

        Idempotent through the database's own insert-or-ignore on (project_id, source_id), so
        concurrent links never duplicate. ``ConflictError`` if the project is missing.
        """
        ...

    async def unlink(self, project_id: uuid.UUID, source_id: str) -> bool:
        """Remove the link; ``False`` if there was none."""
        ...

    async def source_ids(self, project_id: uuid.UUID, *, notes: str | None = None) -> list[str]:
        """The source ids linked to a project (only those with these ``notes``, if given)."""
        ...


class DocumentVersionRepository(Repository[DocumentVersion], Protocol):
    """``archon_document_versions``: numbered snapshots of a project's JSON fields."""

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
        """Store the next version of (project, field): ``version_number`` = max + 1, from 1.

        The project row is locked (``FOR UPDATE``) before the max is read, so concurrent writers
        get distinct, gapless numbers: Archon's unique key cannot protect them because its
        ``task_id`` is NULL. This holds at the default isolation level (READ COMMITTED on
        PostgreSQL; any level on MySQL, whose locking reads see the latest rows; SQLite always),
        not in a PostgreSQL REPEATABLE READ transaction, whose snapshot predates the lock.
        ``NotFoundError`` if the project does not exist.
        """
        ...

    async def latest(self, project_id: uuid.UUID, field_name: str) -> DocumentVersion | None:
        """The highest-numbered version of (project, field), or ``None``."""
        ...

    async def list_for(
        self, project_id: uuid.UUID, field_name: str | None = None
    ) -> list[DocumentVersion]:
        """Versions of a project (of one field, if given), by field then newest first."""
        ...


class SettingRepository(Repository[Setting], Protocol):
    """``archon_settings``: configuration values and encrypted credentials, unique by ``key``.

    Encrypted rows hold ``encrypted_value`` (Archon's format, see ``app.crypto``) and a NULL
    ``value``; plain rows the reverse. Reading an encrypted row with the wrong key raises
    ``DataLayerError`` naming the setting, never its value.
    """

    async def get_value(self, key: str) -> str | None:
        """The value of ``key``, decrypted if encrypted; ``None`` when the key is absent."""
        ...

    async def set_value(
        self,
        key: str,
        value: str,
        *,
        encrypt: bool = False,
        category: str | None = None,
        description: str | None = None,
    ) -> Setting:
        """Insert or replace ``key`` in one native upsert and return the stored row.

        ``category``/``description`` left as ``None`` keep what the row had.
        """
        ...

    async def get_by_category(self, category: str) -> dict[str, str | None]:
        """Every setting of ``category`` as key -> value, decrypted."""
        ...


class PromptRepository(Repository[Prompt], Protocol):
    """``archon_prompts``: named system prompts."""

    async def get_by_name(self, name: str) -> Prompt | None:
        """The prompt called ``name``, or ``None``."""
        ...


class MigrationRecordRepository(Repository[MigrationRecord], Protocol):
    """``archon_migrations``: Archon's upgrade scripts recorded as applied, unique by
    ``(version, migration_name)``.

    Archon's migration page lists as pending every ``migration/<version>/<name>.sql`` without a
    row of that version and name (checksums are not compared).
    """

    async def applied(self) -> list[MigrationRecord]:
        """Every recorded upgrade, most recently applied first."""
        ...

    async def pending(self, available: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The ``(version, migration_name)`` pairs of ``available`` that have no row, in order."""
        ...

    async def record(self, version: str, migration_name: str, checksum: str | None = None) -> bool:
        """Record an upgrade unless it is recorded already (the row is then left as it is);
        whether a row was added."""
        ...


class ConfiguredRepositoryRepository(Repository[ConfiguredRepository], Protocol):
    """``archon_configured_repositories``: GitHub repositories set up for agent work orders,
    unique by ``repository_url``.

    Writes check, before any SQL, that ``repository_url`` is https://github.com/<owner>/<name>
    and ``default_sandbox_type`` one of Archon's (``InvalidInputError`` otherwise).
    """

    async def get_by_url(self, repository_url: str) -> ConfiguredRepository | None:
        """The repository configured for ``repository_url``, or ``None``."""
        ...


class AgentWorkOrderRepository(Repository[AgentWorkOrder], Protocol):
    """``archon_agent_work_orders``: work order state keyed by the service's TEXT id.

    ``status`` is one of pending, running, completed, failed, checked before any SQL; fields
    rarely queried live in the JSON ``metadata`` (``metadata_`` on the entity).
    """

    async def list_by_status(self, status: str | None = None) -> list[AgentWorkOrder]:
        """Work orders (of one ``status``, if given), newest first."""
        ...

    async def set_status(self, work_order_id: str, status: str, **metadata: Any) -> AgentWorkOrder:
        """Set ``status`` and merge ``metadata`` into the stored metadata (the row is locked
        while read, so concurrent merges keep each other's keys); ``NotFoundError`` when absent."""
        ...


class AgentWorkOrderStepRepository(Repository[AgentWorkOrderStep], Protocol):
    """``archon_agent_work_order_steps``: the executed steps of a work order, deleted with it."""

    async def history(self, work_order_id: str) -> list[AgentWorkOrderStep]:
        """The steps of a work order by ``step_order``."""
        ...

    async def replace_history(
        self, work_order_id: str, steps: Iterable[AgentWorkOrderStep]
    ) -> list[AgentWorkOrderStep]:
        """Replace the work order's steps with ``steps`` numbered 0, 1, ... in the order given,
        all or nothing; returns them as stored."""
        ...


__all__ = [
    "AgentWorkOrderRepository",
    "AgentWorkOrderStepRepository",
    "CodeExampleRepository",
    "ConfiguredRepositoryRepository",
    "CrawledPageRepository",
    "DocumentVersionRepository",
    "MigrationRecordRepository",
    "PageMetadataRepository",
    "ProjectRepository",
    "ProjectSourceRepository",
    "PromptRepository",
    "SettingRepository",
    "SourceRepository",
    "SourceSummary",
    "TaskRepository",
]
