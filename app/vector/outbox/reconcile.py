"""Checking an external store against the rows, and rebuilding it from them.

``reconcile`` compares, per collection and length, the rows holding a vector with the records the
store holds: *orphans* (a record whose row is gone or holds no vector of that length), *missing* (a
row vector the store lacks) and *stale* (the store's vector differs from the row's beyond float32
rounding). With ``apply`` each of them is made to hold what the row holds (``sync_ids``).
``rebuild`` drops this database's collections and writes them again from the rows, page by page; an
embedded store that no longer opens is moved aside first (``<folder>.broken-<time>``), its vectors
being in the rows anyway. ``import_from_store`` copies the vectors of a store written before the
rows held them (collections not named by the database) into rows that have none.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import DataLayerError, InvalidInputError, translate_errors
from app.vector.external.records import flatten
from app.vector.outbox.identity import set_external_store
from app.vector.outbox.rows import RowReader, RowVector
from app.vector.outbox.sync import write_records
from app.vector.outbox.table import drain, outbox, queue
from app.vector.port import COLLECTIONS, VectorRecord, collection_table
from app.vector.sql.common import ENTITIES

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], Any]  # collection, done, total
SYNC_BATCH = 500


@dataclass
class CollectionCheck:
    """One collection's rows against its store records."""

    collection: str
    rows: int = 0
    stored: int = 0
    orphans: int = 0
    missing: int = 0
    stale: int = 0
    repaired: int = 0

    @property
    def level(self) -> bool:
        return not (self.orphans or self.missing or self.stale)


async def reconcile(
    feed: Any, *, apply: bool = False, on_progress: Progress | None = None
) -> list[CollectionCheck]:
    """Compare the store with the rows, per collection; with ``apply``, repair what differs."""
    checks = []
    for collection in COLLECTIONS:
        check, differing = await _compare(feed, collection, on_progress)
        if apply and differing:
            # Through the outbox, so a concurrent Unit of Work applying the same ids goes before
            # or after the repair, never in between.
            batch = f"reconcile-{uuid.uuid4().hex[:16]}"
            await queue(feed.engine, collection, differing, batch)
            report = await drain(feed, batch=batch)
            if report.failed:
                raise DataLayerError(
                    f"{collection}: {report.failed} repair(s) failed and stay pending "
                    f"(`archon-db vectors sync` retries): {'; '.join(report.errors)[:500]}"
                )
            check.repaired += len(differing)
        checks.append(check)
    return checks


async def _compare(
    feed: Any, collection: str, on_progress: Progress | None
) -> tuple[CollectionCheck, list[str]]:
    check = CollectionCheck(collection)
    differing: dict[str, None] = {}
    async with AsyncSession(feed.engine) as session, session.begin():
        await feed.ready(session)
        reader = RowReader(feed.rows, session)
        row_dimensions = await reader.dimensions(collection)
        store_dimensions = await feed.store.dimensions(collection)
        for dimension in sorted(set(row_dimensions) | set(store_dimensions)):
            ids: Any = []
            if dimension in row_dimensions:
                ids = await reader.ids(collection, dimension)
            held = set()
            if dimension in store_dimensions:
                held = set(await feed.store.stored_ids(collection, dimension))
            rows = {str(i) for i in ids}
            check.rows += len(rows)
            check.stored += len(held)
            orphans, missing = held - rows, rows - held
            check.orphans += len(orphans)
            check.missing += len(missing)
            differing.update(dict.fromkeys(sorted(orphans | missing)))
            if dimension in row_dimensions and held:
                stale = await _stale(feed, reader, collection, dimension, held, on_progress)
                check.stale += len(stale)
                differing.update(dict.fromkeys(stale))
    return check, list(differing)


async def _stale(
    feed: Any,
    reader: RowReader,
    collection: str,
    dimension: int,
    held: set[str],
    on_progress: Progress | None,
) -> list[str]:
    stale, done = [], 0
    async for page in reader.pages(collection, dimension):
        both = [row for row in page if str(row.id) in held]
        stored = await feed.store.stored_records(
            collection, dimension, [str(row.id) for row in both]
        )
        for row in both:
            if not _same(stored.get(str(row.id)), row):
                stale.append(str(row.id))
        done += len(page)
        if on_progress is not None:
            on_progress(collection, done, 0)
    return stale


def _same(stored: tuple[Any, dict[str, Any] | None] | None, row: RowVector) -> bool:
    """Whether a store's record holds the row's vector and fields (compared as flattened, the
    way the store holds them: absent and None alike, ints among floats widened)."""
    if stored is None:
        return False
    vector, metadata = stored
    # Stores hand float32 values back with a rounding of their own (~1e-7).
    if not np.allclose(np.asarray(vector, dtype=np.float64), row.vector, rtol=1e-5, atol=1e-6):
        return False
    if metadata is None:  # a store that does not hand its metadata back
        return True
    return bool(flatten(metadata).values == flatten(row.metadata).values)


@dataclass
class RebuildReport:
    """What one collection's rebuild wrote."""

    collection: str
    records: int
    dimensions: list[int]
    moved_aside: str | None = None


