"""``uow.vectors`` on an external store (Chroma, Weaviate): the rows first, the store after commit.

Every vector is written into its row's ``embedding_<dim>`` column in the Unit of Work's
transaction (the exact index's SQL), and what the store must do is recorded in the outbox by row
id (``app.vector.outbox.table``); after the commit the store gets its copy (``apply``). The
record a store holds is derived from the row (``app.vector.outbox.rows``): a record's own
``metadata`` is not kept apart from its row, so the store always answers as the rows would.

What the store must do is kept in memory for the apply only up to ``MEMORY_RECORDS`` records;
a Unit of Work that writes more (a large ingest) keeps only its outbox batch names, and after the
commit those batches are drained from the rows page by page, so its memory stays bounded.

Queries go to the store, every hit checked against its row (``app.vector.outbox.hits``). Counts
are the rows'.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from app.errors import (
    BackendUnavailableError,
    InvalidInputError,
    NotFoundError,
    RetryableError,
    translate_errors,
)
from app.filters import parse_filters
from app.vector.arguments import check_ids, check_k, check_records
from app.vector.external.records import PreparedGroup, by_dimension, prepare_group
from app.vector.outbox.apply import Recorded, apply_recorded, drain_batches
from app.vector.outbox.hits import CheckedSearch
from app.vector.outbox.rows import chunk_fields, fields_of
from app.vector.outbox.table import QUEUED_BATCH, DrainReport, drain, mask_secrets, outbox
from app.vector.port import Metric, RecordId, VectorHit, VectorRecord, collection_table
from app.vector.sql.common import ENTITIES, HIT_FIELDS, embedding_column, row_ids

log = logging.getLogger(__name__)
SCORE_TOLERANCE = 1e-3
APPLY_ATTEMPTS = 4
MAX_CANDIDATES = 4096
# Records a Unit of Work keeps in memory to apply after its commit; beyond, read back from rows.
MEMORY_RECORDS = 5000


class StoreView:
    """A Unit of Work's view of an external store; see the module docstring."""

    def __init__(self, feed: Any, uow: Any) -> None:
        self.feed = feed
        self.index = feed.store
        self.uow = uow
        self.rows = feed.rows.bind(uow)
        self.last_report: DrainReport | None = None
        self._recorded: list[Recorded] = []
        self._kept = 0  # records held by ``_recorded``
        self._spilled: list[str] = []  # batches applied from their rows after commit

    @property
    def capabilities(self) -> Any:
        return self.index.capabilities

    async def ensure_collection(
        self, collection: str, dimension: int, metric: Metric = "cosine"
    ) -> None:
        """The row column (searched by cosine in SQL) and the store's collection."""
        await self.rows.ensure_collection(collection, dimension)
        await self.feed.ready(self.uow.session)
        await self.index.ensure_collection(collection, dimension, metric)

    async def prepare_writes(self) -> None:
        """Get ready to write: the store named, and fed (so deleted rows queue their deletes)."""
        await self.feed.ready(self.uow.session)
        await self.feed.mark_fed(self.uow)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Write the vectors into their rows now; the store gets them after commit."""
        records = check_records(records)
        collection_table(collection)
        latest = dict(zip(row_ids([r.id for r in records]), records, strict=True))
        if not latest:
            return 0
        await self.feed.ready(self.uow.session)
        await self.rows.upsert(collection, list(latest.values()))
        fields = await self._fields(collection, list(latest))
        gone = [rid for rid in latest if rid not in fields]
        if gone:  # deleted by a concurrent transaction since the vectors were written
            raise NotFoundError(
                f"no {collection_table(collection)} rows with ids {gone[:10]}: deleted meanwhile"
            )
        derived = [
            VectorRecord(rid, record.vector, fields[rid][0], fields[rid][1])
            for rid, record in latest.items()
        ]
        await self._record_upserts(collection, await self._prepare(collection, derived))
        return len(latest)

    async def add_with_vectors(
        self,
        collection: str,
        entities: Sequence[Any],
        matrix: np.ndarray | None,
        present: Sequence[bool] | None = None,
        *,
        bump: bool = True,
    ) -> None:
        """Insert new rows with their vectors in the same write (``SqlVectorIndex``'s), and
        record the store's copies from the entities (the values the rows now hold)."""
        await self.feed.ready(self.uow.session)
        await self.rows.add_with_vectors(collection, entities, matrix, present, bump=bump)
        if matrix is None or not len(matrix):
            return
        flags = present if present is not None else [True] * len(entities)
        chosen = [entity for entity, flag in zip(entities, flags, strict=True) if flag]
        group = prepare_group(
            matrix.shape[1],
            [VectorRecord(e.id, row, chunk_fields(e), e.content) for e, row in zip(
                chosen, matrix, strict=True)],
            cosine=True,
        )  # fmt: skip
        await self._ensure_store_dimensions(collection, [group.dimension])
        await self._record_upserts(collection, [group])

    async def written(self, collection: str) -> None:
        """Announce vector writes made with ``add_with_vectors(bump=False)``."""
        await self.rows.written(collection)

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Clear these rows' vectors now; the store drops them after commit."""
        ids = check_ids(ids)
        collection_table(collection)
        keys = list(dict.fromkeys(row_ids(ids)))
        if not keys:
            return 0
        await self.feed.ready(self.uow.session)
        cleared = await self.rows.delete(collection, keys)
        await self._record(Recorded(collection, deletes=list(keys)))
        return cleared

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        """Clear the vectors of the rows matching ``filters`` (a filter is required)."""
        if parse_filters(filters) is None:
            raise InvalidInputError("delete_where needs a filter; use delete(ids) for known ids")
        table = ENTITIES[collection].__table__
        dimensions = await self.rows.dimensions(collection)
        if not dimensions:
            return 0
        has_vector = sa.or_(
            *(sa.literal_column(embedding_column(d)).is_not(None) for d in dimensions)
        )
        where = self.rows.filter_clause(collection, filters)
        with translate_errors(f"selecting vectors in {table.name}"):
            found = await self.uow.session.execute(sa.select(table.c.id).where(where, has_vector))
        ids = list(found.scalars())
        return await self.delete(collection, ids) if ids else 0

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        """How many rows hold a vector (matching ``filters``): the system of record's count."""
        return int(await self.rows.count(collection, filters))

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """The store's ``k`` nearest, each checked against its row (``app.vector.outbox.hits``)."""
        k = check_k(k)
        search = CheckedSearch(self.feed, self.rows, self.uow.session)
        return await search.query(collection, vector, k, filters, embedding_model)

    def __getattr__(self, name: str) -> Any:
        # describe, dimensions...: the store's own, read-only extras.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.index, name)

    # -- reading rows ------------------------------------------------------------------------

    async def _fields(self, collection: str, ids: list[int]) -> dict[int, tuple[dict, str]]:
        table = ENTITIES[collection].__table__
        columns = [table.c.id, *(table.c[n] for n in HIT_FIELDS), table.c.content]
        found: dict[int, tuple[dict, str]] = {}
        for start in range(0, len(ids), 1000):
            statement = sa.select(*columns).where(table.c.id.in_(ids[start : start + 1000]))
            with translate_errors(f"reading {table.name}"):
                rows = (await self.uow.session.execute(statement)).all()
            found.update((int(row.id), (fields_of(row), row.content)) for row in rows)
        return found

    # -- recording ---------------------------------------------------------------------------

    async def _prepare(self, collection: str, records: list[VectorRecord]) -> list[PreparedGroup]:
        groups = by_dimension(records)
        metrics = await self._ensure_store_dimensions(collection, list(groups))
        return [
            prepare_group(d, group, cosine=metrics.get(d, "cosine") == "cosine")
            for d, group in groups.items()
        ]

    async def _ensure_store_dimensions(
        self, collection: str, dimensions: list[int]
    ) -> dict[int, str]:
        """A length the rows have a column for gets its store collection (cosine) if missing;
        dimension -> metric. A store that cannot be reached is left for the apply (the point of
        the outbox: the commit need not wait for the store)."""
        try:
            known = dict(await self.index.dimensions(collection))
            for dimension in dimensions:
                if dimension not in known:
                    await self.index.ensure_collection(collection, dimension, "cosine")
                    known[dimension] = "cosine"
        except BackendUnavailableError as exc:
            log.info("vector store unreachable (%s); its copies are applied later", exc)
            return {}
        return known

    async def _record_upserts(self, collection: str, groups: list[PreparedGroup]) -> None:
        await self._record(Recorded(collection, groups=groups))

    async def _record(self, recorded: Recorded) -> None:
        """Outbox rows by id (one executemany); ``recorded`` applied from memory after commit."""
        ids = [str(i) for g in recorded.groups for i in g.ids] + [str(i) for i in recorded.deletes]
        if not ids:
            return
        await self.feed.mark_fed(self.uow)
        now = _now()
        op = "upsert" if recorded.groups else "delete"
        rows = [
            {"batch": recorded.batch, "collection": recorded.collection, "record_id": id_,
             "op": op, "attempts": 0, "created_at": now, "updated_at": now}
            for id_ in ids
        ]  # fmt: skip
        with translate_errors("recording vector writes in the outbox"):
            await self.uow.session.execute(outbox.insert(), rows)
        recorded.rows = len(rows)
        self._keep(recorded)
        self.uow.after_commit(self.apply)

    def _keep(self, recorded: Recorded) -> None:
        """Keep ``recorded`` for the apply, or only its batch name once past the memory bound."""
        if not self._spilled and self._kept + recorded.rows <= MEMORY_RECORDS:
            self._recorded.append(recorded)
            self._kept += recorded.rows
            return
        # Applying from the rows makes the store hold what they hold now, whatever the order.
        batches = [r.batch for r in self._recorded] + [recorded.batch]
        self._spilled.extend(b for b in batches if b not in self._spilled)
        self._recorded, self._kept = [], 0

    async def apply(self) -> None:
        """After commit: apply this Unit of Work's writes to the store."""
        recorded, self._recorded, self._kept = self._recorded, [], 0
        spilled, self._spilled = self._spilled, []
        if recorded:
            await self._applying(lambda: apply_recorded(self.feed, recorded))
        if spilled:
            await self._applying(lambda: drain_batches(self.feed, spilled))

    async def drain_queued(self) -> None:
        """After a commit that deleted or changed chunk rows: apply what the database queued."""
        await self._applying(lambda: drain(self.feed, batch=QUEUED_BATCH))

    async def _applying(self, work: Callable[[], Awaitable[DrainReport]]) -> None:
        try:
            report = await _retrying(work)
        except Exception as exc:  # the commit stands; the rows stay pending for a replay
            message = mask_secrets(f"{type(exc).__name__}: {exc}")
            log.warning(
                "vector outbox: could not apply committed writes (%s); `archon-db vectors sync` "
                "will",
                message,
            )
            report = DrainReport(errors=[message])
        if report.failed:
            log.warning(
                "vector outbox: %d operation(s) left pending (%s); run `archon-db vectors sync` "
                "once the store is reachable",
                report.failed,
                "; ".join(report.errors),
            )
        self.last_report = report


async def _retrying(work: Callable[[], Awaitable[DrainReport]]) -> DrainReport:
    """``work()``, again after a deadlock or serialization failure (a few times, backing off)."""
    for attempt in range(APPLY_ATTEMPTS):
        try:
            return await work()
        except RetryableError:
            if attempt == APPLY_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.05 * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


def _now() -> Any:
    from app.domain.types import utcnow

    return utcnow()
