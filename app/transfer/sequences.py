"""Id counters after a copy: the target's next generated id follows the copied ones.

Rows are copied with their ids, which generated-id counters do not see everywhere: PostgreSQL's
sequences ignore explicit ids (``setval`` moves them), InnoDB moves AUTO_INCREMENT past an
explicit id itself (``ALTER TABLE ... AUTO_INCREMENT`` makes sure), SQLite's ``AUTOINCREMENT``
keeps the largest id in ``sqlite_sequence``. A counter is only ever moved forward: ids are never
reused, even ids of rows the target deleted before.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.errors import translate_errors
from app.transfer.tables import TableSpec


def has_counter(spec: TableSpec) -> bool:
    """Whether the table's key is a generated integer (Archon's bigserial chunk ids)."""
    return isinstance(spec.pk.type, sa.Integer)


async def continue_counters(engine: AsyncEngine, specs: list[TableSpec]) -> None:
    """Move each integer key's counter on the target past the largest id it holds."""
    for spec in specs:
        if not has_counter(spec):
            continue
        async with AsyncSession(engine) as session, session.begin():
            with translate_errors(f"moving the id counter of {spec.name}"):
                largest = (await session.execute(sa.select(sa.func.max(spec.pk)))).scalar()
                if largest is None:
                    continue
                dialect = session.get_bind().dialect.name
                if dialect == "postgresql":
                    await _postgresql(session, spec, int(largest))
                elif dialect == "sqlite":
                    await _sqlite(session, spec, int(largest))
                else:
                    await _mysql(session, spec, int(largest))


async def _postgresql(session: AsyncSession, spec: TableSpec, largest: int) -> None:
    found = await session.execute(
        sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": spec.name, "c": spec.pk.name}
    )
    sequence = found.scalar()
    if sequence is None:
        return
    state: Any = (
        await session.execute(sa.text(f"SELECT last_value, is_called FROM {sequence}"))
    ).one()
    used = int(state.last_value) if state.is_called else int(state.last_value) - 1
    if largest > used:
        await session.execute(sa.text("SELECT setval(:s, :v, true)"), {"s": sequence, "v": largest})


async def _sqlite(session: AsyncSession, spec: TableSpec, largest: int) -> None:
    params = {"t": spec.name, "v": largest}
    result: Any = await session.execute(
        sa.text("UPDATE sqlite_sequence SET seq = :v WHERE name = :t AND seq < :v"), params
    )
    if not result.rowcount:
        await session.execute(
            sa.text(
                "INSERT INTO sqlite_sequence (name, seq) SELECT :t, :v "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = :t)"
            ),
            params,
        )


async def _mysql(session: AsyncSession, spec: TableSpec, largest: int) -> None:
    found = await session.execute(
        sa.text(
            "SELECT auto_increment FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = :t"
        ),
        {"t": spec.name},
    )
    current = found.scalar()
    if current is None or int(current) <= largest:
        await session.execute(sa.text(f"ALTER TABLE {spec.name} AUTO_INCREMENT = {largest + 1}"))
