"""``DataLayer.ingest``: store one crawl of a source — its chunks and their vectors — at once.

In ONE Unit of Work: the source is inserted or updated; the chunks already stored for the given
URLs are deleted; the new chunks are written in batches. The entity type picks the collection
(``CrawledPage`` -> ``crawled_pages``, ``CodeExample`` -> ``code_examples``). Each row records its
embedding model and dimension (Archon's ``embedding_model`` / ``embedding_dimension``). Nothing is
visible until the commit, and a failure anywhere leaves the database as it was (the external
stores' writes go through their outbox and are applied after the commit).

Each vector is written in its chunk's own row write (``add_with_vectors``: COPY on PostgreSQL,
multi-row INSERT elsewhere), so a row is written once, whatever the index: the rows are the system
of record. With an external store (Chroma, Weaviate) the view also records the store's copies in
the outbox, applied after the commit; the replaced rows' vectors leave the store through the
deletes the database queues for them.

``items`` may be any iterable: it is consumed one batch at a time, so a long crawl never sits in
memory at once.

A URL whose chunks belong to another source is refused (``InvalidInputError`` naming that source)
unless ``move=True``, which moves it to this source; the refusal rolls the whole call back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state

from app.domain import CodeExample, CrawledPage, Source
from app.errors import InvalidInputError, translate_errors
from app.ingest_urls import delete_urls, refuse_other_owners
from app.repositories import bulk
from app.repositories.audit import given_fields, record
from app.repositories.bulk_insert import can_insert_with_columns
from app.repositories.validation import columns_of, validator_for
from app.vector.factory import concrete_view, store_feed
from app.vector.outbox.rows import chunk_fields
from app.vector.port import VectorRecord, vector_length
from app.vector.sql.base import SqlVectorIndex
from app.vector.sql.common import as_matrix

if TYPE_CHECKING:
    from app.uow.port import UnitsOfWork
    from app.uow.sqlalchemy import SqlAlchemyUnitOfWork

Chunk = CrawledPage | CodeExample
Item = tuple[Chunk, Sequence[float] | None]
# done, total; total is the count so far when ``items`` has no length.
Progress = Callable[[int, int], Any]
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 1_000_000  # a batch is held in memory; islice takes no more than sys.maxsize
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
    """The vector of a stored chunk, with the fields its row holds (``chunk_fields``)."""
    assert chunk.id is not None
    return VectorRecord(chunk.id, vector, chunk_fields(chunk), chunk.content)


@dataclass
class _Batch:
    """One batch, checked: its chunks, and its vectors as one matrix (None where absent)."""

    chunks: list[Chunk]
    vectors: list[Sequence[float] | None]
    matrix: np.ndarray | None  # rows of the chunks that have a vector, in order


class _Ingestion:
    """The state of one ``ingest`` call while its batches go by."""

    def __init__(
        self, layer: UnitsOfWork, source: Source, embedding_model: str | None, move: bool
    ) -> None:
        self.layer, self.source, self.embedding_model = layer, source, embedding_model
        self.move = move
        self.kind: type | None = None
        self.dimension: int | None = None
        self.urls: set[str] = set()
        self.replaced = self.written = self.vectors = 0

    @property
    def collection(self) -> str:
        return _COLLECTIONS[self.kind or CrawledPage][0]

    def check(self, items: list[Item]) -> _Batch:
        """Every chunk is of one kind and belongs to the source; vectors valid, of one length."""
        for item in items:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise InvalidInputError(
                    f"ingest items are (chunk, vector) pairs, got {type(item).__name__}"
                )
        chunks = [chunk for chunk, _ in items]
        vectors = [vector for _, vector in items]
        self._check_chunks(chunks)
        given = [vector for vector in vectors if vector is not None]
        lengths = {vector_length(vector) for vector in given} | (
            {self.dimension} if self.dimension is not None and given else set()
        )
        if len(lengths) > 1:
            raise InvalidInputError(
                f"one ingest holds vectors of one embedding model and length; got {sorted(lengths)}"
            )
        matrix = None
        if given:
            self.dimension = lengths.pop()
            matrix = as_matrix(given, self.dimension)  # NaN, infinity and zero vectors at once
        # Straight into the state: the chunks are transient and written by Core, so the ORM's
        # change events and pydantic's assignment checks (an int, a str) buy nothing here and
        # cost ~10 us a chunk.
        model = self.embedding_model
        dimensions = (
            [self.dimension] * len(items)
            if len(given) == len(vectors)
            else [len(vector) if vector is not None else None for vector in vectors]
        )
        for chunk, dimension in zip(chunks, dimensions, strict=True):
            state = chunk.__dict__
            state["embedding_model"] = model or state.get("embedding_model")
            state["embedding_dimension"] = dimension
        return _Batch(chunks, vectors, matrix)

    def _check_chunks(self, chunks: list[Chunk]) -> None:
        kinds = {type(chunk) for chunk in chunks}
        sources = {getattr(chunk, "__dict__", {}).get("source_id") for chunk in chunks}
        kind = kinds.pop() if len(kinds) == 1 else None
        if (
            kind in _COLLECTIONS
            and self.kind in (None, kind)
            and sources == {self.source.source_id}
        ):
            self.kind = kind
            return
        for chunk in chunks:  # something is wrong: find the first chunk at fault
            kind = type(chunk)
            if kind not in _COLLECTIONS:
                raise InvalidInputError(
                    f"ingest stores CrawledPage or CodeExample, not {kind.__name__}"
                )
            if self.kind is not None and kind is not self.kind:
                raise InvalidInputError(
                    "ingest takes one kind of chunk: CrawledPage or CodeExample"
                )
            self.kind = kind
            if chunk.source_id != self.source.source_id:
                raise InvalidInputError(
                    f"chunk {chunk.url}#{chunk.chunk_number} names source {chunk.source_id!r}, "
                    f"not the ingested source {self.source.source_id!r}"
                )

    def report(self) -> IngestReport:
        return IngestReport(
            source_id=self.source.source_id,
            collection=self.collection,
            urls=len(self.urls),
            replaced=self.replaced,
            written=self.written,
            vectors=self.vectors,
            dimension=self.dimension,
            embedding_model=self.embedding_model,
        )


async def ingest(
    layer: UnitsOfWork,
    source: Source,
    items: Iterable[Item],
    *,
    embedding_model: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
    actor: str | None = None,
    move: bool = False,
) -> IngestReport:
    """Store ``source`` and replace the chunks of the items' URLs; ``on_progress(done, total)``.

    ``actor``: who the audit log names for the writes (``ENABLE_AUDIT_LOG``); ``move``: take
    over URLs whose chunks another source holds (else ``InvalidInputError``)."""
    _check_arguments(source, items, batch_size, on_progress)
    total = len(items) if isinstance(items, Sized) else None
    run = _Ingestion(layer, source, embedding_model, move)
    batches = _batches(items, batch_size)
    # The first batch is checked (and its vector column made sure of) before any write.
    first = next(batches, [])
    pending: _Batch | None = run.check(first)
    await _ensure_column(run)
    async with layer.uow(actor=actor) as uow:
        vectors = await concrete_view(uow.vectors)
        prepare = getattr(vectors, "prepare_writes", None)
        if prepare is not None:
            await prepare()  # before the replaced rows go, so their deletes are queued
        await _upsert_source(uow, source)
        stored: list[Chunk] = []
        while pending is not None:
            _detach(stored)  # the previous batch's rows
            stored = await _write(run, uow, vectors, pending)
            if on_progress is not None:
                on_progress(run.written, total if total is not None else run.written)
            following = next(batches, None)
            pending = None if following is None else await _check_more(run, following)
        if run.vectors and hasattr(type(vectors), "written"):
            await vectors.written(run.collection)
        await _commit_detaching(uow, stored)
    return run.report()


def _detach(chunks: list[Chunk]) -> None:
    """Rows written by Core (not the session) become stored entities, as after ``add_many``;
    a chunk that ``on_progress`` gave to a session meanwhile is the session's."""
    for chunk in chunks:
        if instance_state(chunk).transient:
            make_transient_to_detached(chunk)