async def rebuild(
    feed: Any, collection: str | None = None, *, on_progress: Progress | None = None
) -> list[RebuildReport]:
    """Recreate this database's collections from the rows (all collections, or one)."""
    targets = [collection] if collection is not None else list(COLLECTIONS)
    for name in targets:
        collection_table(name)
    metrics: dict[str, dict[int, str]] = {name: {} for name in targets}
    try:
        metrics = await _drop(feed, targets)
        return [await _rebuild_one(feed, name, metrics[name], on_progress) for name in targets]
    except DataLayerError as exc:
        if isinstance(exc, InvalidInputError):
            raise
        moved = await _move_aside(feed, exc)  # raises ``exc`` again for a server
    reports = [await _rebuild_one(feed, name, metrics[name], on_progress) for name in targets]
    for report in reports:
        report.moved_aside = moved
    return reports


async def _drop(feed: Any, targets: list[str]) -> dict[str, dict[int, str]]:
    async with AsyncSession(feed.engine) as session:
        await feed.ready(session)
    return {name: await feed.store.drop(name) for name in targets}


async def _move_aside(feed: Any, exc: DataLayerError) -> str:
    """An embedded store that cannot be used is moved aside; a server's error stands."""
    quarantine = getattr(feed.store, "quarantine", None)
    moved = await quarantine() if quarantine is not None else None
    if moved is None:
        raise exc
    log.warning("the vector store could not be used (%s); moved it to %s", exc, moved)
    return str(moved)


async def _rebuild_one(
    feed: Any, collection: str, metrics: dict[int, str], on_progress: Progress | None
) -> RebuildReport:
    async with AsyncSession(feed.engine) as session, session.begin():
        upper = await session.scalar(sa.select(sa.func.max(outbox.c.id)))
        reader = RowReader(feed.rows, session)
        dimensions = await reader.dimensions(collection)
        totals = {d: len(await reader.ids(collection, d)) for d in dimensions}
        total, done, used = sum(totals.values()), 0, []
        for dimension in dimensions:
            if not totals[dimension]:
                continue
            used.append(dimension)
            metric = metrics.get(dimension, "cosine")
            await feed.store.ensure_collection(collection, dimension, metric)
            async for page in reader.pages(collection, dimension):
                await write_records(feed.store, collection, [row.record() for row in page])
                done += len(page)
                if on_progress is not None:
                    on_progress(collection, done, total)
        await set_external_store(session, feed.name)
        if upper is not None:  # what was pending is in the store now
            where = (outbox.c.collection == collection) & (outbox.c.id <= upper)
            with translate_errors("clearing the vector outbox"):
                await session.execute(outbox.delete().where(where))
    return RebuildReport(collection, done, used)


async def import_from_store(feed: Any, *, on_progress: Progress | None = None) -> dict[str, int]:
    """Copy the vectors of collections written before the rows held them into rows that hold
    none (the row found by id, and by url and chunk number when the record names them)."""
    legacy = getattr(feed.store, "legacy_pages", None)
    copied: dict[str, int] = {}
    for collection in COLLECTIONS:
        copied[collection] = 0
        if legacy is None:
            continue
        async for dimension, page in legacy(collection):
            await feed.ensure_collection(collection, dimension)
            async with AsyncSession(feed.engine) as session, session.begin():
                records = await _adoptable(feed, session, collection, page)
                if records:
                    await feed.rows.bind(session).upsert(collection, records)
            copied[collection] += len(records)
            if on_progress is not None:
                on_progress(collection, copied[collection], 0)
    return copied


async def _adoptable(
    feed: Any, session: AsyncSession, collection: str, page: list[Any]
) -> list[VectorRecord]:
    by_id: dict[int, tuple[Any, dict[str, Any]]] = {}
    for id_, vector, metadata in page:
        try:
            by_id[int(id_)] = (vector, metadata)
        except (TypeError, ValueError):
            continue
    table = ENTITIES[collection].__table__
    statement = sa.select(table.c.id, table.c.url, table.c.chunk_number).where(
        table.c.id.in_(list(by_id))
    )
    with translate_errors(f"reading {table.name}"):
        rows = (await session.execute(statement)).all()
    with_vectors = await RowReader(feed.rows, session).by_ids(collection, [r.id for r in rows])
    records = []
    for row in rows:
        vector, metadata = by_id[int(row.id)]
        if int(row.id) in with_vectors:
            continue
        if metadata.get("url", row.url) != row.url:
            continue  # the id was handed to another chunk since
        if metadata.get("chunk_number", row.chunk_number) != row.chunk_number:
            continue
        model = {"embedding_model": metadata["embedding_model"]} if metadata.get(
            "embedding_model") else {}  # fmt: skip
        stored: Any = np.asarray(vector, dtype=np.float32)
        records.append(VectorRecord(int(row.id), stored, model))
    return records


@dataclass
class StoreSummary:
    """Per collection (rows holding a vector, store records); the store's other collections."""

    counts: dict[str, tuple[int, int]]
    foreign: list[str]
    legacy: bool


async def summarize(feed: Any) -> StoreSummary:
    """What ``vectors status`` and ``doctor`` show: counts only, no vector compared."""
    async with AsyncSession(feed.engine) as session:
        await feed.ready(session)
    counts = {}
    for collection in COLLECTIONS:
        counts[collection] = (
            int(await feed.rows.count(collection)),
            int(await feed.store.count(collection)),
        )
    foreign = await feed.store.foreign()
    legacy = any(name.rsplit("_", 1)[-1].isdigit() for name in foreign)
    return StoreSummary(counts, foreign, legacy)
