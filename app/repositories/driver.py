"""Statements run on the driver's own connection, inside the Unit of Work's transaction.

SQLAlchemy's execution path (a greenlet hop, an execution context, the cursor adapter, a
``Result``) costs ~0.3 ms a statement: as much as PostgreSQL takes to answer a primary-key read.
For the hot reads and single-row writes the statement is compiled by SQLAlchemy once per shape
(keyed by its own cache key); each call binds its parameters with the column types' bind
processors, runs on the pooled connection the session already holds (asyncpg, aiosqlite,
aiomysql) and converts the values with the types' result processors. Same SQL, same values,
same transaction; driver errors are wrapped as SQLAlchemy would wrap them, and a connection the
server dropped is invalidated in the pool.

``runner(session)`` says whether a session may take this path: a supported driver, an engine not
behind a transaction pooler (see ``app.engines``), and nobody listening to every statement
(query logging, tracing instrumentation): those keep SQLAlchemy's own path.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sa_types
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import LRUCache

from app.engines import DRIVER_STATEMENTS
from app.metrics.counters import clock, metrics_of
from app.repositories.lease import Lease

Rows = list[Sequence[Any]]
Fetch = Callable[[Any, str, list[Any]], Awaitable[Rows]]
Execute = Callable[[Any, str, list[Any]], Awaitable[int]]


@dataclass(frozen=True)
class Compiled:
    """A statement compiled for one dialect: its SQL and how values cross the driver."""

    sql: str
    names: tuple[str, ...]  # bound parameters, in positional order
    binds: tuple[Callable[[Any], Any] | None, ...]
    converted: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, result processor)
    compiled: Any
    row: Callable[..., Any]  # a named tuple of the returned columns
    defaults: dict[str, Any]  # the values bound in the statement itself (literals)


class StatementCache:
    """Compiled statements of one dialect, by SQLAlchemy cache key (bounded, least recent out)."""

    def __init__(self, dialect: Dialect, size: int = 500) -> None:
        self.dialect = dialect
        self._cache: LRUCache[Any, Compiled | None] = LRUCache(size)
        self._fixed: dict[int, tuple[Any, Compiled | None]] = {}

    def prepare(
        self, statement: Any, params: Mapping[str, Any] | None = None
    ) -> tuple[Compiled, list[Any]] | None:
        """The compiled form of ``statement`` and its positional values; ``None`` when the
        statement needs what this path does not do (expanding IN lists, literal rendering)."""
        key = statement._generate_cache_key()
        if key is None:
            return None
        compiled = self._cache.get(key.key)
        if compiled is None:
            if key.key in self._cache:
                return None
            compiled = self._compile(statement, key)
            self._cache[key.key] = compiled
            if compiled is None:
                return None
        values = compiled.compiled.construct_params(params, extracted_parameters=key.bindparams)
        return compiled, [
            value if bind is None else bind(value)
            for value, bind in zip(
                (values[name] for name in compiled.names), compiled.binds, strict=True
            )
        ]

    def prepare_fixed(
        self, statement: Any, params: Mapping[str, Any]
    ) -> tuple[Compiled, list[Any]] | None:
        """As ``prepare``, for a statement built once and reused, every value a named bind
        parameter given in ``params`` (no cache key to compute per call)."""
        entry = self._fixed.get(id(statement))
        if entry is None:  # the statement is kept so that its id stays its own
            entry = self._fixed[id(statement)] = (statement, self._compile(statement))
        compiled = entry[1]
        if compiled is None:
            return None
        values = {**compiled.defaults, **params}
        return compiled, [
            values[name] if bind is None else bind(values[name])
            for name, bind in zip(compiled.names, compiled.binds, strict=True)
        ]

    def _compile(self, statement: Any, key: Any = None) -> Compiled | None:
        dialect = self.dialect
        # With its cache key, the compiled form takes the values of any statement of that key.
        compiled: Any = dialect.statement_compiler(dialect, statement, cache_key=key)
        if compiled.literal_execute_params or compiled.post_compile_params:
            return None
        names = tuple(compiled.positiontup or ())
        defaults = compiled.construct_params(_check=False)
        processors = compiled._bind_processors
        columns = getattr(statement, "exported_columns", ())
        return Compiled(
            sql=compiled.string,
            names=names,
            binds=tuple(processors.get(name) for name in names),
            converted=tuple(
                (at, processor)
                for at, column in enumerate(columns)
                if (processor := _result_processor(column.type, dialect))
            ),
            compiled=compiled,
            defaults={
                name: defaults[name]
                for name in names
                if name in compiled.binds and not compiled.binds[name].required
            },
            row=namedtuple("Row", [c.key for c in columns], rename=True),
        )


def _result_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The type's result processor for ``dialect``, as SQLAlchemy applies it."""
    try:
        processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).result_processor(
            dialect, None
        )
    except TypeError:
        # asyncpg's numerics choose by the driver's column type, known only after execution:
        # convert whatever number arrives to what the type promises.
        if not isinstance(type_, sa_types.Numeric | sa_types.Float):
            raise
        kind: Callable[[Any], Any] = _as_decimal if type_.asdecimal else float
        return lambda value: None if value is None else kind(value)
    return processor