async def _commit_detaching(uow: SqlAlchemyUnitOfWork, chunks: list[Chunk]) -> None:
    """Commit, detaching ``chunks`` while the server makes the commit durable.

    The last batch's bookkeeping (~4 us a chunk, no database) then costs no time of its own:
    the COMMIT is on its way before it starts, and the session is only ever used by the commit.
    """
    if not chunks:
        await uow.commit()
        return
    commit = asyncio.ensure_future(uow.commit())
    try:
        await asyncio.sleep(0)  # the commit runs up to its wait for the server
        _detach(chunks)
    finally:
        await commit  # never left running behind us, even when we are cancelled


def _check_arguments(source: Any, items: Any, batch_size: Any, on_progress: Any) -> None:
    """Arguments of the wrong kind, refused by name before anything is read or written."""
    if not isinstance(source, Source):
        raise InvalidInputError(f"ingest needs a Source, not {type(source).__name__}")
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        raise InvalidInputError(
            f"ingest items are an iterable of (chunk, vector) pairs, not {type(items).__name__}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InvalidInputError(f"batch_size must be a whole number, got {batch_size!r}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInputError(f"batch_size must be from 1 to {MAX_BATCH_SIZE}, got {batch_size}")
    if on_progress is not None and not callable(on_progress):
        raise InvalidInputError(f"on_progress must be callable, got {on_progress!r}")


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


async def _check_more(run: _Ingestion, items: list[Item]) -> _Batch:
    """A later batch: checked; a first vector length met here gets its column now."""
    had = run.dimension
    batch = run.check(items)
    if had is None:
        await _ensure_column(run)
    return batch


async def _ensure_column(run: _Ingestion) -> None:
    """The vector column (and an external store's collection) for the ingest's vectors; skipped
    when known."""
    if run.dimension is None:
        return
    index = run.layer.vector_index
    resolve = getattr(index, "resolve", None)
    if resolve is not None:
        index = await resolve()
    feed = store_feed(index, run.layer.engine)
    if feed is not None:
        await feed.ensure_collection(run.collection, run.dimension)
        return
    if isinstance(index, SqlVectorIndex) and index.has_dimension(run.collection, run.dimension):
        return  # a round trip (and a transaction of its own) saved on every call
    await index.ensure_collection(run.collection, run.dimension)


async def _upsert_source(uow: SqlAlchemyUnitOfWork, source: Source) -> None:
    # No savepoint (as the repositories take): a failure anywhere abandons the whole ingest.
    sources = validator_for(Source).many([source])
    plan = bulk.plan(columns_of(Source), ["source_id"], None)
    with translate_errors("storing the source"):
        connection = await uow.session.connection()
        await bulk.upsert_all(uow.session, connection.dialect, plan, sources)
    record(uow.session, plan.columns.table.name, "upsert", [sources[0].source_id],
           fields=given_fields(plan.columns.attr_of, sources))  # fmt: skip


async def _write(
    run: _Ingestion, uow: SqlAlchemyUnitOfWork, vectors: Any, batch: _Batch
) -> list[Chunk]:
    """Replace the chunks of the batch's new URLs, then write the batch's rows and vectors.

    Returns the chunks written by Core, for ``_detach`` (those added through the repository
    are the session's already)."""
    chunks = validator_for(run.kind or CrawledPage).many(batch.chunks)
    if not chunks:
        return []
    if not all(instance_state(chunk).transient for chunk in chunks):
        raise InvalidInputError("a chunk given to ingest is already stored")
    fresh = sorted({chunk.__dict__["url"] for chunk in chunks} - run.urls)  # checked: set
    run.urls.update(fresh)
    dialect = (await uow.session.connection()).dialect
    in_row = hasattr(type(vectors), "add_with_vectors") and can_insert_with_columns(dialect)
    if not run.move:
        await refuse_other_owners(uow.session, run.collection, fresh, run.source.source_id)
    run.replaced += await delete_urls(uow.session, run.collection, fresh)
    if in_row:
        present = [vector is not None for vector in batch.vectors]
        await vectors.add_with_vectors(run.collection, chunks, batch.matrix, present, bump=False)
    else:
        await getattr(uow, _COLLECTIONS[type(chunks[0])][1]).add_many(chunks)
        pairs = zip(chunks, batch.vectors, strict=True)
        records = [vector_record(c, v) for c, v in pairs if v is not None]
        if records:
            await vectors.upsert(run.collection, records)
    run.written += len(chunks)
    run.vectors += 0 if batch.matrix is None else len(batch.matrix)
    return chunks if in_row else []
