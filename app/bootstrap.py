"""The composition root: Settings -> engines -> sessionmakers -> vector index -> DataLayer."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings, get_settings
from app.engines import create_engine_for
from app.errors import translate_errors
from app.replicas import Replica, ReplicaRouter
from app.repositories.lease import LeasingSession
from app.uow.principal import check_row_level_security
from app.uow.sqlalchemy import SqlAlchemyUnitOfWork, run_in_transaction
from app.vector.factory import create_vector_index, store_feed, unit_of_work_binder

if TYPE_CHECKING:
    from app.crypto import CredentialCipher
    from app.domain import Source
    from app.ingest import IngestReport, Item
    from app.metrics.report import LayerStats
    from app.security import Principal
    from app.vector.outbox.feed import StoreFeed
    from app.vector.outbox.reconcile import CollectionCheck, Progress, RebuildReport
    from app.vector.outbox.table import DrainReport
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
        replica_engines: Sequence[tuple[str, AsyncEngine]] = (),
    ) -> None:
        """``read_engines``: the primary's readers; ``replica_engines``: (URL, engine) of each
        read replica, which serve read-only Units of Work while healthy (``app.replicas``)."""
        self.settings = settings
        self.engine = engine
        self.replica_engines = [e for _, e in replica_engines]
        self.read_engines = self.replica_engines + read_engines
        self.cipher = cipher
        self._sessionmaker = _sessionmaker(engine)
        self._read_sessionmakers = [_sessionmaker(e) for e in read_engines] or [self._sessionmaker]
        self._next_reader = itertools.cycle(self._read_sessionmakers)
        self._replicas: ReplicaRouter | None = None
        if replica_engines:
            self._replicas = ReplicaRouter(
                [Replica(url, e, _sessionmaker(e)) for url, e in replica_engines],
                self._read_sessionmakers[0],
                read_your_writes=settings.database_read_your_writes_seconds,
                max_lag=settings.database_replica_max_lag,
            )
        self.vector_index: Any = None
        self._vector_binder: Callable[[SqlAlchemyUnitOfWork], Any] | None = None

    @property
    def dialect_name(self) -> str:
        """``postgresql``, ``mysql`` or ``sqlite``."""
        return self.engine.dialect.name

    def uow(
        self,
        *,
        read_only: bool = False,
        isolation_level: str | None = None,
        actor: str | None = None,
        principal: Principal | None = None,
    ) -> SqlAlchemyUnitOfWork:
        """A new Unit of Work; ``read_only`` ones may be served by a read replica.

        ``actor`` (default ``system``) is who the audit log names for its writes when
        ``ENABLE_AUDIT_LOG`` is on. With a ``principal`` its transactions run as that PostgreSQL
        role and JWT claims, under row-level security (``app.uow.principal``).
        """
        if principal is not None:
            check_row_level_security(str(self.settings.database_type), self.dialect_name)
        maker = next(self._next_reader) if read_only else self._sessionmaker
        replicas = self._replicas
        return SqlAlchemyUnitOfWork(
            maker,
            read_only=read_only,
            isolation_level=isolation_level,
            cipher=self.cipher,
            vector_binder=self._vector_binder,
            choose=replicas.choose if replicas is not None and read_only else None,
            on_commit=replicas.wrote if replicas is not None else None,
            actor=actor,
            audit=self.settings.enable_audit_log,
            principal=principal,
        )

    async def replica_status(self) -> list[dict[str, Any]]:
        """Each read replica's health, measured now: ``url`` (masked), ``healthy``,
        ``lag_seconds`` (None when unknown or unreachable) and ``skipped_reason`` (None when
        reads may go to it). Empty without ENABLE_READ_REPLICAS."""
        if self._replicas is None:
            return []
        return await self._replicas.status()

    async def run_in_transaction(
        self,
        work: Callable[[SqlAlchemyUnitOfWork], Awaitable[T]],
        *,
        attempts: int = 5,
        isolation_level: str | None = None,
        actor: str | None = None,
        principal: Principal | None = None,
    ) -> T:
        """Run ``work(uow)`` and commit, retrying on serialization failures and deadlocks."""
        return await run_in_transaction(
            lambda: self.uow(isolation_level=isolation_level, actor=actor, principal=principal),
            work,
            attempts=attempts,
        )

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (Alembic ``upgrade``)."""
        from app import migrations

        await migrations.upgrade(self.engine, revision)
        self._forget_schema()
        await self.start()

    async def downgrade(self, revision: str) -> None:
        """Revert the schema to ``revision``; an external store drops the collections of a
        database identity the downgrade removed (they could never be read again)."""
        from app import migrations
        from app.vector.outbox.identity import IDENTITY_TABLE
        from app.vector.outbox.table import has_outbox

        feed = await self._feed()
        namespace = None
        if feed is not None and await has_outbox(self.engine, IDENTITY_TABLE):
            async with AsyncSession(self.engine) as session:
                await feed.ready(session)
            namespace = feed.namespace
        await migrations.downgrade(self.engine, revision)
        self._forget_schema(feed)
        if feed is None or namespace is None or await has_outbox(self.engine, IDENTITY_TABLE):
            return
        from app.vector.port import COLLECTIONS

        feed.store.use_namespace(namespace)  # the identity that went, to drop its collections
        for collection in COLLECTIONS:
            await feed.store.drop(collection)
        feed.store.use_namespace(None)

    def _forget_schema(self, feed: StoreFeed | None = None) -> None:
        """After a migration: detect the index again, read the database's identity again."""
        chosen = getattr(self.vector_index, "_chosen", self.vector_index)
        feed = feed or (store_feed(chosen, self.engine) if chosen is not None else None)
        if feed is not None:
            feed.reset()
        redetect = getattr(self.vector_index, "reset", None)  # the schema may offer pgvector now
        if redetect is not None:
            redetect()

    async def vector_feed(self) -> StoreFeed | None:
        """The external store fed from the rows (Chroma, Weaviate), its collections named by
        this database's identity; None for a SQL index."""
        feed = await self._feed()
        if feed is not None and feed.namespace is None:
            async with AsyncSession(self.engine) as session:
                await feed.ready(session)
        return feed

    async def _feed(self) -> StoreFeed | None:
        index = self.vector_index
        resolve = getattr(index, "resolve", None)
        if resolve is not None:
            index = await resolve()
        return store_feed(index, self.engine)

    async def start(self) -> DrainReport:
        """Start-up work: replay vector writes a previous run committed but could not apply.

        Called by ``migrate()`` and the FastAPI lifespan; a store that is still down leaves the
        operations pending (``archon-db vectors sync`` replays them later). With a SQL index, a
        database that fed an external store before stops queueing deletes for it.
        """
        from app.vector.outbox.table import DrainReport, replay_pending

        feed = await self.vector_feed()
        if feed is None:
            await _stop_feeding(self.engine)
            return DrainReport()
        report = await replay_pending(feed)
        if not report.failed:
            await _warn_if_drifted(feed)
        return report

    async def reconcile_vectors(
        self, apply: bool = False, *, on_progress: Progress | None = None
    ) -> list[CollectionCheck]:
        """Compare the external store with the rows (orphans, missing, stale); ``apply``
        repairs them. With a SQL index the rows are the index: every collection is level."""
        from app.vector.outbox.reconcile import CollectionCheck, reconcile

        feed = await self.vector_feed()
        if feed is None:
            return [CollectionCheck(c, rows=n, stored=n) for c, n in (await self._counts()).items()]
        return await reconcile(feed, apply=apply, on_progress=on_progress)

    async def rebuild_vectors(
        self,
        collection: str | None = None,
        *,
        from_store: bool = False,
        new_identity: bool = False,
        on_progress: Progress | None = None,
    ) -> list[RebuildReport]:
        """Recreate the external store's collections from the rows; ``from_store`` first copies
        the vectors of a store written before the rows held them into the rows; ``new_identity``
        first gives the database a new identity (a copy of another database shares its
        identity, and so its store, until then)."""
        from app.errors import UnsupportedFeatureError
        from app.vector.outbox.reconcile import import_from_store, rebuild

        feed = await self.vector_feed()
        if feed is None:
            raise UnsupportedFeatureError(
                "the vector index is the rows themselves (pgvector or exact): there is no store "
                "to rebuild; set VECTOR_DATABASE=chroma or weaviate to feed one"
            )
        if new_identity:
            from app.vector.outbox.identity import renew_identity

            async with AsyncSession(self.engine) as session, session.begin():
                await renew_identity(session)
            feed.reset()
        if from_store:
            await import_from_store(feed, on_progress=on_progress)
        return await rebuild(feed, collection, on_progress=on_progress)

    async def _counts(self) -> dict[str, int]:
        from app.vector.port import COLLECTIONS

        async with self.uow(read_only=True) as uow:
            return {c: int(await uow.vectors.count(c)) for c in COLLECTIONS}

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

    async def stats(self) -> LayerStats:
        """Per engine: pool size, checked out, overflow, waits, statements, slow statements and
        errors by class; replicas' lag; the vector outbox backlog (see ``app.metrics``)."""
        from app.metrics.report import collect

        return await collect(self)

    async def aclose(self) -> None:
        """Dispose of every engine and client."""
        closer = getattr(self.vector_index, "aclose", None)
        if closer is not None:
            await closer()
        for engine in (self.engine, *self.read_engines):
            await engine.dispose()


