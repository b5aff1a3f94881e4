"""Tables that reference themselves (a task's ``parent_task_id``): parents written first.

Keys are not ordered by ancestry (a child's UUID may sort before its parent's), and the row
cannot be written without the reference and completed later: PostgreSQL's Archon trigger
stamps ``updated_at`` on every UPDATE of a task, which would change the copied value. So each
batch is written in rounds: the rows whose referenced row is in the target already (or that
reference none) first, then the rows referencing those, and so on; rows whose parent comes in a
later batch wait for it. The keys known to be in the target are kept for the table, which is
fine for the small tables that reference themselves (Archon's tasks). A row whose parent never
comes (a dangling reference the source's constraints would not allow) is written with the
reference empty, then the reference is set by an UPDATE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.transfer.read import Row, batches
from app.transfer.report import TableReport
from app.transfer.tables import TableSpec
from app.transfer.write import write_batch, write_deferred


def _ready(spec: TableSpec, row: Row, landed: set[Any]) -> bool:
    return all(row.get(name) is None or row[name] in landed for name in spec.deferred)


async def copy_self_referencing(
    source: AsyncEngine,
    target: AsyncEngine,
    spec: TableSpec,
    kinds: dict[int, str],
    report: TableReport,
    size: int,
    on_progress: Callable[[str, int, int], Any] | None,
) -> None:
    """Copy ``spec``'s table so that every row lands after the rows it references."""
    landed: set[Any] = set()
    waiting: list[Row] = []
    done = 0

    async def write(rows: list[Row], *, defer: bool = False) -> None:
        written = await write_batch(target, spec, kinds, rows, defer=defer)
        report.copied += written
        report.skipped += len(rows) - written
        landed.update(row[spec.pk.name] for row in rows)

    async for rows in batches(source, spec, size):
        waiting += rows
        while ready := [row for row in waiting if _ready(spec, row, landed)]:
            await write(ready)
            waiting = [row for row in waiting if row[spec.pk.name] not in landed]
        done += len(rows)
        if on_progress is not None:
            on_progress(spec.name, done, report.source_rows)
    if waiting:
        await write(waiting, defer=True)
        await write_deferred(target, spec, waiting)
