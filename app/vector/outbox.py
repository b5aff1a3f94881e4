"""The vector outbox: writes to stores that cannot join a SQL transaction (Chroma, Weaviate).

``uow.vectors.upsert`` / ``delete`` on such a store (``app.vector.outbox_uow``) validate the
vectors, then only insert rows into ``archon_vector_outbox`` through the Unit of Work's own
session: they commit or roll back with the entities. A row holds the record's id, metadata and
document as JSON (``payload``) and its vector as float32 bytes (``vector``). After the commit a
hook applies what that Unit of Work recorded, from memory (``outbox_uow``); ``drain`` applies
what the rows hold. Per record id only the newest operation counts (an upsert replaces the whole
record, a delete of a missing id is fine), so applying is idempotent and replays converge. Applied
rows are deleted; an operation the store refused or could not take stays, with its attempt count and
last error (secrets masked), until ``replay_pending`` (``archon-db vectors sync``, and the layer's
start-up) applies it.

Rows are locked while applied (``SELECT ... FOR UPDATE``; SQLite's writers take the database lock
at BEGIN), so two processes draining the same ids apply them in commit order.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain.types import BigIntId, TZDateTime, utcnow
from app.errors import scrub, translate_errors
from app.vector.port import RecordId, VectorRecord

if TYPE_CHECKING:
    from app.vector.outbox_uow import OutboxVectorIndex

log = logging.getLogger(__name__)
OUTBOX_TABLE = "archon_vector_outbox"
PAGE = 500
VECTOR_DTYPE = np.dtype("<f4")
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
    sa.Column("vector", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")),
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


def bind_outbox(index: Any, uow: Any) -> OutboxVectorIndex:
    """The view ``uow.vectors`` gives of a non-transactional ``index`` (``outbox_uow``)."""
    from app.vector.outbox_uow import OutboxVectorIndex

    return OutboxVectorIndex(index, uow)


def decode_payload(payload: str | None) -> dict[str, Any]:
    """An outbox row's payload: ``id``, and for upserts ``metadata`` and ``document``."""
    return json.loads(payload) if payload else {}


def upsert_payload(record_id: RecordId, metadata_json: str, document: str | None) -> str:
    """The payload of an upsert, around metadata already encoded (``external.to_json``)."""
    id_json, document_json = json.dumps(record_id), json.dumps(document)
    return f'{{"id": {id_json}, "metadata": {metadata_json}, "document": {document_json}}}'


def encode_vector(vector: np.ndarray) -> bytes:
    """A vector as the outbox's ``vector`` column holds it: little-endian float32 bytes."""
    return vector.astype(VECTOR_DTYPE, copy=False).tobytes()


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
                await index.delete(collection, [decode_payload(row.payload)["id"] for row in group])
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
    data = decode_payload(row.payload)
    vector: Any = np.frombuffer(row.vector, dtype=VECTOR_DTYPE)
    return VectorRecord(
        id=data["id"],
        vector=vector,
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