def _as_decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class Driver:
    """How to run a statement on one driver's connection."""

    fetch: Fetch
    execute: Execute
    begin: Callable[[Any], Awaitable[None]] | None = None  # start the adapter's transaction


async def _asyncpg_fetch(connection: Any, sql: str, args: list[Any]) -> Rows:
    rows: Rows = await connection.fetch(sql, *args)
    return rows


async def _asyncpg_execute(connection: Any, sql: str, args: list[Any]) -> int:
    status = await connection.execute(sql, *args)
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


async def _asyncpg_begin(adapted: Any) -> None:
    # SQLAlchemy's asyncpg adapter sends BEGIN with the connection's first statement; a
    # statement sent past the adapter must open that transaction itself.
    if adapted._transaction is None and adapted.isolation_level != "autocommit":
        await adapted._start_transaction()


async def _aiosqlite_fetch(connection: Any, sql: str, args: list[Any]) -> Rows:
    return list(await connection.execute_fetchall(sql, args))


async def _aiosqlite_execute(connection: Any, sql: str, args: list[Any]) -> int:
    cursor = await connection.execute(sql, args)
    count = int(cursor.rowcount)
    await cursor.close()
    return count


async def _aiomysql_fetch(connection: Any, sql: str, args: list[Any]) -> Rows:
    async with connection.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


async def _aiomysql_execute(connection: Any, sql: str, args: list[Any]) -> int:
    async with connection.cursor() as cursor:
        await cursor.execute(sql, args)
        return int(cursor.rowcount)


DRIVERS = {
    "asyncpg": Driver(_asyncpg_fetch, _asyncpg_execute, _asyncpg_begin),
    "aiosqlite": Driver(_aiosqlite_fetch, _aiosqlite_execute),
    "aiomysql": Driver(_aiomysql_fetch, _aiomysql_execute),
}
_CACHE = "_archon_statement_cache"


