"""SqlAlchemyUnitOfWork: the UnitOfWork port over one ``AsyncSession``."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.util import greenlet_spawn

from app.engines import AUTOCOMMIT
from app.errors import (
    DataLayerError,
    InvalidInputError,
    RetryableError,
    UnsupportedFeatureError,
    translate_errors,
)
from app.repositories.audit import AUDIT, AuditRecorder, check_actor, forget, forget_since, mark
from app.repositories.audit import write_entries as write_audit_entries
from app.repositories.lease import LEASE, Lease, LeasingSession, connected
from app.repositories.state import FAILED, ROWS_CHANGED, check_usable, failed_message
from app.uow.principal import run_as

if TYPE_CHECKING:
    from app.crypto import CredentialCipher
    from app.repositories import (
        SqlAlchemyAgentWorkOrderRepository,
        SqlAlchemyAgentWorkOrderStepRepository,
        SqlAlchemyAuditRepository,
        SqlAlchemyCodeExampleRepository,
        SqlAlchemyConfiguredRepositoryRepository,
        SqlAlchemyCrawledPageRepository,
        SqlAlchemyDocumentVersionRepository,
        SqlAlchemyMigrationRecordRepository,
        SqlAlchemyPageMetadataRepository,
        SqlAlchemyProjectRepository,
        SqlAlchemyProjectSourceRepository,
        SqlAlchemyPromptRepository,
        SqlAlchemySettingRepository,
        SqlAlchemySourceRepository,
        SqlAlchemyTaskRepository,
    )
    from app.security import Principal

log = logging.getLogger(__name__)
T = TypeVar("T")
ISOLATION_LEVELS = frozenset(
    {"READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"}
)
AfterCommit = Callable[[], Awaitable[None]]


class SqlAlchemyUnitOfWork:
    """One ``AsyncSession`` and its transaction; repositories are created on first use.

    The transaction's connection is taken by its first statement: by the session, or by the
    lease when that statement runs on the driver path (``app.repositories.lease``), in which
    case the session joins the leased connection if it needs one later.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        read_only: bool = False,
        isolation_level: str | None = None,
        cipher: CredentialCipher | None = None,
        vector_binder: Callable[[SqlAlchemyUnitOfWork], Any] | None = None,
        choose: Callable[[], Awaitable[async_sessionmaker[AsyncSession]]] | None = None,
        on_commit: Callable[[], None] | None = None,
        actor: str | None = None,
        audit: bool = False,
        principal: Principal | None = None,
    ) -> None:
        """``choose`` picks the sessionmaker when the Unit of Work opens (a healthy read
        replica); ``on_commit`` is told of each commit (reads then follow the writes)."""
        if isolation_level is not None and isolation_level.upper() not in ISOLATION_LEVELS:
            raise InvalidInputError(
                f"unknown isolation level {isolation_level!r}; "
                f"use one of {sorted(ISOLATION_LEVELS)}"
            )
        self._sessionmaker = sessionmaker
        self.read_only = read_only
        self.isolation_level = isolation_level.upper() if isolation_level else None
        self._cipher = cipher
        self._vector_binder = vector_binder
        self._choose = choose
        self._on_commit = on_commit
        self.principal = principal
        self._session: AsyncSession | None = None
        self._after_commit: list[AfterCommit] = []
        self.actor = check_actor(actor)
        self._audit = audit and not read_only

    @property
    def session(self) -> AsyncSession:
        """The open session; only inside ``async with``."""
        if self._session is None:
            raise DataLayerError(
                "the Unit of Work is not open: use `async with layer.uow() as uow`"
            )
        return self._session

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise DataLayerError("this Unit of Work is open already; open another with layer.uow()")
        if self._choose is not None:
            self._sessionmaker = await self._choose()
        self._session = session = self._sessionmaker()
        if self._audit:  # the writes are recorded, and written with the commit
            session.info[AUDIT] = AuditRecorder(self.actor)
        bind = session.get_bind()
        # A read-only Unit of Work on an autocommit reader sends no BEGIN/ROLLBACK at all.
        autocommit = self.read_only and not self.isolation_level and _is_autocommit(bind)
        options: dict[str, Any] = {}
        if self.isolation_level:
            options["isolation_level"] = self.isolation_level
        elif autocommit and self.principal is not None:
            # The role and claims last as long as a transaction: a reader gets one.
            autocommit, options["isolation_level"] = False, "READ COMMITTED"
        if self.read_only and bind.dialect.name == "postgresql" and not autocommit:
            options["postgresql_readonly"] = True
        if self.principal is not None:
            # Every transaction of the session begins as the principal; no lease, whose
            # connection would begin without the session.
            run_as(session, self.principal)
        if options:
            with translate_errors("opening the transaction"):
                await session.connection(execution_options=options)
        elif self.principal is None and isinstance(session.sync_session, LeasingSession):
            # Statements on the driver path may take the connection without the session.
            session.info[LEASE] = Lease(session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        self._after_commit.clear()
        # Repositories and the vector view hold the session: a reopened Unit of Work makes new ones.
        for name in _made_on_use(type(self)):
            self.__dict__.pop(name, None)
        if session is None:
            return
        try:
            await _close(session)
        except Exception as closing:
            # The connection died (a server restart, a packet too large...): it is dropped from
            # the pool, and the error that ended the block, if any, is the one that goes on.
            await _invalidate(session)
            if exc is not None:
                log.debug("closing the Unit of Work after %r failed too: %s", exc, closing)
                return
            with translate_errors("closing the Unit of Work"):
                raise closing

    async def commit(self) -> None:
        """Flush and commit, then run the after-commit work (e.g. applying the vector outbox)."""
        if self.read_only:
            raise UnsupportedFeatureError(
                "a read-only Unit of Work cannot commit; open layer.uow()"
            )
        session = self.session
        failed = session.info.get(FAILED)
        if failed is not None:
            await self.rollback()
            raise DataLayerError(f"nothing was committed: {failed_message(failed)}")
        lease: Lease | None = session.info.get(LEASE)
        try:
            with translate_errors("commit"):
                await write_audit_entries(session)
                if lease is not None and lease.held:
                    await lease.commit()
                else:
                    await session.commit()
        except BaseException:
            await self._rolled_back(session)
            raise
        if self._on_commit is not None:
            self._on_commit()
        hooks, self._after_commit = self._after_commit, []
        deleted = session.info.pop(ROWS_CHANGED, False)
        for hook in hooks:
            await hook()
        if deleted and self._vector_binder is not None:
            # Rows went (a cascade, a repository, ingest): an external store drops their vectors.
            drain = getattr(self.vectors, "drain_queued", None)
            if drain is not None:
                await drain()

    async def rollback(self) -> None:
        """Discard the transaction's writes; the Unit of Work stays usable."""
        self._after_commit.clear()
        session = self.session
        session.info.pop(FAILED, None)
        session.info.pop(ROWS_CHANGED, None)
        forget(session)
        await self._rolled_back(session)

    @staticmethod
    async def _rolled_back(session: AsyncSession) -> None:
        lease: Lease | None = session.info.get(LEASE)
        if lease is not None and lease.held:
            await lease.rollback()
        else:
            await session.rollback()

    async def flush(self) -> None:
        """Send pending changes now (to see generated ids or constraint errors early)."""
        check_usable(self.session)
        with translate_errors("flush"):
            await self.session.flush()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Nested work: an exception inside rolls back only what was done inside."""
        check_usable(self.session)
        at = mark(self.session)
        try:
            with translate_errors("savepoint"):
                async with self.session.begin_nested():
                    yield
        except BaseException:
            forget_since(self.session, at)  # what the savepoint undid leaves no audit entry
            raise

    def after_commit(self, hook: AfterCommit) -> None:
        """Run ``hook`` once this transaction has committed (never after a rollback); a hook
        already waiting is not added twice."""
        if hook not in self._after_commit:
            self._after_commit.append(hook)

    @cached_property
    def vectors(self) -> Any:
        """The vector index, bound to this Unit of Work's transaction where it can be."""
        if self._vector_binder is None:
            raise UnsupportedFeatureError("no vector index is configured for this data layer")
        return self._vector_binder(self)

    @cached_property
    def sources(self) -> SqlAlchemySourceRepository:
        from app.repositories import SqlAlchemySourceRepository

        return SqlAlchemySourceRepository(self.session)

    @cached_property
    def pages(self) -> SqlAlchemyCrawledPageRepository:
        from app.repositories import SqlAlchemyCrawledPageRepository

        return SqlAlchemyCrawledPageRepository(self.session)

    @cached_property
    def code_examples(self) -> SqlAlchemyCodeExampleRepository:
        from app.repositories import SqlAlchemyCodeExampleRepository

        return SqlAlchemyCodeExampleRepository(self.session)

    @cached_property
    def page_metadata(self) -> SqlAlchemyPageMetadataRepository:
        from app.repositories import SqlAlchemyPageMetadataRepository

        return SqlAlchemyPageMetadataRepository(self.session)

    @cached_property
    def projects(self) -> SqlAlchemyProjectRepository:
        from app.repositories import SqlAlchemyProjectRepository

        return SqlAlchemyProjectRepository(self.session)

    @cached_property
    def tasks(self) -> SqlAlchemyTaskRepository:
        from app.repositories import SqlAlchemyTaskRepository

        return SqlAlchemyTaskRepository(self.session)

    @cached_property
    def project_sources(self) -> SqlAlchemyProjectSourceRepository:
        from app.repositories import SqlAlchemyProjectSourceRepository

        return SqlAlchemyProjectSourceRepository(self.session)

    @cached_property
    def document_versions(self) -> SqlAlchemyDocumentVersionRepository:
        from app.repositories import SqlAlchemyDocumentVersionRepository

        return SqlAlchemyDocumentVersionRepository(self.session)

    @cached_property
    def settings(self) -> SqlAlchemySettingRepository:
        from app.crypto import CredentialCipher
        from app.repositories import SqlAlchemySettingRepository

        return SqlAlchemySettingRepository(self.session, self._cipher or CredentialCipher.default())

    @cached_property
    def audit(self) -> SqlAlchemyAuditRepository:
        """The audit log, read-only (plus ``prune``): ``uow.audit.list(filters)``."""
        from app.repositories import SqlAlchemyAuditRepository

        return SqlAlchemyAuditRepository(self.session)

    @cached_property
    def prompts(self) -> SqlAlchemyPromptRepository:
        from app.repositories import SqlAlchemyPromptRepository

        return SqlAlchemyPromptRepository(self.session)

    @cached_property
    def migrations(self) -> SqlAlchemyMigrationRecordRepository:
        from app.repositories import SqlAlchemyMigrationRecordRepository

        return SqlAlchemyMigrationRecordRepository(self.session)

    @cached_property
    def configured_repositories(self) -> SqlAlchemyConfiguredRepositoryRepository:
        from app.repositories import SqlAlchemyConfiguredRepositoryRepository

        return SqlAlchemyConfiguredRepositoryRepository(self.session)

    @cached_property
    def work_orders(self) -> SqlAlchemyAgentWorkOrderRepository:
        from app.repositories import SqlAlchemyAgentWorkOrderRepository

        return SqlAlchemyAgentWorkOrderRepository(self.session)

    @cached_property
    def work_order_steps(self) -> SqlAlchemyAgentWorkOrderStepRepository:
        from app.repositories import SqlAlchemyAgentWorkOrderStepRepository

        return SqlAlchemyAgentWorkOrderStepRepository(self.session)


async def _close(session: AsyncSession) -> None:
    """Give the connection back; close() rolls back whatever was not committed without
    expiring the loaded entities (rollback() would), so what was read stays usable."""
    lease: Lease | None = session.info.get(LEASE)
    if lease is not None and lease.held:
        await lease.close()
    elif connected(session.sync_session):
        await session.close()
    else:  # no connection to give back: closing only forgets the entities (no I/O)
        session.sync_session.close()


async def _invalidate(session: AsyncSession) -> None:
    """Drop the session's connections from their pool without talking to the server."""
    lease: Lease | None = session.info.get(LEASE)
    try:
        if lease is not None and lease.connection is not None:
            connection, lease.connection = lease.connection, None
            await greenlet_spawn(connection.invalidate)
        await session.invalidate()
    except Exception as exc:  # nothing more can be done for a connection already gone
        log.debug("invalidating a dead connection: %s", exc)


def _is_autocommit(bind: Any) -> bool:
    options = bind.get_execution_options() if hasattr(bind, "get_execution_options") else {}
    return bool(options.get(AUTOCOMMIT))


async def run_in_transaction(
    open_uow: Callable[[], SqlAlchemyUnitOfWork],
    work: Callable[[SqlAlchemyUnitOfWork], Awaitable[T]],
    *,
    attempts: int = 5,
    base_delay: float = 0.02,
    max_delay: float = 1.0,
) -> T:
    """Run ``work`` in a fresh Unit of Work and commit, again on serialization failures/deadlocks.

    Retries only ``RetryableError`` (PostgreSQL 40001/40P01, MySQL 1213/1205, SQLite busy), at most
    ``attempts`` times, sleeping a full-jitter exponential backoff between tries.
    """
    if attempts < 1:
        raise InvalidInputError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            async with open_uow() as uow:
                result = await work(uow)
                await uow.commit()
                return result
        except RetryableError:
            if attempt == attempts:
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            log.info("transaction lost a race (attempt %d/%d); retrying", attempt, attempts)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


_MADE_ON_USE: dict[type, tuple[str, ...]] = {}


def _made_on_use(cls: type) -> tuple[str, ...]:
    """The names of ``cls``'s cached properties (the repositories and the vector view)."""
    names = _MADE_ON_USE.get(cls)
    if names is None:
        names = _MADE_ON_USE[cls] = tuple(
            name
            for klass in cls.__mro__
            for name, value in vars(klass).items()
            if isinstance(value, cached_property)
        )
    return names
