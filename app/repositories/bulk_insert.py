"""Bulk inserts that carry columns the model does not map (the ``embedding_<dim>`` columns).

A chunk and its vector belong in ONE row write. Inserting the rows and then updating each with its
vector writes every row twice: a second heap tuple, every index entry again, PostgreSQL's stored
generated ``content_search_vector`` computed again. ``insert_with_columns`` writes both at once,
in the Unit of Work's transaction, and sets the generated ids on the entities as ``add_many`` does:

- PostgreSQL + asyncpg: binary ``COPY`` through the session's own connection, whatever the batch
  size. COPY returns no rows, so the ids are drawn from the primary key's sequence first (one
  round trip per batch) and written explicitly. Values go through the same type processing as
  an INSERT's (JSON to text, enums to their names, time zones); the extra columns' values go to
  asyncpg as they are, so a ``vector`` column needs pgvector's codec on the connection (the
  pgvector index registers it).
- Elsewhere: multi-row ``INSERT ... RETURNING`` (SQLite 3.35+, MariaDB 10.5+), ids mapped back
  in parameter order. On MariaDB, extra columns of bytes (float32 vectors) travel as hex text
  decoded by ``UNHEX``, which the client inlines ~25 times faster than escaped bytes. Without
  RETURNING (MySQL 8), or on another PostgreSQL driver, ``UnsupportedFeatureError``: insert,
  then update the vectors.

Run it inside a savepoint (the repositories' ``_atomic``): a failed COPY aborts the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeDecorator

from app.errors import DataLayerError, InvalidInputError, UnsupportedFeatureError
from app.metrics.counters import EngineMetrics, clock, metrics_of
from app.repositories.batching import MAX_PARAMETERS, MAX_ROWS, batches, returns_ids, value_bytes
from app.repositories.validation import ModelColumns

_STREAM_ROWS = 64  # records made at a time for COPY (about 400 KB with 1536-d vectors)
# The sequence looked up once (an InitPlan), not once per id: 2.4 ms -> 0.6 ms for 1000 ids.
_NEXT_IDS = (
    "SELECT nextval((SELECT pg_get_serial_sequence($1, $2))::regclass) FROM generate_series(1, $3)"
)


def can_copy(dialect: Dialect) -> bool:
    """Whether ``insert_with_columns`` uses COPY on this dialect."""
    return dialect.name == "postgresql" and dialect.driver == "asyncpg"


def can_insert_with_columns(dialect: Dialect) -> bool:
    """Whether rows with generated ids and extra columns can be written in one pass here."""
    return can_copy(dialect) or (returns_ids(dialect) and dialect.name != "postgresql")


async def insert_with_columns(
    session: AsyncSession,
    columns: ModelColumns,
    items: Sequence[Any],
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> Sequence[Any]:
    """Insert ``items`` with ``extra[name][i]`` in column ``name`` of item ``i``'s row.

    Returns ``items`` with generated primary keys set; the caller attaches them to the session
    (``make_transient_to_detached`` + ``session.add``), as after ``bulk.insert_all``. The
    entities must have been validated.
    """
    extra = dict(extra or {})
    for name, values in extra.items():
        if name in columns.attr_of:
            raise InvalidInputError(f"{name} is a column of the model: set it on the entities")
        if len(values) != len(items):
            raise InvalidInputError(f"{len(values)} values for {name}, {len(items)} rows")
    if not items:
        return items
    connection = await session.connection()
    dialect = connection.dialect
    if can_copy(dialect):
        await _copy(session, columns, items, extra)
    elif dialect.name == "sqlite" and returns_ids(dialect):
        await _insert_sqlite(session, columns, items, extra)
    elif returns_ids(dialect) and dialect.name != "postgresql":
        await _insert_returning(session, columns, items, extra)
    else:
        raise UnsupportedFeatureError(
            f"{dialect.name} {dialect.server_version_info} has no INSERT ... RETURNING: "
            "insert the rows, then update the extra columns"
        )
    return items


# -- PostgreSQL: binary COPY -----------------------------------------------------------------


async def _copy(
    session: AsyncSession, columns: ModelColumns, items: Sequence[Any], extra: dict[str, Any]
) -> None:
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    if not driver.is_in_transaction():
        # SQLAlchemy begins lazily, at the first statement: COPY must not run in autocommit.
        await connection.exec_driver_sql("SELECT 1")
    pk_attr = columns.attr_of[columns.pk.name]
    missing = [e for e in items if e.__dict__.get(pk_attr) is None]
    metrics = metrics_of(connection.dialect)
    keys = await _next_ids(metrics, driver, columns, len(missing))
    records = _streamed(columns, connection.dialect, items, keys, list(extra.values()))
    await _driver_call(
        metrics,
        driver.copy_records_to_table,
        columns.table.name,
        schema_name=columns.table.schema,
        columns=[*columns.attr_of, *extra],
        records=records,
    )
    for entity, key in zip(missing, keys, strict=True):
        setattr(entity, pk_attr, key)


def _streamed(
    columns: ModelColumns,
    dialect: Dialect,
    items: Sequence[Any],
    keys: Sequence[Any],
    extras: list[Sequence[Any]],
) -> Iterator[tuple[Any, ...]]:
    """Every column's records, made ``_STREAM_ROWS`` at a time as COPY asks for them.

    COPY sends what it has encoded every 512 KB and the server works through it meanwhile, so
    rows made on demand cost the server no waiting; made all at once, they would.
    """
    names, pk_attr = list(columns.attr_of), columns.attr_of[columns.pk.name]
    fill = iter(keys)
    for start in range(0, len(items), _STREAM_ROWS):
        part = items[start : start + _STREAM_ROWS]
        lacking = sum(1 for entity in part if entity.__dict__.get(pk_attr) is None)
        part_keys = list(islice(fill, lacking))
        part_extras = [values[start : start + _STREAM_ROWS] for values in extras]
        yield from _records(columns, dialect, names, part, part_keys, part_extras)


def _records(
    columns: ModelColumns,
    dialect: Dialect,
    names: list[str],
    items: Sequence[Any],
    keys: Sequence[Any],
    extras: list[Sequence[Any]],
) -> list[tuple[Any, ...]]:
    """Per entity: the ``names`` columns' values as the driver takes them, then the extras.

    ``keys`` fill, in order, the primary keys the entities lack. Built column by column: one
    lookup of each column's processor, not one per value.
    """
    states = [entity.__dict__ for entity in items]
    values: list[Sequence[Any]] = []
    for name in names:
        attr = columns.attr_of[name]
        column = [state.get(attr) for state in states]
        if name == columns.pk.name and keys:
            fill = iter(keys)
            column = [value if value is not None else next(fill) for value in column]
        # What an INSERT's compiled statement would apply (variants and TypeDecorators resolved
        # for this dialect): JSON to text, enums to names, time zones.
        process = columns.by_name[name].type._cached_bind_processor(dialect)
        if process is not None:
            column = [value if value is None else process(value) for value in column]
        values.append(column)
    return list(zip(*values, *extras, strict=True))


async def _next_ids(
    metrics: EngineMetrics | None, driver: Any, columns: ModelColumns, count: int
) -> list[Any]:
    """``count`` values from the primary key's sequence, in one round trip."""
    if not count:
        return []
    table, pk = columns.table, columns.pk
    qualified = f"{table.schema}.{table.name}" if table.schema else table.name
    rows = await _driver_call(metrics, driver.fetch, _NEXT_IDS, qualified, pk.name, count)
    keys = [row[0] for row in rows]
    if None in keys:
        raise UnsupportedFeatureError(f"{qualified}.{pk.name} has no sequence to draw ids from")
    return keys


