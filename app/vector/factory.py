"""Choosing the vector index: by ``VECTOR_DATABASE``, or by what the database offers.

Unset, the choice is made on first use (the database may not be migrated yet when the layer is
built, and building it does no I/O): pgvector when the ``vector`` extension is installed in the
database and the embedding columns are pgvector's; else Weaviate when ``WEAVIATE_URL`` is set,
Chroma when ``CHROMA_URL`` or ``CHROMA_PATH`` is; else, on a SQLite file, embedded Chroma in a
folder beside it (when ``chromadb`` is installed); else the exact numpy index. A server database
never gets an implicit embedded folder: several hosts may share it, the folder would be one
host's. The choice is logged, and ``AutoVectorIndex.resolve()`` tells it.

Chroma and Weaviate are fed from the rows (``app.vector.outbox``): a Unit of Work's view of them
writes the vectors into the rows and the store's copies through the outbox.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings, VectorBackend, sqlite_file
from app.errors import UnsupportedFeatureError
from app.vector.port import Metric, RecordId, VectorHit, VectorIndex, VectorRecord

log = logging.getLogger(__name__)


def create_vector_index(settings: Settings, engine: AsyncEngine) -> VectorIndex:
    """The index ``settings.vector_database`` names; unset, one chosen on first use."""
    if settings.vector_database is None:
        return AutoVectorIndex(settings, engine)  # type: ignore[return-value]
    return build_vector_index(settings.vector_database, settings, engine)


def build_vector_index(
    backend: VectorBackend, settings: Settings, engine: AsyncEngine
) -> VectorIndex:
    """One adapter by name; external SDKs are imported only here, only when chosen."""
    if backend is VectorBackend.PGVECTOR:
        if engine.dialect.name != "postgresql":
            raise UnsupportedFeatureError(
                f"VECTOR_DATABASE=pgvector needs PostgreSQL; this database is "
                f"{engine.dialect.name}: use exact, chroma or weaviate"
            )
        from app.vector.sql.pgvector import PgVectorIndex

        return PgVectorIndex(engine)
    if backend is VectorBackend.EXACT:
        from app.vector.sql.exact import ExactVectorIndex

        return ExactVectorIndex(engine)
    if backend is VectorBackend.CHROMA:
        from app.vector.chroma import ChromaVectorIndex

        return ChromaVectorIndex(settings)
    from app.vector.weaviate import WeaviateVectorIndex

    return WeaviateVectorIndex(settings)


async def detect_vector_backend(engine: AsyncEngine, settings: Settings) -> VectorBackend:
    """The index ``VECTOR_DATABASE`` unset stands for (see the module docstring)."""
    if engine.dialect.name == "postgresql":
        from app.vector.sql.common import embedding_columns, pgvector_extension

        async with AsyncSession(engine) as session:
            extension = await pgvector_extension(session)
            columns = await embedding_columns(session, "archon_crawled_pages")
        # Before the first migration there are no columns yet: they will be pgvector's.
        if extension is not None and all("vector" in kind for kind in columns.values()):
            return VectorBackend.PGVECTOR
    if settings.weaviate_url:
        return VectorBackend.WEAVIATE
    chroma = importlib.util.find_spec("chromadb") is not None
    if chroma and (settings.chroma_url or settings.chroma_path):
        return VectorBackend.CHROMA
    if chroma and sqlite_file(settings.database_url) is not None:
        return VectorBackend.CHROMA
    return VectorBackend.EXACT


def store_feed(index: Any, engine: AsyncEngine) -> Any | None:
    """The feed of an external store (``app.vector.outbox.feed``); None for a SQL index."""
    if index is None or index.capabilities.transactional:
        return None
    from app.vector.outbox.feed import feed_for

    return feed_for(index, engine)


def unit_of_work_binder(index: Any, engine: AsyncEngine) -> Callable[[Any], Any]:
    """How a Unit of Work gets its view of ``index``.

    Transactional indexes bind to the Unit of Work's session (``index.bind(uow)``); external
    stores are fed from the rows (``app.vector.outbox``), their copies applied after the commit.
    """

    def bind(uow: Any) -> Any:
        if isinstance(index, AutoVectorIndex) or index.capabilities.transactional:
            return index.bind(uow)
        feed = store_feed(index, engine)
        assert feed is not None
        return feed.bind(uow)

    return bind


class AutoVectorIndex:
    """Stands for the index feature detection picks, choosing on first use (then delegating)."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self._chosen: Any = None

    async def resolve(self) -> Any:
        """The concrete index (detected once, logged)."""
        if self._chosen is None:
            backend = await detect_vector_backend(self.engine, self.settings)
            log.info(
                "VECTOR_DATABASE is unset: using %s (detected on %s)",
                backend.value,
                self.engine.dialect.name,
            )
            self._chosen = build_vector_index(backend, self.settings, self.engine)
        return self._chosen

    def reset(self) -> None:
        """Detect again on next use (after a migration changed what the database offers)."""
        self._chosen = None

    @property
    def capabilities(self) -> Any:
        if self._chosen is None:
            raise UnsupportedFeatureError(
                "the vector index is chosen on first use: `await index.resolve()` first"
            )
        return self._chosen.capabilities

    def bind(self, uow: Any) -> _LazyBound:
        """A Unit of Work's view, bound once the index is chosen."""
        return _LazyBound(self, uow)

    async def ensure_collection(
        self, collection: str, dimension: int, metric: Metric = "cosine"
    ) -> None:
        await (await self.resolve()).ensure_collection(collection, dimension, metric)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        return int(await (await self.resolve()).upsert(collection, records))

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        index = await self.resolve()
        return list(
            await index.query(collection, vector, k, filters, embedding_model=embedding_model)
        )

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        return int(await (await self.resolve()).delete(collection, ids))

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        return int(await (await self.resolve()).delete_where(collection, filters))

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        return int(await (await self.resolve()).count(collection, filters))

    def __getattr__(self, name: str) -> Any:
        # Beyond the port (describe, dimensions...): only once chosen.
        if name.startswith("_") or self._chosen is None:
            raise AttributeError(name)
        return getattr(self._chosen, name)

    async def aclose(self) -> None:
        closer = getattr(self._chosen, "aclose", None)
        if closer is not None:
            await closer()


class _LazyBound:
    """``AutoVectorIndex.bind(uow)``: resolves, then forwards to the chosen index's own view."""

    def __init__(self, auto: AutoVectorIndex, uow: Any) -> None:
        self._auto = auto
        self._uow = uow
        self._view: Any = None

    @property
    def capabilities(self) -> Any:
        return self._auto.capabilities

    async def _target(self) -> Any:
        if self._view is None:
            index = await self._auto.resolve()
            self._view = unit_of_work_binder(index, self._auto.engine)(self._uow)
        return self._view

    async def drain_queued(self) -> None:
        """The chosen index's, when it feeds an external store."""
        drain = getattr(await self._target(), "drain_queued", None)
        if drain is not None:
            await drain()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await getattr(await self._target(), name)(*args, **kwargs)

        return call


async def concrete_view(view: Any) -> Any:
    """A Unit of Work's view of the index, resolved when the index is chosen on first use."""
    if isinstance(view, _LazyBound):
        return await view._target()
    return view