async def _warn_if_drifted(feed: StoreFeed) -> None:
    """At start-up: say so when the store's record counts differ from the rows' (a new or
    switched store, one restored from a backup...); counting costs little, comparing more."""
    from app.errors import DataLayerError
    from app.vector.outbox.reconcile import summarize

    try:
        summary = await summarize(feed)
    except DataLayerError as exc:
        log.warning("could not compare the vector store with the rows: %s", exc)
        return
    for collection, (held, stored) in summary.counts.items():
        if held != stored:
            log.warning(
                "%s: %d vector(s) in the rows, %d in the %s store: run `archon-db vectors "
                "reconcile --apply` (or `archon-db vectors rebuild`)",
                collection,
                held,
                stored,
                feed.name,
            )


async def _stop_feeding(engine: AsyncEngine) -> None:
    """No external store is fed any more: the triggers stop queueing deletes, the queue goes."""
    from app.vector.outbox.identity import IDENTITY_TABLE, read_identity, set_external_store
    from app.vector.outbox.table import has_outbox, outbox

    with translate_errors("looking for the database identity"):
        if not await has_outbox(engine, IDENTITY_TABLE):
            return  # not migrated this far: nothing is queued
    async with AsyncSession(engine) as session, session.begin():
        _, fed = await read_identity(session)
        if fed is None:
            return
        await set_external_store(session, None)
        with translate_errors("clearing the vector outbox"):
            await session.execute(outbox.delete())
    log.warning(
        "this database fed the %s store before; it is no longer fed (run `archon-db vectors "
        "rebuild` if you switch back to it)",
        fed,
    )


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
    cipher = CredentialCipher.from_settings(settings)
    layer = DataLayer(settings, engine, _read_engines(settings), cipher, _replicas(settings))
    layer.vector_index = create_vector_index(settings, engine)
    layer._vector_binder = unit_of_work_binder(layer.vector_index, engine)
    log.info("data layer on %s (%s)", settings.safe_database_url, settings.database_type)
    return layer


def _replicas(settings: Settings) -> list[tuple[str, AsyncEngine]]:
    if not settings.enable_read_replicas:
        return []
    return [
        (url, create_engine_for(url, settings, read_only=True, role="replica"))
        for url in settings.database_read_urls
    ]


def _read_engines(settings: Settings) -> list[AsyncEngine]:
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
