"""Bulk writes: multi-row INSERT (with RETURNING where the server has it) and native upserts.

One statement per batch, chosen by dialect: ``INSERT ... ON CONFLICT (...) DO UPDATE`` on
PostgreSQL and SQLite, ``INSERT ... ON DUPLICATE KEY UPDATE`` on MySQL/MariaDB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.errors import InvalidInputError, UnsupportedFeatureError
from app.repositories.batching import batches, returns_ids, value_bytes
from app.repositories.bulk_insert import insert_with_columns
from app.repositories.rows import entity_rows
from app.repositories.validation import ModelColumns

_NEVER_UPDATED = frozenset({"created_at"})


@dataclass(frozen=True)
class UpsertPlan:
    """What an upsert matches on and what it overwrites, checked against the table."""

    columns: ModelColumns
    on: tuple[sa.Column[Any], ...]
    update: tuple[sa.Column[Any], ...]


def unique_keys(table: sa.Table) -> list[frozenset[str]]:
    """The column sets the table declares unique: primary key, constraints, unique indexes."""
    keys = [frozenset(c.name for c in table.primary_key.columns)]
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            keys.append(frozenset(c.name for c in constraint.columns))
    keys += [frozenset(c.name for c in index.columns) for index in table.indexes if index.unique]
    return keys


def plan(columns: ModelColumns, on: Sequence[str], update: Sequence[str] | None) -> UpsertPlan:
    """Resolve and check ``on`` and ``update``; InvalidInputError before any SQL."""
    if isinstance(on, str) or not on:
        raise InvalidInputError("upsert_many needs on=[column, ...]: a unique key of the table")
    on_columns = tuple(columns.column(name) for name in on)
    names = frozenset(c.name for c in on_columns)
    keys = unique_keys(columns.table)
    if names not in keys:
        listed = "; ".join(", ".join(sorted(key)) for key in keys)
        raise InvalidInputError(
            f"upsert on ({', '.join(sorted(names))}) needs a unique key of "
            f"{columns.table.name} (MySQL cannot target any other); unique keys: {listed}"
        )
    if update is None:
        skip = names | {columns.pk.name} | _NEVER_UPDATED
        chosen = tuple(c for c in columns.table.columns if c.name not in skip)
    else:
        if isinstance(update, str):
            raise InvalidInputError("update takes a list of column names")
        chosen = tuple(columns.column(name) for name in update)
        if any(c is columns.pk for c in chosen):
            raise InvalidInputError("upsert_many cannot update the primary key")
    return UpsertPlan(columns, on_columns, chosen)


def row_of(columns: ModelColumns, entity: Any) -> dict[str, Any]:
    """The column values of an entity; a generated primary key left out when unset."""
    state = entity.__dict__
    row = {name: state.get(attr) for name, attr in columns.attr_of.items()}
    if row[columns.pk.name] is None:
        del row[columns.pk.name]
    return row


def _sized(dialect: Dialect, values: Callable[[Any], Iterable[Any]]) -> Any:
    if dialect.name in ("mysql", "mariadb"):
        return lambda item: value_bytes(values(item))
    return None




async def insert_all(
    session: AsyncSession, dialect: Dialect, columns: ModelColumns, items: list[Any]
) -> list[Any]:
    """Insert ``items`` (ids set on those without one); the caller attaches them to the session."""
    # Core, not the ORM: the ORM would write a column's default where an entity holds None.
    pk_attr = columns.attr_of[columns.pk.name]
    table, width = columns.table, len(columns.attr_of)
    given = [e for e in items if e.__dict__.get(pk_attr) is not None]
    generated = [e for e in items if e.__dict__.get(pk_attr) is None]
    entity_size = _sized(dialect, lambda e: e.__dict__.values())
    for chunk in batches(given, width, entity_size):
        await session.execute(sa.insert(table), [row_of(columns, e) for e in chunk])
    if not generated:
        return items
    if dialect.name == "sqlite":
        # SQLAlchemy sends one INSERT per row here (SQLite does not promise RETURNING's order);
        # bulk_insert sends one per batch and maps the ids back itself.
        await insert_with_columns(session, columns, generated)
        return items
    if not returns_ids(dialect):
        # No RETURNING (MySQL 8): lastrowid arithmetic over a multi-row INSERT is unsafe with
        # interleaved auto-increment locking, so each row is inserted and its id read.
        for entity in generated:
            result = await session.execute(sa.insert(table), row_of(columns, entity))
            key = cast(CursorResult[Any], result).inserted_primary_key
            setattr(entity, pk_attr, key[0] if key else None)
        return items
    returning = sa.insert(table).returning(columns.pk, sort_by_parameter_order=True)
    for chunk in batches(generated, width, entity_size):
        result = await session.execute(returning, [row_of(columns, e) for e in chunk])
        for entity, key in zip(chunk, result.scalars(), strict=True):
            setattr(entity, pk_attr, key)
    return items


async def upsert_all(
    session: AsyncSession,
    dialect: Dialect,
    plan: UpsertPlan,
    items: list[Any],
    returned: list[Any] | None = None,
) -> int:
    """Upsert ``items`` in batches of one statement each; the number of distinct rows.

    Given ``returned`` on a dialect with INSERT ... RETURNING for upserts (PostgreSQL, SQLite),
    the statements return the entity columns of the rows they inserted or updated (not of those
    an empty ``update`` left alone), appended to it; elsewhere it stays empty.
    """
    rows = _last_wins(plan, [row_of(plan.columns, e) for e in items])
    returning = _returning(dialect, plan) if returned is not None else ()
    out: list[Any] = [] if returned is None else returned
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:  # a multi-row VALUES needs the same columns in every row
        groups.setdefault(frozenset(row), []).append(row)
    row_size = _sized(dialect, dict.values)
    for group in groups.values():
        if len(group) == 1:  # the values as parameters: a statement SQLAlchemy compiles once
            result = await session.execute(_statement(dialect, plan, None, returning), group[0])
            if returning:
                out.extend(result.all())
            continue
        for chunk in batches(group, len(group[0]), row_size):
            result = await session.execute(_statement(dialect, plan, list(chunk), returning))
            if returning:
                out.extend(result.all())
    _sync_loaded(session, plan, rows)
    return len(rows)


def _sync_loaded(session: AsyncSession, plan: UpsertPlan, rows: list[dict[str, Any]]) -> None:
    """Give entities this session already holds the values the upsert wrote to their rows."""
    model, attr_of = plan.columns.model, plan.columns.attr_of
    loaded = [obj for obj in session.identity_map.values() if isinstance(obj, model)]
    if not loaded or not plan.update:
        return
    by_key = {tuple(row.get(c.name) for c in plan.on): row for row in rows}
    on_attrs = [attr_of[c.name] for c in plan.on]
    for obj in loaded:
        row = by_key.get(tuple(obj.__dict__.get(a) for a in on_attrs))
        if row is not None:
            for column in plan.update:
                set_committed_value(obj, attr_of[column.name], row.get(column.name))


def _last_wins(plan: UpsertPlan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # PostgreSQL refuses to update one row twice in a statement; keep each key's last row.
    # NULLs never conflict, so rows with a NULL in the key are all kept.
    by_key: dict[Any, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        key = tuple(row.get(c.name) for c in plan.on)
        by_key[("row", index) if None in key else key] = row
    return list(by_key.values())


_ONE_ROW: dict[tuple[str, str, tuple[str, ...], tuple[str, ...], bool], Any] = {}


def _returning(dialect: Dialect, plan: UpsertPlan) -> tuple[Any, ...]:
    """The entity's columns, where an upsert can return them (not MySQL/MariaDB: no RETURNING
    with ON DUPLICATE KEY UPDATE)."""
    if dialect.name in ("mysql", "mariadb") or not dialect.insert_returning:
        return ()
    model: Any = plan.columns.model
    return tuple(entity_rows(model).columns)


def _statement(
    dialect: Dialect,
    plan: UpsertPlan,
    rows: list[dict[str, Any]] | None,
    returning: tuple[Any, ...] = (),
) -> Any:
    """The upsert of ``rows`` in one multi-row VALUES; with None, of one row given as the
    execution's parameters (made once per plan, so SQLAlchemy compiles it once per shape).
    ``returning``: the columns it returns."""
    if rows is None:
        key = (
            dialect.name,
            plan.columns.table.fullname,
            tuple(c.name for c in plan.on),
            tuple(c.name for c in plan.update),
            bool(returning),
        )
        if key not in _ONE_ROW:
            _ONE_ROW[key] = _upsert(dialect, plan, lambda insert: insert, returning)
        return _ONE_ROW[key]
    return _upsert(dialect, plan, lambda insert: insert.values(rows), returning)


def _upsert(
    dialect: Dialect, plan: UpsertPlan, values: Callable[[Any], Any], returning: tuple[Any, ...]
) -> Any:
    stmt = _native_upsert(dialect, plan, values)
    return stmt.returning(*returning) if returning else stmt


def _native_upsert(dialect: Dialect, plan: UpsertPlan, values: Callable[[Any], Any]) -> Any:
    table = plan.columns.table
    if dialect.name in ("mysql", "mariadb"):
        my = values(mysql.insert(table))
        if plan.update:
            return my.on_duplicate_key_update({c.name: my.inserted[c.name] for c in plan.update})
        pk = plan.columns.pk  # "no update": a no-op assignment keeps the existing row
        return my.on_duplicate_key_update({pk.name: table.c[pk.name]})
    if dialect.name == "postgresql":
        stmt: Any = values(postgresql.insert(table))
    elif dialect.name == "sqlite":
        stmt = values(sqlite.insert(table))
    else:
        raise UnsupportedFeatureError(f"upsert_many is not implemented for {dialect.name!r}")
    on = [c.name for c in plan.on]
    if not plan.update:
        return stmt.on_conflict_do_nothing(index_elements=on)
    return stmt.on_conflict_do_update(
        index_elements=on, set_={c.name: stmt.excluded[c.name] for c in plan.update}
    )
