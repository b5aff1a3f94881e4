"""``DataLayer.ingest``: store one crawl of a source — its chunks and their vectors — at once.

In ONE Unit of Work: the source is inserted or updated; the chunks already stored for the given
URLs are deleted with their vectors; the new chunks are added in batches, each batch's vectors
written right after it. The entity type picks the collection (``CrawledPage`` ->
``crawled_pages``, ``CodeExample`` -> ``code_examples``). Each row records its embedding model and
dimension (Archon's ``embedding_model`` / ``embedding_dimension``). Nothing is visible until the
commit, and a failure anywhere leaves the database as it was (the external stores' writes go
through their outbox and are applied after the commit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from app.domain import CodeExample, CrawledPage, Source
from app.errors import InvalidInputError, translate_errors
from app.vector.port import VectorRecord
from app.vector.sql_common import ENTITIES, as_matrix

if TYPE_CHECKING:
    from app.bootstrap import DataLayer
    from app.uow.sqlalchemy import SqlAlchemyUnitOfWork

Chunk = CrawledPage | CodeExample
Item = tuple[Chunk, Sequence[float] | None]
Progress = Callable[[int, int], Any]
DEFAULT_BATCH_SIZE = 500
_COLLECTIONS: dict[type, tuple[str, str]] = {
    CrawledPage: ("crawled_pages", "pages"),
    CodeExample: ("code_examples", "code_examples"),
}


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one ``ingest`` call wrote."""

    source_id: str
    collection: str
    urls: int
    replaced: int
    written: int
    vectors: int
    dimension: int | None
    embedding_model: str | None


def vector_record(chunk: Chunk, vector: Sequence[float]) -> VectorRecord:
    """The vector of a stored chunk, with the fields filters address (for external stores)."""
    assert chunk.id is not None
    metadata = {
        "source_id": chunk.source_id,
        "url": chunk.url,
        "chunk_number": chunk.chunk_number,
        "embedding_model": chunk.embedding_model,
        "metadata": dict(chunk.metadata_ or {}),
    }
    return VectorRecord(id=chunk.id, vector=vector, metadata=metadata, document=chunk.content)


async def ingest(
    layer: DataLayer,
    source: Source,
    items: Sequence[Item],
    *,
    embedding_model: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
) -> IngestReport:
    """Store ``source`` and replace the chunks of the items' URLs; ``on_progress(done, total)``."""
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
    collection, repository = _collection_of(items)
    dimension = _check_items(source, items)
    if dimension is not None:
        await layer.vector_index.ensure_collection(collection, dimension)
    urls = sorted({chunk.url for chunk, _ in items})
    for chunk, vector in items:
        chunk.embedding_model = embedding_model or chunk.embedding_model
        chunk.embedding_dimension = len(vector) if vector is not None else None
    async with layer.uow() as uow:
        await uow.sources.upsert_many([source], on=["source_id"])
        chunks = getattr(uow, repository)
        replaced = await _delete_urls(uow, chunks, collection, urls)
        vectors = 0
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            await chunks.add_many([chunk for chunk, _ in batch])
            records = [vector_record(c, v) for c, v in batch if v is not None]
            if records:
                vectors += await uow.vectors.upsert(collection, records)
            if on_progress is not None:
                on_progress(start + len(batch), len(items))
        await uow.commit()
    return IngestReport(
        source_id=source.source_id,
        collection=collection,
        urls=len(urls),
        replaced=replaced,
        written=len(items),
        vectors=vectors,
        dimension=dimension,
        embedding_model=embedding_model,
    )


def _collection_of(items: Sequence[Item]) -> tuple[str, str]:
    kinds = {type(chunk) for chunk, _ in items}
    if len(kinds) > 1:
        raise InvalidInputError("ingest takes one kind of chunk: CrawledPage or CodeExample")
    kind = kinds.pop() if kinds else CrawledPage
    if kind not in _COLLECTIONS:
        raise InvalidInputError(f"ingest stores CrawledPage or CodeExample, not {kind.__name__}")
    return _COLLECTIONS[kind]


def _check_items(source: Source, items: Sequence[Item]) -> int | None:
    """Every chunk belongs to ``source``; every vector is valid and of one length (returned)."""
    for chunk, _ in items:
        if chunk.source_id != source.source_id:
            raise InvalidInputError(
                f"chunk {chunk.url}#{chunk.chunk_number} names source {chunk.source_id!r}, "
                f"not the ingested source {source.source_id!r}"
            )
    vectors = [vector for _, vector in items if vector is not None]
    lengths = {len(vector) for vector in vectors}
    if len(lengths) > 1:
        raise InvalidInputError(
            f"one ingest holds vectors of one embedding model and length; got {sorted(lengths)}"
        )
    if not vectors:
        return None
    dimension = lengths.pop()
    as_matrix(vectors, dimension)  # NaN, infinity and zero vectors, all at once
    return dimension


async def _delete_urls(
    uow: SqlAlchemyUnitOfWork, chunks: Any, collection: str, urls: list[str]
) -> int:
    """Delete the stored chunks of ``urls`` and their vectors; how many chunks went."""
    if not urls:
        return 0
    model = ENTITIES[collection]
    ids: list[int] = []
    for start in range(0, len(urls), 500):
        statement = sa.select(model.id).where(model.url.in_(urls[start : start + 500]))
        with translate_errors("finding the chunks to replace"):
            ids += (await uow.session.execute(statement)).scalars().all()
    if ids:
        await uow.vectors.delete(collection, ids)
    return int(await chunks.delete_by_urls(urls))
