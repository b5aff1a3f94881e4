"""The vector outbox: writes to stores that cannot join a SQL transaction (Chroma, Weaviate).

``uow.vectors.upsert`` / ``delete`` on such a store validate the vectors, then only insert rows into
``archon_vector_outbox`` through the Unit of Work's own session: they commit or roll back with the
entities. After the commit a hook applies them (``drain``). Per record id only the newest operation
counts (an upsert replaces the whole record, a delete of a missing id is fine), so applying is
idempotent and replays converge. Applied rows are deleted; an operation the store refused or could
not take stays, with its attempt count and last error (secrets masked), until ``replay_pending``
(``archon-db vectors sync``, and the layer's start-up) applies it.

Rows are locked while applied (``SELECT ... FOR UPDATE``; SQLite's writers take the database lock
at BEGIN), so two processes draining the same ids apply them in commit order.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain.types import BigIntId, TZDateTime, utcnow
from app.errors import BackendUnavailableError, InvalidInputError, scrub, translate_errors
from app.filter_eval import evaluate
from app.filters import parse_filters
from app.vector.external import from_json, to_json
from app.vector.port import (
    Metric,
    RecordId,
    VectorHit,
    VectorRecord,
    check_vector,
    collection_table,
)

log = logging.getLogger(__name__)
OUTBOX_TABLE = "archon_vector_outbox"
PAGE = 500
_SECRET = re.compile(
    r"(?i)(api[-_ ]?key|token|password|secret|authorization)([\"'\s:=]+)(bearer\s+)?[^\s\"',;}]+"
)

outbox_metadata = sa.MetaData()
outbox = sa.Table(
    OUTBOX_TABLE,
    outbox_metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("batch", sa.String(36), nullable=False),
    sa.Column("collection", sa.String(64), nullable=False),
    sa.Column("record_id", sa.String(255), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", TZDateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", TZDateTime, nullable=False, default=utcnow),
    sa.Index("ix_archon_vector_outbox_batch", "batch"),
    sa.Index("ix_archon_vector_outbox_record", "collection", "record_id"),
)


@dataclass
class DrainReport:
    """What one drain did: operations applied, operations left pending, their errors."""

    applied: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DrainReport) -> None:
        self.applied += other.applied
        self.failed += other.failed
        self.errors.extend(other.errors)


def mask_secrets(message: str) -> str:
    """An error message safe to store and print: DSN passwords, keys and tokens masked."""
    return _SECRET.sub(r"\1\2\3***", scrub(message))[:1000]


class OutboxVectorIndex:
    """A Unit of Work's view of an external store: reads go to the store, writes to the outbox.

    Reads see what has been applied, not what this Unit of Work has recorded but not committed.
    ``upsert`` and ``delete`` return how many operations were recorded.
    """

    def __init__(self, index: Any, uow: Any) -> None:
        self.index = index
        self.uow = uow
        self.last_report: DrainReport | None = None

    @property
    def capabilities(self) -> Any:
        return self.index.capabilities

    async def ensure_collection(
        self, collection: str, dimension: int, metric: Metric = "cosine"
    ) -> None:
        """Straight to the store: creating a collection is idempotent and holds no rows."""
        await self.index.ensure_collection(collection, dimension, metric)

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Validate now, store after commit."""
        collection_table(collection)
        records = list(records)
        await self._validate(collection, records)
        await self._record(collection, [(r.id, "upsert", _payload(r)) for r in records])
        return len(records)

    async def _validate(self, collection: str, records: list[VectorRecord]) -> None:
        """The store's own checks; only the universal ones while it cannot be reached."""
        validate = getattr(self.index, "validate_records", None)
        if validate is not None:
            try:
                await validate(collection, records)
                return
            except BackendUnavailableError:
                # The point of the outbox: the commit need not wait for the store.
                log.info("vector store unreachable; the records are checked again when applied")
        for record in records:
            check_vector(record.vector)
            to_json(record.metadata)

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Remove these ids from the store after commit."""
        collection_table(collection)
        unique = list(dict.fromkeys(ids))
        await self._record(collection, [(i, "delete", json.dumps({"id": i})) for i in unique])
        return len(unique)

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        """Resolve ``filters`` to ids now (the store and the pending writes), delete those."""
        node = parse_filters(filters)
        if node is None:
            raise InvalidInputError("delete_where needs a filter; use delete(ids) for known ids")
        pending = await self._pending_state(collection)
        stored = await self.index.ids_where(collection, filters)
        ids = [i for i in stored if str(i) not in pending]
        for op, payload in pending.values():
            if op == "upsert" and evaluate(node, payload["metadata"]):
                ids.append(payload["id"])
        return await self.delete(collection, ids) if ids else 0

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """The store's answer (applied writes only)."""
        hits = await self.index.query(
            collection, vector, k, filters, embedding_model=embedding_model
        )
        return list(hits)

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        """The store's count (applied writes only)."""
        return int(await self.index.count(collection, filters))

    def __getattr__(self, name: str) -> Any:
        # hybrid, describe, dimensions...: the store's own, read-only extras.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.index, name)

    async def _record(self, collection: str, ops: list[tuple[RecordId, str, str]]) -> None:
        if not ops:
            return
        batch = uuid.uuid4().hex
        now = utcnow()
        rows = [
            {"batch": batch, "collection": collection, "record_id": str(record_id), "op": op,
             "payload": payload, "attempts": 0, "created_at": now, "updated_at": now}
            for record_id, op, payload in ops
        ]  # fmt: skip
        with translate_errors("recording vector writes in the outbox"):
            for start in range(0, len(rows), PAGE):
                await self.uow.session.execute(outbox.insert(), rows[start : start + PAGE])
        engine = self.uow.session.bind
        self.uow.after_commit(lambda: self._apply(engine, batch))

    async def _apply(self, engine: AsyncEngine, batch: str) -> None:
        try:
            report = await drain(self.index, engine, batch=batch)
        except Exception as exc:  # the commit stands; the rows stay pending for a replay
            log.warning(
                "vector outbox: could not apply batch %s (%s); `archon-db vectors sync` will",
                batch,
                mask_secrets(str(exc)),
            )
            report = DrainReport(errors=[mask_secrets(str(exc))])
        else:
            if report.failed:
                log.warning(
                    "vector outbox: %d operation(s) left pending (%s); run `archon-db vectors "
                    "sync` once the store is reachable",
                    report.failed,
                    "; ".join(report.errors),
                )
        self.last_report = report

    async def _pending_state(self, collection: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """The newest pending operation per record id, as this transaction sees the outbox."""
        query = (
            sa.select(outbox.c.record_id, outbox.c.op, outbox.c.payload)
            .where(outbox.c.collection == collection)
            .order_by(outbox.c.id)
        )
        with translate_errors("reading the vector outbox"):
            rows = (await self.uow.session.execute(query)).all()
        return {row.record_id: (row.op, _decode(row.payload)) for row in rows}


def bind_outbox(index: Any, uow: Any) -> OutboxVectorIndex:
    """The view ``uow.vectors`` gives of a non-transactional ``index``."""
    return OutboxVectorIndex(index, uow)


def _payload(record: VectorRecord) -> str:
    return json.dumps(
        {
            "id": record.id,
            "vector": [float(x) for x in record.vector],
            "metadata": from_json(to_json(record.metadata)),
            "document": record.document,
        }
    )


def _decode(payload: str | None) -> dict[str, Any]:
    return json.loads(payload) if payload else {}


async def drain(index: Any, engine: AsyncEngine, *, batch: str | None = None) -> DrainReport:
    """Apply pending operations: those touching ``batch``'s ids, or all of them page by page."""
    report = DrainReport()
    after = 0
    while True:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            rows = await _lock_rows(session, batch, after)
            if not rows:
                return report
            report.add(await _apply_rows(session, index, rows))
        if batch is not None:
            return report
        after = max(row.id for row in rows)


async def _lock_rows(session: AsyncSession, batch: str | None, after: int) -> list[Any]:
    columns = sa.select(outbox).order_by(outbox.c.id).with_for_update()
    with translate_errors("reading the vector outbox"):
        if batch is None:
            page = columns.where(outbox.c.id > after).limit(PAGE)
            return list((await session.execute(page)).all())
        keys = (
            await session.execute(
                sa.select(outbox.c.collection, outbox.c.record_id)
                .where(outbox.c.batch == batch)
                .distinct()
            )
        ).all()
        rows: list[Any] = []
        by_collection: dict[str, list[str]] = {}
        for collection, record_id in keys:
            by_collection.setdefault(collection, []).append(record_id)
        for collection, ids in by_collection.items():
            for start in range(0, len(ids), PAGE):
                chunk = ids[start : start + PAGE]
                where = (outbox.c.collection == collection) & outbox.c.record_id.in_(chunk)
                rows.extend((await session.execute(columns.where(where))).all())
        return sorted(rows, key=lambda row: row.id)


async def _apply_rows(session: AsyncSession, index: Any, rows: list[Any]) -> DrainReport:
    """Apply the newest operation per id, grouped by collection and kind; record failures."""
    latest: dict[tuple[str, str], Any] = {}
    for row in rows:
        latest[(row.collection, row.record_id)] = row
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in latest.values():
        groups.setdefault((row.collection, row.op), []).append(row)
    report = DrainReport()
    upper = max(row.id for row in rows)
    for (collection, op), group in groups.items():
        try:
            if op == "upsert":
                await index.upsert(collection, [_record_of(row) for row in group])
            else:
                await index.delete(collection, [_decode(row.payload)["id"] for row in group])
        except Exception as exc:  # recorded on the rows; replayed later
            message = mask_secrets(f"{type(exc).__name__}: {exc}")
            report.failed += len(group)
            report.errors.append(message)
            await _mark_failed(session, collection, [row.record_id for row in group], message)
        else:
            report.applied += len(group)
            await _forget(session, collection, [row.record_id for row in group], upper)
    return report


def _record_of(row: Any) -> VectorRecord:
    data = _decode(row.payload)
    return VectorRecord(
        id=data["id"],
        vector=data["vector"],
        metadata=data.get("metadata") or {},
        document=data.get("document"),
    )


async def _forget(session: AsyncSession, collection: str, ids: list[str], upper: int) -> None:
    """Delete the applied rows and every older row for the same ids (they are superseded)."""
    where = (outbox.c.collection == collection) & outbox.c.record_id.in_(ids)
    with translate_errors("clearing the vector outbox"):
        await session.execute(outbox.delete().where(where & (outbox.c.id <= upper)))


async def _mark_failed(session: AsyncSession, collection: str, ids: list[str], error: str) -> None:
    where = (outbox.c.collection == collection) & outbox.c.record_id.in_(ids)
    values = {"attempts": outbox.c.attempts + 1, "last_error": error, "updated_at": utcnow()}
    with translate_errors("updating the vector outbox"):
        await session.execute(outbox.update().where(where).values(**values))


# -- the layer's entry points -----------------------------------------------------------------


async def _store(layer: Any) -> Any | None:
    """The layer's vector index when it goes through the outbox, else ``None``."""
    index = layer.vector_index
    resolve = getattr(index, "resolve", None)
    if resolve is not None:
        index = await resolve()
    if index is None or index.capabilities.transactional:
        return None
    return index


async def _has_outbox(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.run_sync(lambda c: sa.inspect(c).has_table(OUTBOX_TABLE)))


async def replay_pending(layer: Any) -> DrainReport:
    """Apply every pending operation (start-up and ``archon-db vectors sync``); idempotent."""
    index = await _store(layer)
    if index is None:
        return DrainReport()
    with translate_errors("looking for the vector outbox"):
        if not await _has_outbox(layer.engine):
            return DrainReport()
    report = await drain(index, layer.engine)
    if report.applied or report.failed:
        log.info("vector outbox: %d applied, %d still pending", report.applied, report.failed)
    return report


@dataclass(frozen=True)
class PendingSummary:
    """Pending operations of one kind on one collection, for ``archon-db vectors status``."""

    collection: str
    op: str
    count: int
    failed: int
    max_attempts: int
    last_error: str | None


async def pending_summary(engine: AsyncEngine) -> list[PendingSummary]:
    """What the outbox holds, by collection and operation (empty when it does not exist)."""
    with translate_errors("reading the vector outbox"):
        if not await _has_outbox(engine):
            return []
        query = (
            sa.select(
                outbox.c.collection,
                outbox.c.op,
                sa.func.count(),
                sa.func.sum(sa.case((outbox.c.attempts > 0, 1), else_=0)),
                sa.func.max(outbox.c.attempts),
                sa.func.max(outbox.c.id),
            )
            .group_by(outbox.c.collection, outbox.c.op)
            .order_by(outbox.c.collection, outbox.c.op)
        )
        async with engine.connect() as conn:
            groups = (await conn.execute(query)).all()
            summaries = []
            for collection, op, count, failed, attempts, _ in groups:
                error = await conn.scalar(
                    sa.select(outbox.c.last_error)
                    .where((outbox.c.collection == collection) & (outbox.c.op == op))
                    .where(outbox.c.last_error.is_not(None))
                    .order_by(outbox.c.updated_at.desc(), outbox.c.id.desc())
                    .limit(1)
                )
                summaries.append(
                    PendingSummary(collection, op, count, int(failed or 0), attempts or 0, error)
                )
    return summaries
