"""WeaviateVectorIndex: the VectorIndex port on Weaviate (``weaviate-client`` v4, async client).

One Weaviate collection per (collection, dimension), ``Archon_crawled_pages_384``, with
self-provided vectors in an HNSW index of the collection's metric. Object ids are UUID5s of the row
ids; the row id, the metadata as JSON, its present and opaque keys and the ``document`` text are
properties, and every flat metadata value is a property of its own (``weaviate_schema``).
The embedding model is the ``embedding_model`` metadata field, as with Chroma.

Filters are translated to Weaviate ``Filter`` objects with the reference semantics; what cannot be
(like, ilike, text ranges, keys with opaque values) is evaluated in Python over the objects' JSON
and the search is restricted to the matching ids. ``hybrid`` is Weaviate's own (BM25 on
``document`` fused with the vector search). ``WEAVIATE_URL`` is ``http(s)://host:port``; the gRPC
port is 50051 unless the URL says ``?grpc_port=N``; ``WEAVIATE_API_KEY`` authenticates. Writes from
a Unit of Work go through the outbox (``bind``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from app.config import Settings, mask_url
from app.errors import DataLayerError, InvalidInputError
from app.filter_eval import evaluate
from app.filters import OPERATORS, Node, parse_filters
from app.vector.arguments import check_ids, check_k, check_records
from app.vector.external.filters import FilterPlan, plan_filter, with_model
from app.vector.external.records import ARCHON_DIMENSIONS, flatten, from_json, to_json
from app.vector.port import (
    COLLECTIONS,
    Metric,
    RecordId,
    VectorCapabilities,
    VectorHit,
    VectorRecord,
    check_vector,
    collection_table,
)
from app.vector.weaviate.client import BATCH, DISTANCES, WeaviateStore, to_hit, translate_error
from app.vector.weaviate.schema import (
    DOCUMENT_PROPERTY,
    ID_PROPERTY,
    JSON_PROPERTY,
    OPAQUE_PROPERTY,
    property_name,
    translator,
)

MAX_DIMENSION = 65535


class WeaviateVectorIndex:
    """Vectors in Weaviate, one collection per (collection, dimension); see the module doc."""

    capabilities = VectorCapabilities(
        name="weaviate",
        metrics=frozenset(DISTANCES),
        filter_operators=OPERATORS,
        hybrid=True,
        max_dimension=MAX_DIMENSION,
        transactional=False,
        approximate=True,
    )

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        if not settings.weaviate_url and client is None:
            raise InvalidInputError("VECTOR_DATABASE=weaviate needs WEAVIATE_URL")
        self.settings = settings
        self.url = settings.weaviate_url or ""
        self.store = WeaviateStore(settings, client)

    @property
    def location(self) -> str:
        return mask_url(self.url)

    async def ensure_collection(
        self, collection: str, dimension: int, metric: Metric = "cosine"
    ) -> None:
        """Create the collection for ``dimension`` (idempotent; the metric must match)."""
        collection_table(collection)
        if metric not in DISTANCES or not 1 <= dimension <= MAX_DIMENSION:
            raise InvalidInputError(
                f"metric must be one of {sorted(DISTANCES)} and dimension 1..{MAX_DIMENSION}"
            )
        async with self._errors("ensuring the collection"):
            existing = await self.store.metric(collection, dimension)
            if existing is not None and existing != metric:
                name = self.store.name_for(collection, dimension)
                raise InvalidInputError(f"{name} exists with metric {existing!r}, not {metric!r}")
            if existing is None:
                await self.store.create(collection, dimension, metric)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Insert or replace by id (Weaviate's batch import overwrites the same UUID)."""
        records = check_records(records)
        latest = {str(r.id): r for r in records}
        async with self._errors("upserting vectors"):
            await self.validate_records(collection, list(latest.values()))
            by_dimension: dict[int, list[VectorRecord]] = {}
            for record in latest.values():
                by_dimension.setdefault(len(record.vector), []).append(record)
            for dimension, group in by_dimension.items():
                await self._write(collection, dimension, group)
        return len(latest)

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """The ``k`` nearest matching records (cosine: ``1 - distance``)."""
        k = check_k(k)
        return await self._search(collection, None, vector, k, filters, embedding_model, 0.0)

    async def hybrid(
        self,
        collection: str,
        text: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        alpha: float = 0.5,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """Weaviate's hybrid search: BM25 on the document text fused with the vector search.

        ``alpha`` 1 is pure vector, 0 pure keyword; the score is Weaviate's fused score.
        """
        return await self._search(collection, text, vector, k, filters, embedding_model, alpha)

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Remove these ids from every dimension's collection; returns how many existed."""
        ids = check_ids(ids)
        from weaviate.classes.query import Filter
        from weaviate.util import generate_uuid5

        uuids = list(dict.fromkeys(generate_uuid5(str(i)) for i in ids))
        removed = 0
        async with self._errors("deleting vectors"):
            for col in await self.store.collections(collection):
                for start in range(0, len(uuids), BATCH):
                    where = Filter.by_id().contains_any(uuids[start : start + BATCH])
                    removed += (await col.data.delete_many(where=where)).successful
        return removed

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        """Remove every vector matching ``filters`` (a filter is required)."""
        ids = await self.ids_where(collection, filters)
        return await self.delete(collection, ids) if ids else 0

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        """How many vectors the collection holds (matching ``filters``)."""
        node = parse_filters(filters)
        total = 0
        async with self._errors("counting vectors"):
            for col in await self.store.collections(collection):
                if node is None:
                    total += (await col.aggregate.over_all(total_count=True)).total_count or 0
                else:
                    total += len(await self._matching(col, node))
        return total

    async def ids_where(self, collection: str, filters: Mapping[str, Any]) -> list[RecordId]:
        """The row ids of every vector matching ``filters``; a filter is required."""
        node = parse_filters(filters)
        if node is None:
            raise InvalidInputError("a filter is required; use delete(ids) for known ids")
        async with self._errors("selecting vectors"):
            found: list[RecordId] = []
            for col in await self.store.collections(collection):
                found.extend(json.loads(p[ID_PROPERTY]) for p in await self._matching(col, node))
        return found

    async def validate_records(self, collection: str, records: Sequence[VectorRecord]) -> None:
        """Raise ``InvalidInputError`` for what ``upsert`` would refuse, without writing."""
        for record in records:
            dimension = len(record.vector)
            metric = await self.store.metric(collection, dimension)
            if metric is None and dimension not in ARCHON_DIMENSIONS:
                raise InvalidInputError(
                    f"wrong vector length: received {dimension}, which has no collection; run "
                    f"`archon-db vectors add-dimension {dimension}` first"
                )
            check_vector(record.vector, metric=metric or "cosine")  # type: ignore[arg-type]
            flatten(record.metadata)
            to_json(record.metadata)

    # -- a store derived from the rows (``app.vector.outbox``) -------------------------------

    def use_namespace(self, namespace: str | None) -> None:
        """Read and write the collections of the database whose identity gives ``namespace``."""
        self.store.use_namespace(namespace)

    async def dimensions(self, collection: str) -> dict[int, str]:
        """Dimension -> metric of this database's collections of ``collection``."""
        found = {}
        async with self._errors("listing collections"):
            for col in await self.store.collections(collection):
                dimension = self.store.dimension_of(collection, col.name, self.store.namespace)
                if dimension is not None:
                    found[dimension] = await self.store.metric(collection, dimension) or "cosine"
        return found

    async def stored_ids(self, collection: str, dimension: int) -> list[str]:
        """The ids held for ``dimension``."""
        return list(await self._objects(collection, dimension, None, vectors=False))

    async def stored_records(
        self, collection: str, dimension: int, ids: Sequence[str]
    ) -> dict[str, tuple[Any, dict[str, Any] | None]]:
        """id -> (stored vector, metadata) of those ``ids`` held for ``dimension``."""
        found = await self._objects(collection, dimension, list(ids), vectors=True)
        return {id_: (vector, None) for id_, vector in found.items()}

    async def _objects(
        self, collection: str, dimension: int, ids: list[str] | None, *, vectors: bool
    ) -> dict[str, Any]:
        from weaviate.classes.query import Filter
        from weaviate.util import generate_uuid5

        found: dict[str, Any] = {}
        async with self._errors("reading stored vectors"):
            if await self.store.metric(collection, dimension) is None:
                return found
            col = await self.store.collection(collection, dimension)
            options: dict[str, Any] = {"limit": BATCH, "return_properties": [ID_PROPERTY],
                                       "include_vector": vectors}  # fmt: skip
            pages: list[dict[str, Any]] = []
            if ids is not None:
                for start in range(0, len(ids), BATCH):
                    chunk = [generate_uuid5(str(i)) for i in ids[start : start + BATCH]]
                    pages.append({"filters": Filter.by_id().contains_any(chunk)})
            else:
                pages.append({})
            while pages:
                page = pages.pop()
                objects = (await col.query.fetch_objects(**options, **page)).objects
                for obj in objects:
                    vector = obj.vector.get("default") if vectors else None
                    found[str(json.loads(obj.properties[ID_PROPERTY]))] = vector
                if ids is None and len(objects) == BATCH:
                    pages.append({"after": objects[-1].uuid})
        return found

    async def drop(self, collection: str) -> dict[int, str]:
        """Delete this database's collections of ``collection``; dimension -> metric they had."""
        dropped = await self.dimensions(collection)
        async with self._errors("dropping collections"):
            await self.store.drop_names([self.store.name_for(collection, d) for d in dropped])
        return dropped

    async def foreign(self) -> list[str]:
        """Collections of another database, or of an earlier life of this one (never read)."""
        ours = {
            self.store.name_for(c, d) for c in COLLECTIONS for d in await self.dimensions(c)
        }
        async with self._errors("listing collections"):
            return [name for name in await self.store.names() if name not in ours]

    async def drop_foreign(self, names: Sequence[str]) -> None:
        """Delete these collections (from ``foreign``)."""
        async with self._errors("dropping collections"):
            await self.store.drop_names(list(names))

    async def describe(self) -> dict[str, Any]:
        """What ``archon-db doctor`` prints about this store."""
        async with self._errors("describing the store"):
            client = await self.store.client()
            meta = await client.get_meta()
            names = sorted(n for n in await client.collections.list_all(simple=True))
        return {
            "backend": "weaviate",
            "location": self.location,
            "server version": meta.get("version"),
            "collections": [n for n in names if n.startswith("Archon_")],
        }

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.store.close()

    # -- internals ---------------------------------------------------------------------------

    async def _write(self, collection: str, dimension: int, records: list[VectorRecord]) -> None:
        if await self.store.metric(collection, dimension) is None:
            await self.store.create(collection, dimension, "cosine")
        col = await self.store.collection(collection, dimension)
        if any(c.name != col.name for c in await self.store.collections(collection)):
            # A row re-embedded at another length moves collections.
            await self.delete(collection, [r.id for r in records])
        await self.store.write(col, records)

    async def _plan(self, col: Any, node: Node | None) -> FilterPlan[Any]:
        from weaviate.classes.query import Filter

        types = self.store.types
        plan = plan_filter(node, lambda: translator(types.get(col.name, {})))
        if any(property_name(k) not in types.get(col.name, {}) for k in plan.keys):
            # A property another process added since the schema was read: read it again.
            await self.store.read_schema(col)
            plan = plan_filter(node, lambda: translator(types[col.name]))
        if plan.keys:  # a key whose value did not fit its property's type: evaluate in Python
            where = Filter.by_property(OPAQUE_PROPERTY).contains_any(sorted(plan.keys))
            found = await col.aggregate.over_all(total_count=True, filters=where)
            if found.total_count:
                plan = plan_filter(node, lambda: translator({}), force_exact=True)
        return plan

    async def _where(self, col: Any, node: Node | None) -> tuple[Any, bool]:
        """The Weaviate filter for ``node`` and whether nothing can match."""
        from weaviate.classes.query import Filter

        plan = await self._plan(col, node)
        if not plan.exact:
            return plan.native, False
        uuids = [m["uuid"] for m in await self._matching(col, node)]
        return (Filter.by_id().contains_any(uuids), False) if uuids else (None, True)

    async def _matching(self, col: Any, node: Node | None) -> list[dict[str, Any]]:
        """Properties of every object matching ``node`` exactly (a full scan, then Python)."""
        matches = []
        async for obj in col.iterator(return_properties=[ID_PROPERTY, JSON_PROPERTY]):
            if evaluate(node, from_json(obj.properties.get(JSON_PROPERTY))):
                matches.append({**obj.properties, "uuid": str(obj.uuid)})
        return matches

    async def _search(
        self,
        collection: str,
        text: str | None,
        vector: Sequence[float],
        k: int,
        filters: Mapping[str, Any] | None,
        embedding_model: str | None,
        alpha: float,
    ) -> list[VectorHit]:
        from weaviate.classes.query import MetadataQuery

        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        node = with_model(parse_filters(filters), embedding_model)
        async with self._errors("searching vectors"):
            metric = await self.store.metric(collection, len(vector))
            if metric is None and len(vector) not in ARCHON_DIMENSIONS:
                raise InvalidInputError(f"wrong vector length: no collection for {len(vector)}")
            check_vector(vector, metric=metric or "cosine")  # type: ignore[arg-type]
            if metric is None:
                return []
            col = await self.store.collection(collection, len(vector))
            where, empty = await self._where(col, node)
            if empty:
                return []
            options = {
                "limit": k,
                "filters": where,
                "return_properties": [ID_PROPERTY, JSON_PROPERTY],
            }
            query = [float(x) for x in vector]
            if text is None:
                metadata = MetadataQuery(distance=True)
                found = await col.query.near_vector(query, return_metadata=metadata, **options)
            else:
                metadata = MetadataQuery(score=True)
                found = await col.query.hybrid(
                    text, vector=query, alpha=alpha, query_properties=[DOCUMENT_PROPERTY],
                    return_metadata=metadata, **options,
                )  # fmt: skip
        return [to_hit(obj, metric, text is not None) for obj in found.objects]

    @asynccontextmanager
    async def _errors(self, action: str) -> AsyncIterator[None]:
        try:
            yield
        except DataLayerError:
            raise
        except Exception as exc:
            raise translate_error(exc, action, self.location, self.settings) from exc
