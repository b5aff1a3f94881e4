"""``StoreFeed``: one external store (Chroma, Weaviate) fed from one database's rows.

The feed knows the database's identity (which names the store's collections), reads the rows'
vectors (through the exact index's SQL, which also serves as the rows' writer), hands each Unit of
Work its view (``app.vector.outbox.view``) and counts the store's hits it had to drop.
"""

from __future__ import annotations

import logging
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.errors import BackendUnavailableError
from app.vector.outbox.identity import namespace_of, read_identity, set_external_store
from app.vector.sql.exact import ExactVectorIndex

log = logging.getLogger(__name__)
_FEEDS: WeakKeyDictionary[Any, StoreFeed] = WeakKeyDictionary()


def feed_for(store: Any, engine: AsyncEngine) -> StoreFeed:
    """The feed of ``store`` from ``engine``'s database (one per store object)."""
    feed = _FEEDS.get(store)
    if feed is None or feed.engine is not engine:
        feed = _FEEDS[store] = StoreFeed(store, engine)
    return feed


class StoreFeed:
    """An external store derived from the rows of one database."""

    def __init__(self, store: Any, engine: AsyncEngine) -> None:
        self.store = store
        self.engine = engine
        self.rows = ExactVectorIndex(engine)
        self.namespace: str | None = None
        self.fed = False
        self.dropped_hits = 0

    @property
    def name(self) -> str:
        return str(self.store.capabilities.name)

    def bind(self, uow: Any) -> Any:
        """A Unit of Work's view of the store (``app.vector.outbox.view``)."""
        from app.vector.outbox.view import StoreView

        return StoreView(self, uow)

    async def ready(self, executor: Any) -> None:
        """Name the store's collections by this database's identity (read once)."""
        if self.namespace is not None:
            return
        identity, fed = await read_identity(executor)
        self.namespace = namespace_of(identity)
        self.fed = fed == self.name
        self.store.use_namespace(self.namespace)

    async def ensure_collection(
        self, collection: str, dimension: int, metric: str = "cosine"
    ) -> None:
        """The rows' column for ``dimension`` and the store's collection (``metric``), if
        missing; each in a short transaction of its own (no Unit of Work open)."""
        if not self.rows.has_dimension(collection, dimension):
            await self.rows.ensure_collection(collection, dimension)
        if self.namespace is None:
            async with AsyncSession(self.engine) as session:
                await self.ready(session)
        try:
            if dimension not in await self.store.dimensions(collection):
                await self.store.ensure_collection(collection, dimension, metric)
            elif metric != "cosine":  # the store says whether the metric differs
                await self.store.ensure_collection(collection, dimension, metric)
        except BackendUnavailableError as exc:  # made when the copies are applied
            log.info("vector store unreachable (%s); its collection is made later", exc)

    async def mark_fed(self, uow: Any) -> None:
        """Record, in ``uow``'s transaction, that this store is fed (deletes get queued)."""
        if self.fed:
            return
        if await set_external_store(uow.session, self.name):
            log.info(
                "the %s store is now fed from this database; if it was fed by another store "
                "before, run `archon-db vectors rebuild` once",
                self.name,
            )

        async def committed() -> None:
            self.fed = True

        uow.after_commit(committed)

    def reset(self) -> None:
        """Read the identity again on next use (after a migration may have changed it)."""
        self.namespace = None
        self.fed = False
        self.rows = ExactVectorIndex(self.engine)

    def note_dropped(self, collection: str, count: int) -> None:
        self.dropped_hits += count
        log.warning(
            "%s: %d hit(s) from the %s store had no matching row vector and were dropped; "
            "`archon-db vectors reconcile --apply` repairs the store",
            collection,
            count,
            self.name,
        )
