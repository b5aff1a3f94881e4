"""Writing a batch into the target: only the rows it lacks, in one transaction, ids kept.

Resuming is idempotent by primary key: each batch first asks the target which of its keys exist
and writes only the others, so a batch committed before an interruption is skipped and one that
was rolled back is written again; nothing is duplicated or lost. Rows go through the layer's
bulk insert (``insert_with_columns``: binary COPY on PostgreSQL, multi-row INSERT elsewhere)
with their vectors in the same row write, each vector encoded for the target's column
(pgvector's ``vector`` or a float32 blob). A row that references its own table (a task's
parent) is written after the row it references (``app.transfer.selfref``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain.audit import AuditEntry
from app.domain.base import archon_registry
from app.errors import translate_errors
from app.repositories.bulk_insert import can_insert_with_columns, insert_with_columns
from app.repositories.validation import ModelColumns, columns_of
from app.transfer.read import Row, prepare_vectors
from app.transfer.tables import TableSpec
from app.vector.sql.exact import encode_blob

_KEY_CHUNK = 1000


def model_columns(table: sa.Table) -> ModelColumns:
    """The layer's column catalog of the model mapped to ``table``."""
    for mapper in (*archon_registry.mappers, AuditEntry.__mapper__):
        if mapper.local_table is table:
            return columns_of(mapper.class_)
    raise LookupError(table.name)


async def existing_keys(session: AsyncSession, spec: TableSpec, keys: Sequence[Any]) -> set[Any]:
    """Which of ``keys`` the target's table holds already."""
    found: set[Any] = set()
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = list(keys[start : start + _KEY_CHUNK])
        statement = sa.select(spec.pk).where(spec.pk.in_(chunk))
        found.update((await session.execute(statement)).scalars())
    return found


def _encode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    return value if "vector" in kind else encode_blob(value)


async def write_batch(
    engine: AsyncEngine,
    spec: TableSpec,
    target_vectors: dict[int, str],
    rows: list[Row],
    *,
    defer: bool = False,
) -> int:
    """Insert the rows of ``rows`` the target lacks, in one transaction; how many were.
    ``defer``: leave the self-referencing columns empty (``write_deferred`` sets them)."""
    columns = model_columns(spec.table)
    async with AsyncSession(engine) as session, session.begin():
        with translate_errors(f"writing {spec.name}"):
            present = await existing_keys(session, spec, [row[spec.pk.name] for row in rows])
            missing = [row for row in rows if row[spec.pk.name] not in present]
            if not missing:
                return 0
            await prepare_vectors(session)
            items = [
                SimpleNamespace(
                    **{
                        attr: None if defer and name in spec.deferred else row.get(name)
                        for name, attr in columns.attr_of.items()
                    }
                )
                for row in missing
            ]
            extra = {
                column: [_encode(row.get(column), target_vectors[dim]) for row in missing]
                for dim, column in spec.vectors.items()
                if any(row.get(column) is not None for row in missing)
            }
            connection = await session.connection()
            if can_insert_with_columns(connection.dialect):
                await insert_with_columns(session, columns, items, extra)
            else:
                await _insert_plain(session, columns, items, extra)
    return len(missing)


async def _insert_plain(
    session: AsyncSession, columns: ModelColumns, items: list[Any], extra: dict[str, list[Any]]
) -> None:
    """Where no multi-row INSERT ... RETURNING exists (MySQL 8): an executemany INSERT with the
    keys given (nothing needs returning), the vectors as binary columns."""
    wide = columns.table.to_metadata(sa.MetaData())
    for name in extra:
        wide.append_column(sa.Column(name, sa.LargeBinary()))
    rows = []
    for index, item in enumerate(items):
        row = {name: item.__dict__.get(attr) for name, attr in columns.attr_of.items()}
        row.update({name: values[index] for name, values in extra.items()})
        rows.append(row)
    await session.execute(sa.insert(wide), rows)


async def write_deferred(engine: AsyncEngine, spec: TableSpec, rows: list[Row]) -> int:
    """Set the self-referencing columns of ``rows`` (second pass), in one transaction."""
    values = [row for row in rows if any(row.get(name) is not None for name in spec.deferred)]
    if not values:
        return 0
    key = sa.bindparam("_key", type_=spec.pk.type)
    statement = (
        sa.update(spec.table)
        .where(spec.pk == key)
        .values(
            {
                name: sa.bindparam(f"_v_{name}", type_=spec.table.c[name].type)
                for name in spec.deferred
            }
        )
    )
    params = [
        {"_key": row[spec.pk.name], **{f"_v_{name}": row.get(name) for name in spec.deferred}}
        for row in values
    ]
    async with AsyncSession(engine) as session, session.begin():
        with translate_errors(f"writing the references of {spec.name}"):
            await session.execute(statement, params)
    return len(values)


async def clear_table(engine: AsyncEngine, spec: TableSpec) -> None:
    """Empty the target's ``spec`` table (the rows its own setup wrote, which the source's
    replace)."""
    async with AsyncSession(engine) as session, session.begin():
        with translate_errors(f"emptying {spec.name}"):
            await session.execute(sa.delete(spec.table))
