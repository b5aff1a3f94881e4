"""The composition root: Settings -> engines -> sessionmakers -> vector index -> DataLayer."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings, get_settings
from app.engines import create_engine_for
from app.repositories.lease import LeasingSession
from app.uow.sqlalchemy import SqlAlchemyUnitOfWork, run_in_transaction
from app.vector.factory import create_vector_index, unit_of_work_binder

if TYPE_CHECKING:
    from app.crypto import CredentialCipher
    from app.domain import Source
    from app.ingest import IngestReport, Item
    from app.vector.outbox import DrainReport
    from app.vector.port import SearchHit

log = logging.getLogger(__name__)
T = TypeVar("T")


class DataLayer:
    """What services hold: Units of Work, migrations, ingestion and search."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        read_engines: list[AsyncEngine],
        cipher: CredentialCipher | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.read_engines = read_engines
        self.cipher = cipher
        self._sessionmaker = _sessionmaker(engine)
        self._read_sessionmakers = [_sessionmaker(e) for e in read_engines] or [self._sessionmaker]
        self._next_reader = itertools.cycle(self._read_sessionmakers)
        self.vector_index: Any = None
        self._vector_binder: Callable[[SqlAlchemyUnitOfWork], Any] | None = None

    @property
    def dialect_name(self) -> str:
        """``postgresql``, ``mysql`` or ``sqlite``."""
        return self.engine.dialect.name

    def uow(
        self, *, read_only: bool = False, isolation_level: str | None = None
    ) -> SqlAlchemyUnitOfWork:
        """A new Unit of Work; ``read_only`` ones may be served by a read replica."""
        maker = next(self._next_reader) if read_only else self._sessionmaker
        return SqlAlchemyUnitOfWork(
            maker,
            read_only=read_only,
            isolation_level=isolation_level,
            cipher=self.cipher,
            vector_binder=self._vector_binder,
        )

    async def run_in_transaction(
        self,
        work: Callable[[SqlAlchemyUnitOfWork], Awaitable[T]],
        *,
        attempts: int = 5,
        isolation_level: str | None = None,
    ) -> T:
        """Run ``work(uow)`` and commit, retrying on serialization failures and deadlocks."""
        return await run_in_transaction(
            lambda: self.uow(isolation_level=isolation_level), work, attempts=attempts
        )

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (Alembic ``upgrade``)."""
        from app import migrations

        await migrations.upgrade(self.engine, revision)
        redetect = getattr(self.vector_index, "reset", None)  # the schema may offer pgvector now
        if redetect is not None:
            redetect()
        await self.start()

    async def start(self) -> DrainReport:
        """Start-up work: replay vector writes a previous run committed but could not apply.

        Called by ``migrate()`` and the FastAPI lifespan; a store that is still down leaves the
        operations pending (``archon-db vectors sync`` replays them later).
        """
        from app.vector.outbox import replay_pending

        return await replay_pending(self)

    async def search(
        self,
        collection: str,
        *,
        vector: Sequence[float] | None = None,
        text: str | None = None,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        mode: str = "auto",
        embedding_model: str | None = None,
    ) -> list[SearchHit]:
        """Vector, keyword or hybrid search, hydrated with the entities (see ``app.search``)."""
        from app.search import search

        return await search(
            self,
            collection,
            vector=vector,
            text=text,
            k=k,
            filters=filters,
            mode=mode,  # type: ignore[arg-type]
            embedding_model=embedding_model,
        )

    async def ingest(self, source: Source, items: Iterable[Item], **options: Any) -> IngestReport:
        """Store a source and replace the chunks of these URLs with their vectors, in ONE Unit of
        Work (see ``app.ingest``)."""
        from app.ingest import ingest

        return await ingest(self, source, items, **options)

    async def aclose(self) -> None:
        """Dispose of every engine and client."""
        closer = getattr(self.vector_index, "aclose", None)
        if closer is not None:
            await closer()
        for engine in (self.engine, *self.read_engines):
            await engine.dispose()


def _sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=LeasingSession,
        join_transaction_mode="control_fully",
    )


def bootstrap(settings: Settings | None = None) -> DataLayer:
    """Build the data layer from ``settings`` (the environment when omitted). Connects lazily."""
    from app.crypto import CredentialCipher

    settings = settings or get_settings()
    assert settings.database_url is not None  # resolved by Settings
    engine = create_engine_for(settings.database_url, settings)
    read_engines = _read_engines(settings)
    layer = DataLayer(settings, engine, read_engines, CredentialCipher.from_settings(settings))
    layer.vector_index = create_vector_index(settings, engine)
    layer._vector_binder = unit_of_work_binder(layer.vector_index)
    log.info("data layer on %s (%s)", settings.safe_database_url, settings.database_type)
    return layer


def _read_engines(settings: Settings) -> list[AsyncEngine]:
    if settings.enable_read_replicas and settings.database_read_urls:
        return [
            create_engine_for(url, settings, read_only=True) for url in settings.database_read_urls
        ]
    assert settings.database_url is not None
    if settings.database_type == "sqlite":
        # Readers get their own connections with a deferred BEGIN, so they never queue behind
        # writers' BEGIN IMMEDIATE (WAL lets them read while one writer writes).
        return [create_engine_for(settings.database_url, settings, read_only=True)]
    if settings.database_type in ("postgresql", "mysql"):
        # Readers get their own pool of read-only autocommit connections: a read by primary
        # key is then one round trip instead of BEGIN (or an implicit one), SELECT, ROLLBACK.
        return [create_engine_for(settings.database_url, settings, read_only=True)]
    return []
