"""Reading a table in batches: keyset pagination by primary key, vectors as float32 arrays.

Each batch is one short read (``WHERE pk > last ORDER BY pk LIMIT n``), so memory stays bounded
by the batch whatever the table's size, and no transaction stays open on the source between
batches. Values come back through the model's column types (UUIDs, aware datetimes, JSON,
enums), so they can be written to any other dialect as the layer writes them; vectors come back
as float32 arrays whatever the source stored (pgvector's ``vector``, a float32 blob).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.errors import DataLayerError, translate_errors
from app.transfer.tables import TableSpec
from app.vector.outbox.rows import as_vector
from app.vector.sql.common import pgvector_extension, register_pgvector

Row = dict[str, Any]


async def prepare_vectors(session: AsyncSession) -> None:
    """Give the session's connection pgvector's codecs when the database has the extension."""
    if session.get_bind().dialect.name != "postgresql":
        return
    extension = await pgvector_extension(session)
    if extension is not None:
        await register_pgvector(session, extension[0])


def select_rows(spec: TableSpec, after: Any, limit: int | None) -> Any:
    """The statement for the rows after ``after`` (None: from the first), in key order."""
    fields: list[Any] = [spec.table.c[name] for name in spec.columns]
    fields += [sa.literal_column(column).label(column) for column in spec.vectors.values()]
    statement = sa.select(*fields).order_by(spec.pk)
    if after is not None:
        statement = statement.where(spec.pk > after)
    return statement if limit is None else statement.limit(limit)


def decode(spec: TableSpec, row: Any) -> Row:
    """A result row as column name -> value, each vector as a float32 array (or None)."""
    values = dict(row._mapping)
    for dimension, column in spec.vectors.items():
        stored = values.get(column)
        if stored is not None:
            try:
                values[column] = as_vector(stored, dimension)
            except DataLayerError as exc:  # a damaged vector: say which row holds it
                key = values.get(spec.pk.name)
                raise DataLayerError(f"{spec.name} {spec.pk.name} {key}: {exc}") from None
    return values


async def batches(
    engine: AsyncEngine, spec: TableSpec, size: int, after: Any = None
) -> AsyncIterator[list[Row]]:
    """The rows of ``spec``'s table after ``after``, ``size`` at a time, in key order."""
    while True:
        async with AsyncSession(engine) as session:
            await prepare_vectors(session)
            with translate_errors(f"reading {spec.name}"):
                result = await session.execute(select_rows(spec, after, size))
                rows = [decode(spec, row) for row in result]
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        after = rows[-1][spec.pk.name]


async def count_rows(engine: AsyncEngine, table: sa.Table) -> int:
    """How many rows ``table`` holds in ``engine``'s database."""
    async with AsyncSession(engine) as session:
        with translate_errors(f"counting {table.name}"):
            found = await session.execute(sa.select(sa.func.count()).select_from(table))
            return int(found.scalar_one())