class Runner:
    """Statements of one session run on its driver connection."""

    def __init__(self, session: AsyncSession, dialect: Dialect, driver: Driver) -> None:
        self.session = session
        self.dialect = dialect
        self.driver = driver
        # Kept on the dialect (one per engine): it goes when the engine goes.
        cache = dialect.__dict__.get(_CACHE)
        if cache is None:
            cache = dialect.__dict__[_CACHE] = StatementCache(dialect)
        self.cache: StatementCache = cache
        self.metrics = metrics_of(dialect)  # statements on this path count as SQLAlchemy's do

    async def fetch(
        self,
        statement: Any,
        params: Mapping[str, Any] | None = None,
        *,
        fixed: bool = False,
        named: bool = False,
        on: Callable[[Any], Awaitable[None]] | None = None,
    ) -> Rows | None:
        """The rows of ``statement``, values converted; ``None``: use the session instead.

        ``fixed``: a statement built once and reused, its values all in ``params``. ``named``:
        rows as named tuples (values by column name too, as SQLAlchemy's rows give them).
        ``on``: awaited with the pooled connection first (e.g. to give it codecs).
        """
        prepared = self._prepare(statement, params, fixed)
        if prepared is None:
            return None
        compiled, args = prepared
        rows = await self._run(self.driver.fetch, compiled.sql, args, on)
        converted = compiled.converted
        if converted:
            out: Rows = []
            for row in rows:
                values = list(row)
                for at, convert in converted:
                    values[at] = convert(values[at])
                out.append(values)
            rows = out
        if named:
            make = compiled.row
            return [make(*row) for row in rows]
        return rows

    async def execute(
        self, statement: Any, params: Mapping[str, Any] | None = None, *, fixed: bool = False
    ) -> int | None:
        """Run ``statement``; the rows it matched (``None``: use the session instead)."""
        prepared = self._prepare(statement, params, fixed)
        if prepared is None:
            return None
        compiled, args = prepared
        count: int = await self._run(self.driver.execute, compiled.sql, args)
        return count

    def _prepare(
        self, statement: Any, params: Mapping[str, Any] | None, fixed: bool
    ) -> tuple[Compiled, list[Any]] | None:
        if fixed:
            return self.cache.prepare_fixed(statement, params or {})
        return self.cache.prepare(statement, params)

    async def _run(self, call: Callable[[Any, str, list[Any]], Awaitable[Any]], sql: str,
                   args: list[Any], on: Callable[[Any], Awaitable[None]] | None = None,
                   ) -> Any:  # fmt: skip
        connection, fairy = await held_connection(self.session)
        adapted = fairy.dbapi_connection
        metrics = self.metrics
        try:
            if on is not None:
                await on(fairy)
            if self.driver.begin is not None:
                await self.driver.begin(adapted)
            started = clock()
            try:
                return await call(fairy.driver_connection, sql, args)
            finally:
                if metrics is not None:
                    metrics.observe(clock() - started)
        except Exception as error:
            wrapped = _wrapped(self.dialect, adapted, sql, args, error)
            if wrapped is None:
                raise
            if metrics is not None:
                metrics.failed(wrapped)
            if wrapped.connection_invalidated:
                await connection.invalidate(wrapped)
            raise wrapped from error


async def held_connection(session: AsyncSession) -> tuple[Any, Any]:
    """Who can invalidate the session's connection, and the pooled DBAPI connection: the
    Unit of Work's lease (see ``app.repositories.lease``) unless the session began a
    transaction of its own first, else the session's."""
    lease = Lease.of(session)
    if lease is not None:
        return lease, await lease.fairy()
    connection = await session.connection()
    sync = connection.sync_connection
    # A plain attribute, unless the connection must be re-established (which needs
    # SQLAlchemy's async bridge).
    if sync is not None and not (sync.invalidated or sync.closed):
        return connection, sync.connection
    return connection, await connection.get_raw_connection()


def _wrapped(
    dialect: Dialect, adapted: Any, sql: str, args: list[Any], error: Exception
) -> sa_exc.DBAPIError | None:
    """``error`` as SQLAlchemy's execution would have raised it (``None``: not a driver error)."""
    dbapi = dialect.loaded_dbapi
    translated: Exception = error
    handle = getattr(adapted, "_handle_exception", None)
    if handle is not None and not isinstance(error, dbapi.Error):
        try:
            handle(error)  # the adapter's own translation into its DBAPI's exceptions
        except Exception as adapted_error:
            translated = adapted_error
    if not isinstance(translated, dbapi.Error):
        return None
    invalidated = dialect.is_disconnect(translated, adapted, None)
    wrapped = sa_exc.DBAPIError.instance(
        sql,
        args,
        translated,
        dbapi.Error,
        hide_parameters=True,
        dialect=dialect,
        connection_invalidated=invalidated,
    )
    return wrapped if isinstance(wrapped, sa_exc.DBAPIError) else None


def runner(session: AsyncSession) -> Runner | None:
    """The driver path for ``session``, or ``None`` when it must use SQLAlchemy's."""
    bind = session.get_bind()
    if not bind.get_execution_options().get(DRIVER_STATEMENTS):
        return None
    events = bind.dispatch
    if events.before_cursor_execute or events.after_cursor_execute:
        return None  # someone watches every statement (logging, tracing): SQLAlchemy's path
    dialect = bind.dialect
    driver = DRIVERS.get(dialect.driver)
    if driver is None or dialect.server_version_info is None:  # not connected yet
        return None
    return Runner(session, dialect, driver)


__all__ = ["Compiled", "Runner", "StatementCache", "runner"]