async def _driver_call(
    metrics: EngineMetrics | None, method: Any, *args: Any, **kwargs: Any
) -> Any:
    """Call asyncpg directly (counted as a statement); its errors become SQLAlchemy's, so
    ``translate_errors`` sorts them."""
    import asyncpg

    started = clock()
    try:
        return await method(*args, **kwargs)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise _counted(metrics, sa_exc.IntegrityError("COPY", None, exc)) from exc
    except asyncpg.PostgresError as exc:
        raise _counted(metrics, sa_exc.DBAPIError("COPY", None, exc)) from exc
    except asyncpg.InterfaceError as exc:
        raise _counted(metrics, sa_exc.InterfaceError("COPY", None, exc)) from exc
    finally:
        if metrics is not None:
            metrics.observe(clock() - started)


def _counted(metrics: EngineMetrics | None, error: sa_exc.DBAPIError) -> sa_exc.DBAPIError:
    if metrics is not None:
        metrics.failed(error)
    return error


# -- SQLite: multi-row INSERT ... RETURNING, ids sorted ----------------------------------------


async def _insert_sqlite(
    session: AsyncSession, columns: ModelColumns, items: Sequence[Any], extra: dict[str, Any]
) -> None:
    """One multi-row INSERT per batch of rows, ids mapped back by sorting.

    SQLAlchemy's ``sort_by_parameter_order`` sends one INSERT per row on SQLite: the order of
    RETURNING's rows is not guaranteed there. The ids are, though. SQLite has one writer: this
    statement holds the database's write lock from its first row to its last, so no other row
    can be inserted in between; it inserts the VALUES rows in order, and gives each new row the
    largest rowid so far plus one (or the next ``sqlite_sequence`` value with AUTOINCREMENT).
    The ids of one INSERT are therefore consecutive and ascending in VALUES order, so sorting
    what RETURNING gives maps them back. The one exception (the largest rowid reached 2**63-1,
    after which SQLite picks free rowids at random) is detected, never mapped wrongly.
    """
    connection = await session.connection()
    dialect = connection.dialect
    pk, pk_attr = columns.pk, columns.attr_of[columns.pk.name]
    given = {e.__dict__.get(pk_attr) is not None for e in items}
    if len(given) > 1:
        raise InvalidInputError("set the primary key on all entities of a batch or on none")
    names = [n for n in columns.attr_of if n != pk.name or given == {True}]
    records = _records(columns, dialect, names, items, [], list(extra.values()))
    quote = dialect.identifier_preparer.quote
    width = len(names) + len(extra)
    head = (
        f"INSERT INTO {quote(columns.table.name)} "
        f"({', '.join(quote(n) for n in [*names, *extra])}) VALUES "
    )
    one = f"({', '.join(['?'] * width)})"
    size = max(1, min(MAX_ROWS, MAX_PARAMETERS // width))
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        statement = head + ", ".join([one] * len(chunk)) + f" RETURNING {quote(pk.name)}"
        params = tuple(value for record in chunk for value in record)
        result = await connection.exec_driver_sql(statement, params)
        if given == {False}:
            keys = sorted(row[0] for row in result)
            if keys and keys[-1] - keys[0] != len(keys) - 1:
                raise DataLayerError(
                    f"{columns.table.name} gave non-consecutive ids to one INSERT (its largest "
                    "rowid reached 2**63-1): the ids cannot be mapped back to the rows"
                )
            for entity, key in zip(items[start : start + size], keys, strict=True):
                setattr(entity, pk_attr, key)


# -- MariaDB: multi-row INSERT ... RETURNING ---------------------------------------------------

_WIDE: dict[tuple[str, tuple[tuple[str, bool], ...]], sa.Table] = {}
_BYTES = (bytes, bytearray, memoryview)


class HexBytes(TypeDecorator[bytes]):
    """Bytes sent to MySQL/MariaDB as hex text, turned back into the same bytes by ``UNHEX``.

    The MySQL client inlines every value into the statement text and escapes bytes character by
    character: ~200 us for a 6 KB float32 vector, far more than the rest of its row. Hex text
    costs ~8 us and needs no escaping.
    """

    impl = sa.Text
    cache_ok = True

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.func.unhex(bindvalue)

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else bytes(value).hex()


def _wide_table(table: sa.Table, extra: tuple[tuple[str, bool], ...]) -> sa.Table:
    """``table`` plus the ``extra`` columns, made once: (name, holds bytes) each; bytes go as
    ``HexBytes``, other values pass through untyped."""
    key = (table.fullname, extra)
    if key not in _WIDE:
        wide = table.to_metadata(sa.MetaData())
        for name, binary in extra:
            wide.append_column(sa.Column(name, HexBytes() if binary else sa.types.NullType()))
        _WIDE[key] = wide
    return _WIDE[key]


def _holds_bytes(values: Sequence[Any]) -> bool:
    present = [value for value in values if value is not None]
    return bool(present) and all(isinstance(value, _BYTES) for value in present)


async def _insert_returning(
    session: AsyncSession, columns: ModelColumns, items: Sequence[Any], extra: dict[str, Any]
) -> None:
    wide = _wide_table(columns.table, tuple((n, _holds_bytes(v)) for n, v in extra.items()))
    pk, pk_attr = columns.pk, columns.attr_of[columns.pk.name]
    rows = []
    for index, entity in enumerate(items):
        state = entity.__dict__
        row = {name: state.get(attr) for name, attr in columns.attr_of.items()}
        if row[pk.name] is None:
            del row[pk.name]
        row.update({name: values[index] for name, values in extra.items()})
        rows.append(row)
    if len({frozenset(r) for r in rows}) > 1:  # one VALUES shape per statement
        raise InvalidInputError("set the primary key on all entities of a batch or on none")
    statement = sa.insert(wide).returning(wide.c[pk.name], sort_by_parameter_order=True)
    done = 0
    for chunk in batches(rows, len(rows[0]), lambda row: value_bytes(row.values())):
        options = {"insertmanyvalues_page_size": len(chunk)}  # the whole chunk, one statement
        result = await session.execute(statement.execution_options(**options), list(chunk))
        for entity, key in zip(items[done : done + len(chunk)], result.scalars(), strict=True):
            setattr(entity, pk_attr, key)
        done += len(chunk)
