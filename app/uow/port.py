"""The UnitOfWork port."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from app.repositories.audit_log import AuditLog
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
        TaskRepository,
    )


class UnitOfWork(Protocol):
    """One transaction over every repository (and, where it can, the vector index).

    ``async with uow:`` opens it; ``await uow.commit()`` makes its writes durable; leaving the block
    without committing rolls everything back, and the session is always closed. Repositories flush
    but never commit. A Unit of Work must not be shared between concurrent tasks.

    A repository write that fails in the database (``ConflictError``, a rejected value, a lost
    race) ends the transaction: on PostgreSQL a failed statement aborts it, and every backend
    behaves the same. Every later call, and ``commit()``, then raises ``DataLayerError`` naming
    ``uow.savepoint()``; ``rollback()`` starts over. To go on after a write that may fail, run it
    inside ``async with uow.savepoint():``, whose failure undoes only what it wrapped. (Writes are
    sent without a savepoint of their own, which would cost two round trips each; a call that
    sends several statements, such as a multi-batch ``add_many``, is all-or-nothing either way.)

    ``read_only=True`` may be served by a read replica or by connections that run each statement
    in its own read-only transaction (no BEGIN/ROLLBACK round trips): reads see what was
    committed when each one ran, as under PostgreSQL's default READ COMMITTED. Ask for an
    ``isolation_level="REPEATABLE READ"`` to read from one snapshot. A replica may trail the
    primary; for ``DATABASE_READ_YOUR_WRITES_SECONDS`` after a commit through the same layer,
    reads go to the primary (``app.replicas``).

    With ``ENABLE_AUDIT_LOG``, every write records who (the ``actor`` the Unit of Work was opened
    with), what (table, operation, ids, names of the columns written) and when, in
    ``archon_audit_log``, written with the commit: a rollback leaves no entry. ``audit`` reads it.
    """

    sources: SourceRepository
    pages: CrawledPageRepository
    code_examples: CodeExampleRepository
    page_metadata: PageMetadataRepository
    projects: ProjectRepository
    tasks: TaskRepository
    project_sources: ProjectSourceRepository
    document_versions: DocumentVersionRepository
    settings: SettingRepository
    prompts: PromptRepository
    migrations: MigrationRecordRepository
    configured_repositories: ConfiguredRepositoryRepository
    work_orders: AgentWorkOrderRepository
    work_order_steps: AgentWorkOrderStepRepository
    audit: AuditLog
    vectors: Any

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None:
        """Flush and commit; on ``ConflictError``/``InvalidInputError`` all is rolled back."""
        ...

    async def rollback(self) -> None:
        """Discard everything written since the transaction began."""
        ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested transaction: an exception inside rolls back only the nested work."""
        ...


class UnitsOfWork(Protocol):
    """What ingestion and search need of the data layer: its Units of Work, engines and index."""

    vector_index: Any
    engine: Any
    read_engines: list[Any]

    def uow(
        self,
        *,
        read_only: bool = False,
        isolation_level: str | None = None,
        actor: str | None = None,
    ) -> Any:
        """A new Unit of Work; ``read_only`` ones may be served by a read replica; ``actor``
        is who the audit log names for its writes."""
        ...
