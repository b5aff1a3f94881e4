"""One-row writes on the driver connection (see ``app.repositories.driver``).

A Unit of Work that adds one entity and updates another spends most of its time in SQLAlchemy's
execution path, not in the database. These statements are built once per table and set of
columns, compiled once, and sent on the session's connection inside its transaction, with the
same SQL and the same values as the Core statements they stand for.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from app.repositories.batching import returns_ids
from app.repositories.bulk import row_of
from app.repositories.driver import Runner
from app.repositories.rows import entity_rows
from app.repositories.validation import ModelColumns

NOT_DONE: Any = object()  # this path cannot do it: use the session's


async def insert_one(run: Runner, dialect: Dialect, columns: ModelColumns, entity: Any) -> bool:
    """Insert ``entity`` (its generated id set on it); ``False``: not done, use the session."""
    row = row_of(columns, entity)
    pk = columns.pk.name
    generated = pk not in row
    if generated and not returns_ids(dialect):
        return False
    statement = _insert(columns.table, tuple(row), generated)
    params = {f"v_{name}": value for name, value in row.items()}
    if not generated:
        return await run.execute(statement, params, fixed=True) is not None
    found = await run.fetch(statement, params, fixed=True)
    if found is None:
        return False
    setattr(entity, columns.attr_of[pk], found[0][0])
    return True


async def update_one(
    run: Runner, model: Any, columns: ModelColumns, key: Any, values: Mapping[str, Any]
) -> Any:
    """UPDATE ... RETURNING the row ``key`` with ``values`` (by attribute): the stored row's
    values, ``None`` when there is no such row, ``NOT_DONE`` when this path cannot do it."""
    name_of = {attr: name for name, attr in columns.attr_of.items()}
    names = tuple(name_of[attr] for attr in values)
    statement = _update(model, names)
    params = {f"v_{name_of[attr]}": value for attr, value in values.items()}
    params["key"] = key
    found = await run.fetch(statement, params, fixed=True)
    if found is None:
        return NOT_DONE
    return found[0] if found else None


@cache
def _insert(table: sa.Table, names: tuple[str, ...], returning: bool) -> Any:
    statement = sa.insert(table).values(
        {name: sa.bindparam(f"v_{name}", type_=table.c[name].type) for name in names}
    )
    if returning:
        (pk,) = table.primary_key.columns
        statement = statement.returning(pk)
    return statement


@cache
def _update(model: Any, names: tuple[str, ...]) -> Any:
    table = model.__table__
    (pk,) = table.primary_key.columns
    return (
        sa.update(table)
        .where(pk == sa.bindparam("key", type_=pk.type))
        .values({name: sa.bindparam(f"v_{name}", type_=table.c[name].type) for name in names})
        .returning(*entity_rows(model).columns)
    )
