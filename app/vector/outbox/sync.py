"""Making a store hold what the rows hold, for some ids: the one rule every repair follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.vector.external.records import PreparedGroup, by_dimension, prepare_group
from app.vector.outbox.rows import RowReader
from app.vector.port import VectorRecord


async def sync_ids(feed: Any, session: AsyncSession, collection: str, ids: Sequence[str]) -> None:
    """The rows' records of ``ids`` into the store; ids with no row vector out of it."""
    numeric = [int(i) for i in ids if _is_int(i)]
    found = await RowReader(feed.rows, session).by_ids(collection, numeric)
    if found:
        await write_records(feed.store, collection, [row.record() for row in found.values()])
    gone = [i for i in ids if not _is_int(i) or int(i) not in found]
    if gone:
        await feed.store.delete(collection, gone)


async def write_records(store: Any, collection: str, records: Sequence[VectorRecord]) -> int:
    """Upsert records into the store, a collection per length (made, cosine, when missing)."""
    groups = by_dimension(records)
    known = await store.dimensions(collection)
    prepared = []
    for dimension, group in groups.items():
        if dimension not in known:
            await store.ensure_collection(collection, dimension, "cosine")
        cosine = known.get(dimension, "cosine") == "cosine"
        prepared.append(prepare_group(dimension, group, cosine=cosine))
    await write_prepared(store, collection, prepared)
    return len(records)


async def write_prepared(store: Any, collection: str, groups: list[PreparedGroup]) -> None:
    """Groups into the store: Chroma takes them as they are, other stores as records."""
    write = getattr(store, "write_prepared", None)
    if write is not None:
        await write(collection, groups)
    else:
        await store.upsert(collection, [rec for group in groups for rec in group.records()])


def _is_int(value: str) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True
