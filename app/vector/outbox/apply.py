"""Applying a Unit of Work's outbox writes after its commit, from memory.

The Unit of Work still has in memory what its outbox rows stand for, already checked and converted
(``PreparedGroup``, derived from the rows it wrote), so after the commit there is nothing to read
back and decode: the outbox rows of its keys are locked, and when they are exactly its own (none
rolled back by a savepoint, none newer or older from another writer still pending) its operations
are applied straight from memory and its rows deleted in one statement. Anything else is left to
``drain``, which makes the store hold what the rows hold now. A failure stays pending.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.types import utcnow
from app.errors import translate_errors
from app.memory import release_free_memory
from app.vector.external.records import PreparedGroup, merged
from app.vector.outbox.sync import write_prepared
from app.vector.outbox.table import PAGE, DrainReport, applying, drain, mask_secrets, outbox
from app.vector.port import RecordId
from app.vector.sql.common import ENTITIES, embedding_column

Key = tuple[str, str]
T = TypeVar("T")


@dataclass
class Recorded:
    """One write call's operations on one collection, recorded as ``rows`` rows of ``batch``."""

    collection: str
    groups: list[PreparedGroup] = field(default_factory=list)
    deletes: list[RecordId] = field(default_factory=list)
    batch: str = field(default_factory=lambda: uuid.uuid4().hex)
    rows: int = 0


@dataclass
class _Plan:
    """The newest operation per key of one collection: upserts by group, then deletes."""

    upserts: dict[int, tuple[PreparedGroup, list[int]]] = field(default_factory=dict)
    deletes: list[RecordId] = field(default_factory=list)


async def apply_recorded(feed: Any, recorded: list[Recorded]) -> DrainReport:
    """Apply a committed Unit of Work's writes (``recorded``, in the order they were made)."""
    async with applying(feed.engine) as session:
        present = await _lock(session, recorded)
        if present is not None and all(present[r.batch] in (0, r.rows) for r in recorded):
            # A batch without rows was rolled back (or applied by a concurrent replay).
            return await _apply(session, feed.store, [r for r in recorded if present[r.batch]])
    report = DrainReport()
    for batch in dict.fromkeys(r.batch for r in recorded):
        report.add(await drain(feed, batch=batch))
    return report


async def drain_batches(feed: Any, batches: list[str]) -> DrainReport:
    """Apply these outbox batches from their rows, page by page (a Unit of Work too large to
    keep its writes in memory)."""
    report = DrainReport()
    for batch in batches:
        report.add(await drain(feed, batch=batch))
        release_free_memory()  # what a batch freed, before the store takes more (app.memory)
    return report


async def _lock(session: AsyncSession, recorded: list[Recorded]) -> Counter[str] | None:
    """Lock every row of the written keys; rows per batch, ``None`` if another batch has some."""
    ours = {r.batch for r in recorded}
    keys: dict[str, dict[str, None]] = {}
    for r in recorded:
        ids = keys.setdefault(r.collection, {})
        ids.update(dict.fromkeys(str(i) for g in r.groups for i in g.ids))
        ids.update(dict.fromkeys(str(i) for i in r.deletes))
    present: Counter[str] = Counter()
    with translate_errors("reading the vector outbox"):
        for collection, ids in keys.items():
            for chunk in _chunks(list(ids)):
                where = (outbox.c.collection == collection) & outbox.c.record_id.in_(chunk)
                query = sa.select(outbox.c.batch).where(where).with_for_update()
                present.update((await session.execute(query)).scalars())
    return None if set(present) - ours else present


async def _apply(session: AsyncSession, index: Any, recorded: list[Recorded]) -> DrainReport:
    report = DrainReport()
    batches = [r.batch for r in recorded]
    settled: list[tuple[str, list[str], str | None]] = []
    for collection, plan in _plans(recorded).items():
        groups = merged([group.take(positions) for group, positions in plan.upserts.values()])
        # A row deleted since (by a transaction whose queued delete may be applied already) is
        # not written again: its record goes instead.
        groups, vanished = await _still_held(session, collection, groups)
        deletes = [*plan.deletes, *vanished]
        for op, count, keys in (
            ("upsert", sum(len(g.ids) for g in groups), [str(i) for g in groups for i in g.ids]),
            ("delete", len(deletes), [str(i) for i in deletes]),
        ):
            if not count:
                continue
            try:
                if op == "upsert":
                    await write_prepared(index, collection, groups)
                else:
                    await index.delete(collection, deletes)
            except Exception as exc:  # recorded on the rows; replayed later
                message = mask_secrets(f"{type(exc).__name__}: {exc}")
                report.failed += count
                report.errors.append(message)
                settled.append((collection, keys, message))
            else:
                report.applied += count
                settled.append((collection, keys, None))
    await _settle(session, batches, settled)
    return report


async def _still_held(
    session: AsyncSession, collection: str, groups: list[PreparedGroup]
) -> tuple[list[PreparedGroup], list[RecordId]]:
    """The groups' records whose rows still hold a vector of that length; the ids of the rest."""
    table = ENTITIES[collection].__table__
    kept, vanished = [], []
    for group in groups:
        column: Any = sa.literal_column(embedding_column(group.dimension))
        ids = [int(i) for i in group.ids]
        held: set[int] = set()
        for chunk in _chunks(ids):
            statement = sa.select(table.c.id).where(table.c.id.in_(chunk), column.is_not(None))
            with translate_errors(f"reading {table.name}"):
                held.update((await session.execute(statement)).scalars())
        positions = [i for i, id_ in enumerate(ids) if id_ in held]
        vanished += [group.ids[i] for i, id_ in enumerate(ids) if id_ not in held]
        if positions:
            kept.append(group.take(positions))
    return kept, vanished


def _plans(recorded: list[Recorded]) -> dict[str, _Plan]:
    latest: dict[Key, tuple[PreparedGroup, int] | RecordId] = {}
    for r in recorded:
        for group in r.groups:
            for position, id_ in enumerate(group.ids):
                latest[(r.collection, str(id_))] = (group, position)
        for id_ in r.deletes:
            latest[(r.collection, str(id_))] = id_
    plans: dict[str, _Plan] = {}
    for (collection, _), op in latest.items():
        plan = plans.setdefault(collection, _Plan())
        if isinstance(op, tuple):
            group, position = op
            plan.upserts.setdefault(id(group), (group, []))[1].append(position)
        else:
            plan.deletes.append(op)
    return plans


async def _settle(
    session: AsyncSession, batches: list[str], settled: list[tuple[str, list[str], str | None]]
) -> None:
    """Delete the applied rows (one statement when all were) and mark the failed ones."""
    ours = outbox.c.batch.in_(batches)
    with translate_errors("clearing the vector outbox"):
        if all(error is None for _, _, error in settled):
            await session.execute(outbox.delete().where(ours))
            return
        for collection, keys, error in settled:
            for chunk in _chunks(keys):
                where = ours & (outbox.c.collection == collection) & outbox.c.record_id.in_(chunk)
                if error is None:
                    await session.execute(outbox.delete().where(where))
                else:
                    values = {"attempts": outbox.c.attempts + 1, "last_error": error,
                              "updated_at": utcnow()}  # fmt: skip
                    await session.execute(outbox.update().where(where).values(**values))


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[start : start + PAGE] for start in range(0, len(items), PAGE)]
