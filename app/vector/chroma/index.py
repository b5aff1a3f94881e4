"""ChromaVectorIndex: the VectorIndex port on Chroma, embedded (``CHROMA_PATH``) or over HTTP.

One Chroma collection per (collection, dimension): ``archon_crawled_pages_384``, ... The embedding
model is not part of the name: it is the ``embedding_model`` metadata field, and ``query(...,
embedding_model=...)`` filters on it, as the SQL adapters filter on the column of that name.
Collections of Archon's dimensions (384, 768, 1024, 1536, 3072) are made on first write with the
cosine metric; any other dimension or metric is made by ``ensure_collection`` (``archon-db vectors
add-dimension N``). Ids are the row ids as strings; hits carry the original id.

Filters: every operator of the filter language, with SQL's three-valued logic, exactly. What Chroma
can express (eq, ne, numeric ranges, in, not_in, is_null, containment of scalars and arrays, and/or/
not) becomes a Chroma ``where``; the rest (like, ilike, ranges on text, containment of empty or
nested values) is evaluated in Python over the candidates' stored metadata, and the search runs
among the matching ids only (see ``app.vector.external.filters``; how records are stored:
``app.vector.chroma.metadata``). Chroma cannot join a SQL transaction: a Unit of Work writes
through the outbox (``bind``). Chroma's client is synchronous, so every call runs in a worker
thread.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

from app.config import Settings, chroma_folder, mask_url
from app.errors import InvalidInputError
from app.filter_eval import evaluate
from app.filters import OPERATORS, Node, parse_filters
from app.vector.arguments import check_ids, check_k, check_records
from app.vector.chroma.metadata import Where, metadata_of
from app.vector.chroma.store import MAX_DIMENSION, SPACES, ChromaStore, batches
from app.vector.external.filters import FilterPlan, Translator, plan_filter, with_model
from app.vector.external.records import (
    ARCHON_DIMENSIONS,
    ID_KEY,
    PreparedGroup,
    by_dimension,
    checked_matrix,
    prepare_group,
)
from app.vector.port import (
    Metric,
    RecordId,
    VectorCapabilities,
    VectorHit,
    VectorRecord,
    collection_table,
)

T = TypeVar("T")
Legacy = tuple[Any, Any, dict[str, Any]]  # id, vector, metadata


class ChromaVectorIndex:
    """Vectors in Chroma, one collection per (collection, dimension); see the module doc."""

    capabilities = VectorCapabilities(
        name="chroma",
        metrics=frozenset(SPACES),
        filter_operators=OPERATORS,
        hybrid=False,
        max_dimension=MAX_DIMENSION,
        transactional=False,
        approximate=True,
    )

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self.settings = settings
        self.store = ChromaStore(
            settings.chroma_url,
            chroma_folder(settings),
            client,
            connect_timeout=settings.database_connect_timeout,
        )

    @property
    def location(self) -> str:
        """Where the vectors live, safe to print."""
        return mask_url(self.store.url) if self.store.url else self.store.path

    async def ensure_collection(
        self, collection: str, dimension: int, metric: Metric = "cosine"
    ) -> None:
        """Create the Chroma collection for ``dimension`` (idempotent; the metric must match)."""
        collection_table(collection)
        await self._run("ensuring the collection", self.store.ensure, collection, dimension, metric)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Insert or replace by id (the last of repeated ids wins), in batches."""
        records = check_records(records)
        return await self._run("upserting vectors", self._upsert, collection, list(records))

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """The ``k`` nearest matching records, best first (cosine: ``1 - distance``)."""
        k = check_k(k)
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        node = with_model(parse_filters(filters), embedding_model)
        return await self._run("querying vectors", self._query, collection, vector, k, node)

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Remove these ids from every dimension's collection; returns how many existed."""
        ids = check_ids(ids)
        keys = list(dict.fromkeys(str(i) for i in ids))
        return await self._run("deleting vectors", self._delete, collection, keys)

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        """Remove every vector matching ``filters`` (a filter is required)."""
        ids = await self.ids_where(collection, filters)
        return await self.delete(collection, ids) if ids else 0

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        """How many vectors the collection holds over all dimensions (matching ``filters``)."""
        node = parse_filters(filters)
        return await self._run("counting vectors", self._count, collection, node)

    async def ids_where(self, collection: str, filters: Mapping[str, Any]) -> list[str]:
        """The ids (as strings) of every vector matching ``filters``; a filter is required."""
        node = parse_filters(filters)
        if node is None:
            raise InvalidInputError("a filter is required; use delete(ids) for known ids")
        return await self._run("selecting vectors", self._ids_where, collection, node)

    async def validate_records(self, collection: str, records: Sequence[VectorRecord]) -> None:
        """Raise ``InvalidInputError`` for what ``upsert`` would refuse, without writing."""
        await self.prepare_records(collection, records)

    async def prepare_records(
        self, collection: str, records: Sequence[VectorRecord]
    ) -> list[PreparedGroup]:
        """Check records as ``upsert`` would and convert them once, for ``write_prepared``."""
        return await self._run("checking vectors", self._prepare, collection, list(records))

    async def write_prepared(self, collection: str, groups: Sequence[PreparedGroup]) -> int:
        """Upsert what ``prepare_records`` (or ``external.prepare_group``) made; how many."""
        return await self._run("upserting vectors", self._write, collection, list(groups))

    async def dimensions(self, collection: str) -> dict[int, str]:
        """Dimension -> metric of the Chroma collections that exist for ``collection``."""
        return dict(await self._run("listing collections", self.store.existing, collection))

    # -- a store derived from the rows (``app.vector.outbox``) -------------------------------

    def use_namespace(self, namespace: str | None) -> None:
        """Read and write the collections of the database whose identity gives ``namespace``."""
        self.store.use_namespace(namespace)

    async def stored_ids(self, collection: str, dimension: int) -> list[str]:
        """The ids held for ``dimension``."""
        return await self._run("listing ids", self.store.stored_ids, collection, dimension)

    async def stored_records(
        self, collection: str, dimension: int, ids: Sequence[str]
    ) -> dict[str, tuple[Any, dict[str, Any] | None]]:
        """id -> (stored vector, metadata) of those ``ids`` held for ``dimension``."""
        return await self._run(
            "reading vectors", self.store.stored_records, collection, dimension, list(ids)
        )

    async def drop(self, collection: str) -> dict[int, str]:
        """Delete this database's collections of ``collection``; dimension -> metric they had."""
        return await self._run("dropping collections", self.store.drop, collection)

    async def foreign(self) -> list[str]:
        """Collections of another database, or of an earlier life of this one (never read)."""
        return await self._run("listing collections", self.store.foreign)

    async def drop_foreign(self, names: Sequence[str]) -> None:
        """Delete these collections (from ``foreign``)."""
        await self._run("dropping collections", self.store.drop_names, list(names))

    async def legacy_pages(self, collection: str) -> AsyncIterator[tuple[int, list[Legacy]]]:
        """(dimension, [(id, vector, metadata), ...]) pages of what was held before collections
        were named by the database: what ``vectors rebuild --from-store`` copies into the rows."""
        found = await self._run("listing the old collections", self.store.legacy, collection)
        for dimension, col in found.items():
            offset = 0
            while True:
                page = await self._run("reading the old collections", self._legacy, col, offset)
                if page:
                    yield dimension, page
                if len(page) < self.store.batch_size:
                    break
                offset += len(page)

    def _legacy(self, col: Any, offset: int) -> list[Legacy]:
        got = col.get(include=["embeddings", "metadatas"], limit=self.store.batch_size,
                      offset=offset)  # fmt: skip
        return [
            ((meta or {}).get(ID_KEY, id_), vector, metadata_of(meta or {}))
            for id_, vector, meta in zip(got["ids"], got["embeddings"], got["metadatas"],
                                         strict=True)
        ]  # fmt: skip

    async def quarantine(self) -> str | None:
        """Move an embedded store that cannot be used aside; where it went (None: a server)."""
        return await asyncio.to_thread(self.store.quarantine)

    async def describe(self) -> dict[str, Any]:
        """What ``archon-db doctor`` prints about this store."""
        found = await self._run("describing the store", self.store.describe)
        mode = "http" if self.store.url else "embedded"
        return {"backend": "chroma", "mode": mode, "location": self.location, **found}

    async def aclose(self) -> None:
        """Close the client (an embedded one lets go of its folder)."""
        await asyncio.to_thread(self.store.release)

    # -- synchronous internals, run in a worker thread ---------------------------------------

    async def _run(self, action: str, fn: Callable[..., T], *args: Any) -> T:
        def call() -> T:
            with self.store.errors(action, self.location):
                try:
                    return fn(*args)
                except Exception as exc:
                    if not self.store.vanished(exc):
                        raise
                # A collection deleted behind this client (another process, a reset): the
                # cached handles are stale; look the collections up again, once.
                self.store.forget_collections()
                return fn(*args)

        return await asyncio.to_thread(call)

    def _prepare(self, collection: str, records: list[VectorRecord]) -> list[PreparedGroup]:
        groups = []
        for dimension, group in by_dimension(records).items():
            metric = self.store.metric(collection, dimension)
            if metric is None and dimension not in ARCHON_DIMENSIONS:
                raise self.store.dimension_error(collection, dimension)
            cosine = (metric or "cosine") == "cosine"
            groups.append(prepare_group(dimension, group, cosine=cosine))
        return groups

    def _write(self, collection: str, groups: list[PreparedGroup]) -> int:
        for group in groups:
            self.store.write(collection, group)
        return sum(len(group.ids) for group in groups)

    def _upsert(self, collection: str, records: list[VectorRecord]) -> int:
        return self._write(collection, self._prepare(collection, records))

    def _query(
        self, collection: str, vector: Sequence[float], k: int, node: Node | None
    ) -> list[VectorHit]:
        dimension = len(vector)
        metric = self.store.metric(collection, dimension)
        if metric is None and dimension not in ARCHON_DIMENSIONS:
            raise self.store.dimension_error(collection, dimension)
        cosine = (metric or "cosine") == "cosine"
        query = checked_matrix([vector], dimension, cosine=cosine)
        col = self.store.collection(collection, dimension, create=False)
        if col is None:
            return []
        plan = self._plan(col, node)
        options: dict[str, Any] = {"n_results": k, "include": ["metadatas", "distances"]}
        if plan.exact:
            ids = self._matching(col, plan, node)
            if not ids:
                return []
            options.update(ids=ids, n_results=min(k, len(ids)))
        elif plan.native is not None:
            options["where"] = plan.native
        found = col.query(query_embeddings=query, **options)
        pairs = zip(found["metadatas"][0], found["distances"][0], strict=True)
        return [
            VectorHit(meta[ID_KEY], score(metric or "cosine", dist), metadata_of(meta))
            for meta, dist in pairs
        ]

    def _plan(self, col: Any, node: Node | None) -> FilterPlan[Where]:
        dialect = self.store.dialect(col)
        plan = plan_filter(node, lambda: Translator(dialect))
        if plan.contains_keys and self.store.has_opaque(col, plan.contains_keys):
            plan = plan_filter(node, lambda: Translator(dialect), force_exact=True)
        return plan

    def _matching(self, col: Any, plan: FilterPlan[Where], node: Node | None) -> list[str]:
        """Ids matching ``node`` exactly: the native (pre-)filter, then Python over the JSON."""
        return [
            id_
            for id_, meta in self.store.scan(col, plan.native)
            if not plan.exact or evaluate(node, metadata_of(meta))
        ]

    def _ids_where(self, collection: str, node: Node) -> list[str]:
        return [
            id_
            for col in self.store.collections(collection)
            for id_ in self._matching(col, self._plan(col, node), node)
        ]

    def _delete(self, collection: str, ids: list[str]) -> int:
        removed = 0
        for col in self.store.collections(collection):
            for batch in batches(ids, self.store.batch_size):
                present = col.get(ids=list(batch), include=[])["ids"]
                if present:
                    col.delete(ids=present)
                    removed += len(present)
        return removed

    def _count(self, collection: str, node: Node | None) -> int:
        if node is None:
            return sum(col.count() for col in self.store.collections(collection))
        return len(self._ids_where(collection, node))


def score(metric: str, distance: float) -> float:
    """Higher is better: cosine ``1 - d``; inner product ``1 - d`` (the dot); l2 ``-sqrt(d)``."""
    if metric == "l2":  # Chroma's l2 is the squared distance
        return -math.sqrt(max(distance, 0.0))
    return 1.0 - distance
