"""The vector outbox: what an external store (Chroma, Weaviate) still has to be told, by row id.

A row of ``archon_vector_outbox`` says "the record ``record_id`` of ``collection`` changed":
written by ``uow.vectors`` in the Unit of Work's transaction (``op`` upsert or delete, ``batch``
its call), or by the database's triggers when a chunk row is deleted or its stored fields change
(batch ``queued``). The
vector itself is in the row, never in the outbox. Applying an outbox row makes the store hold
what the row holds now (``sync``): the row's record when it has a vector, nothing otherwise, so
applying is idempotent and replays converge whatever their order. Applied rows are deleted; an
operation the store refused or could not take stays, with its attempt count and last error
(secrets masked), until ``replay_pending`` (``archon-db vectors sync``, and the layer's start-up).

Rows are locked while applied (``SELECT ... FOR UPDATE``; SQLite's writers take the database lock
at BEGIN), so two processes draining the same ids apply them one after the other.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain.types import BigIntId, TZDateTime, utcnow
from app.errors import scrub, translate_errors
from app.vector.outbox.sync import sync_ids

log = logging.getLogger(__name__)
OUTBOX_TABLE = "archon_vector_outbox"
QUEUED_BATCH = "queued"  # the batch of what the database's triggers queue (migration 0004)
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
    # Written by earlier versions (the record and its vector); no longer read.
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


async def drain(feed: Any, *, batch: str | None = None) -> DrainReport:
    """Apply pending operations: those of ``batch``, or all of them, page by page.

    Every outbox row of a page's record ids is locked, whatever its batch, so that a concurrent
    Unit of Work applying the same ids from memory (``apply``) goes before or after, never in
    between: the store then ends holding what the rows hold.
    """
    report = DrainReport()
    after = 0
    while True:
        async with applying(feed.engine) as session:
            keys, last = await _candidates(session, batch, after)
            if not keys:
                return report
            rows = await lock_keys(session, keys)
            if rows:
                await feed.ready(session)
                report.add(await _apply_rows(session, feed, rows))
        after = last


async def _candidates(
    session: AsyncSession, batch: str | None, after: int
) -> tuple[dict[str, list[str]], int]:
    """The record ids of the next page of pending rows (of ``batch``), by collection."""
    page = sa.select(outbox.c.id, outbox.c.collection, outbox.c.record_id).where(
        outbox.c.id > after
    )
    if batch is not None:
        page = page.where(outbox.c.batch == batch)
    with translate_errors("reading the vector outbox"):
        found = (await session.execute(page.order_by(outbox.c.id).limit(PAGE))).all()
    keys: dict[str, dict[str, None]] = {}
    for row in found:
        keys.setdefault(row.collection, {})[row.record_id] = None
    return {c: list(ids) for c, ids in keys.items()}, max((r.id for r in found), default=after)


async def lock_keys(session: AsyncSession, keys: dict[str, list[str]]) -> list[Any]:
    """Every outbox row of these record ids, locked, oldest first."""
    rows: list[Any] = []
    columns = sa.select(outbox).order_by(outbox.c.id).with_for_update()
    with translate_errors("reading the vector outbox"):
        for collection, ids in sorted(keys.items()):
            for start in range(0, len(ids), PAGE):
                chunk = sorted(ids[start : start + PAGE])
                where = (outbox.c.collection == collection) & outbox.c.record_id.in_(chunk)
                rows.extend((await session.execute(columns.where(where))).all())
    return sorted(rows, key=lambda row: row.id)


async def queue(
    engine: AsyncEngine, collection: str, ids: list[str], batch: str, op: str = "upsert"
) -> None:
    """Record that these ids must be made to hold what their rows hold (then ``drain(batch)``)."""
    now = utcnow()
    rows = [
        {"batch": batch, "collection": collection, "record_id": id_, "op": op, "attempts": 0,
         "created_at": now, "updated_at": now}
        for id_ in ids
    ]  # fmt: skip
    async with AsyncSession(engine) as session, session.begin():
        with translate_errors("recording vector operations in the outbox"):
            for start in range(0, len(rows), PAGE):
                await session.execute(outbox.insert(), rows[start : start + PAGE])


async def _apply_rows(session: AsyncSession, feed: Any, rows: list[Any]) -> DrainReport:
    """Make the store hold what the rows of these ids hold now; record failures."""
    keys: dict[str, dict[str, None]] = {}
    locked: dict[str, list[int]] = {}
    for row in rows:
        keys.setdefault(row.collection, {})[row.record_id] = None
        locked.setdefault(row.collection, []).append(row.id)
    report = DrainReport()
    for collection, ids in keys.items():
        try:
            await sync_ids(feed, session, collection, list(ids))
        except Exception as exc:  # recorded on the rows; replayed later
            message = mask_secrets(f"{type(exc).__name__}: {exc}")
            report.failed += len(ids)
            report.errors.append(message)
            await _mark_failed(session, collection, list(ids), message)
        else:
            report.applied += len(ids)
            await forget(session, locked[collection])
    return report


async def forget(session: AsyncSession, row_ids: list[int]) -> None:
    """Delete the outbox rows applied: exactly those locked (one a transaction committed since
    stays, for its own drain)."""
    for start in range(0, len(row_ids), PAGE):
        chunk = row_ids[start : start + PAGE]
        with translate_errors("clearing the vector outbox"):
            await session.execute(outbox.delete().where(outbox.c.id.in_(chunk)))


@asynccontextmanager
async def applying(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A transaction for applying outbox rows, in READ COMMITTED: the rows it reads after taking
    its locks are the latest committed, never an older snapshot (MySQL's default)."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        if engine.dialect.name != "sqlite":
            with translate_errors("opening a transaction for the vector outbox"):
                await session.connection(execution_options={"isolation_level": "READ COMMITTED"})
        yield session


async def _mark_failed(session: AsyncSession, collection: str, ids: list[str], error: str) -> None:
    values = {"attempts": outbox.c.attempts + 1, "last_error": error, "updated_at": utcnow()}
    for start in range(0, len(ids), PAGE):
        chunk = ids[start : start + PAGE]
        where = (outbox.c.collection == collection) & outbox.c.record_id.in_(chunk)
        with translate_errors("updating the vector outbox"):
            await session.execute(outbox.update().where(where).values(**values))


async def has_outbox(engine: AsyncEngine, table: str = OUTBOX_TABLE) -> bool:
    """Whether the outbox table (or ``table``) exists: the database is migrated far enough."""
    async with engine.connect() as conn:
        return bool(await conn.run_sync(lambda c: sa.inspect(c).has_table(table)))


async def replay_pending(feed: Any | None) -> DrainReport:
    """Apply every pending operation (start-up and ``archon-db vectors sync``); idempotent."""
    if feed is None:
        return DrainReport()
    with translate_errors("looking for the vector outbox"):
        if not await has_outbox(feed.engine):
            return DrainReport()
    report = await drain(feed)
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
        if not await has_outbox(engine):
            return []
        query = (
            sa.select(
                outbox.c.collection,
                outbox.c.op,
                sa.func.count(),
                sa.func.sum(sa.case((outbox.c.attempts > 0, 1), else_=0)),
                sa.func.max(outbox.c.attempts),
            )
            .group_by(outbox.c.collection, outbox.c.op)
            .order_by(outbox.c.collection, outbox.c.op)
        )
        async with engine.connect() as conn:
            groups = (await conn.execute(query)).all()
            summaries = []
            for collection, op, count, failed, attempts in groups:
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
