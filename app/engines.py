"""Engine construction per dialect: pooling, SQLite pragmas and locking, pooler-safe asyncpg."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from app import failover, json_numbers
from app.config import DatabaseType, Settings, mask_url
from app.driver_logs import hide_driver_parameters
from app.errors import ConfigurationError
from app.failover import primary_readers_url
from app.filter_eval import json_contains
from app.metrics.counters import instrument
from app.urls import url_hosts

log = logging.getLogger("app.sql")
AUTOCOMMIT = "archon_autocommit"  # execution option marking engines of autocommit readers
# Execution option: statements may run on the driver connection (app.repositories.driver).
DRIVER_STATEMENTS = "archon_driver_statements"
# The HNSW candidate list PostgreSQL connections start with, and the execution option saying so:
# a nearest-rows query whose ef_search is this one needs no settings of its own.
DEFAULT_EF_SEARCH = 64
HNSW_EF_SEARCH = "archon_hnsw_ef_search"
# Execution option marking engines that reach PostgreSQL through a transaction pooler.
TRANSACTION_POOLER = "archon_transaction_pooler"


def _pooler_statement_name() -> str:
    # Behind a transaction pooler a prepared statement may reach another server connection:
    # names must never repeat across clients.
    return f"__asyncpg_{uuid4().hex}__"


def create_engine_for(
    url: str, settings: Settings, *, read_only: bool = False, role: str = "primary"
) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url`` configured for its dialect and the settings; ``role``
    (``primary`` or ``replica``) names the server in connection errors."""
    backend = make_url(url).get_backend_name()
    if backend == "postgresql" and read_only:
        url = primary_readers_url(url)
    # Pre-ping is off by default: it costs a round trip per checkout. Without it a connection the
    # server dropped fails its first statement; SQLAlchemy then invalidates it and every older
    # pooled connection, the caller gets BackendUnavailableError, and the next Unit of Work
    # connects afresh. DATABASE_POOL_PRE_PING=true trades the round trip for never seeing that.
    # hide_parameters: SQLAlchemy's own log lines and errors never show bound values, which may
    # be settings' plain values.
    kwargs: dict[str, Any] = {
        "pool_pre_ping": settings.database_pool_pre_ping,
        "hide_parameters": True,
        "json_serializer": json_numbers.dumps,
    }
    hide_driver_parameters()
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": settings.database_pool_timeout}
    else:
        kwargs.update(
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout,
            pool_recycle=settings.database_pool_recycle,
        )
    if backend == "postgresql" and settings.database_type is DatabaseType.SUPABASE:
        kwargs.setdefault("connect_args", {}).update(
            statement_cache_size=0, prepared_statement_name_func=_pooler_statement_name
        )
        url = str(
            make_url(url)
            .update_query_dict({"prepared_statement_cache_size": "0"})
            .render_as_string(hide_password=False)
        )
    pooled = settings.database_type is DatabaseType.SUPABASE
    if backend in ("postgresql", "mysql"):
        bounded = bounded_connect(backend, url, settings.database_connect_timeout, role)
        kwargs.setdefault("connect_args", {})["async_creator_fn"] = bounded
    if backend == "postgresql" and not pooled:
        _hnsw_defaults(kwargs)
    if backend == "postgresql" and settings.database_statement_timeout is not None:
        _postgresql_statement_timeout(kwargs, settings.database_statement_timeout, pooled)
    if backend == "postgresql" and read_only and not pooled:
        _read_only_postgresql(kwargs)
    if backend in ("sqlite", "mysql") and read_only:
        # No BEGIN/ROLLBACK: each read is its own transaction (on SQLite every call to the
        # driver's thread is a hop); an explicit isolation level still gets a transaction.
        _autocommit(kwargs)
    if pooled:
        kwargs.setdefault("execution_options", {})[TRANSACTION_POOLER] = True
    else:
        # Hot reads may run on the driver connection (app.repositories.driver); behind a
        # transaction pooler statements keep SQLAlchemy's pooler-safe preparation.
        kwargs.setdefault("execution_options", {})[DRIVER_STATEMENTS] = True
    engine = create_async_engine(url, **kwargs)
    if backend == "sqlite":
        _configure_sqlite(engine, read_only=read_only)
    if backend == "mysql" and read_only:
        _configure_mysql_reader(engine)
    if backend in ("sqlite", "mysql"):
        _skip_needless_rollbacks(engine)
    if backend == "postgresql":
        failover.drop_closed_connections(engine)
        if not read_only:
            failover.reconnect_when_read_only(engine)
    if backend == "mysql" and settings.database_statement_timeout is not None:
        _mysql_statement_timeout(engine, settings.database_statement_timeout)
    if backend == "sqlite" and settings.database_statement_timeout is not None:
        _sqlite_statement_timeout(engine, settings.database_statement_timeout)
    instrument(engine, settings.slow_query_threshold_ms)  # layer.stats(): counters only
    if settings.enable_query_logging:
        _install_query_logging(engine, settings.slow_query_threshold_ms)
    log.debug("engine created for %s", mask_url(url))
    return engine


def bounded_connect(
    backend: str, url: str, timeout: float, role: str = "primary"
) -> Callable[..., Any]:
    """The driver's connect, given up on after ``timeout`` seconds, handshake included; its
    failures name the server (``the primary 10.0.0.5:5432``).

    asyncpg's own timeout and aiomysql's ``connect_timeout`` bound only part of the way: a
    server that accepts the connection and never answers kept aiomysql waiting for ever.
    """
    where = f"the {role} {', '.join(url_hosts(url))}"
    not_matched: type[Exception] = ConfigurationError  # never raised by aiomysql's connect
    if backend == "postgresql":
        import asyncpg

        connect: Callable[..., Awaitable[Any]] = asyncpg.connect
        not_matched = asyncpg.TargetServerAttributeNotMatched
    else:
        import aiomysql

        connect = aiomysql.connect

    async def bounded(*args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.wait_for(connect(*args, **kwargs), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no answer from {where} within {timeout:g} s (DATABASE_CONNECT_TIMEOUT)"
            ) from None
        except not_matched as exc:  # every server answered; none is the kind asked for
            raise ConnectionError(f"{where}: no server accepts writes now ({exc})") from None
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {where} ({exc})") from None
        except TypeError as exc:  # an option of the URL's query the driver does not take
            raise ConfigurationError(
                f"the {backend} driver refused an option of the database URL's query ({exc}): "
                "remove it; connection and statement limits are DATABASE_CONNECT_TIMEOUT and "
                "DATABASE_STATEMENT_TIMEOUT"
            ) from None

    return bounded


def _postgresql_statement_timeout(kwargs: dict[str, Any], seconds: float, pooled: bool) -> None:
    """The server cancels a statement after ``seconds`` (SQLSTATE 57014). Behind a transaction
    pooler, which refuses start-up parameters, the driver cancels it instead."""
    if pooled:
        kwargs.setdefault("connect_args", {})["command_timeout"] = seconds
    else:
        _server_settings(kwargs)["statement_timeout"] = str(max(1, round(seconds * 1000)))


def _mysql_statement_timeout(engine: AsyncEngine, seconds: float) -> None:
    """Each new connection gets the server's statement limit: MariaDB's ``max_statement_time``
    (seconds, any statement), MySQL's ``max_execution_time`` (milliseconds, SELECTs)."""

    @event.listens_for(engine.sync_engine, "connect")
    def limit(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT VERSION()")
            mariadb = "mariadb" in str(cursor.fetchone()[0]).lower()
            if mariadb:
                cursor.execute(f"SET SESSION max_statement_time = {float(seconds)!r}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {max(1, round(seconds * 1000))}")
        finally:
            cursor.close()


def _sqlite_statement_timeout(engine: AsyncEngine, seconds: float) -> None:
    """SQLite has no server to cancel a statement: a progress handler interrupts one that has
    run past ``seconds`` (``sqlite3.OperationalError: interrupted``). Every call aiosqlite
    hands its worker thread is timed from when it starts."""

    @event.listens_for(engine.sync_engine, "connect")
    def limit(dbapi_connection: Any, _record: Any) -> None:
        connection = dbapi_connection._connection  # aiosqlite's
        started: list[float | None] = [None]
        submit = connection._execute

        async def timed(fn: Any, *args: Any, **kwargs: Any) -> Any:
            started[0] = time.monotonic()
            try:
                return await submit(fn, *args, **kwargs)
            finally:
                started[0] = None

        def interrupt() -> int:
            begun = started[0]
            return int(begun is not None and time.monotonic() - begun > seconds)

        connection._execute = timed
        await_only(connection.set_progress_handler(interrupt, 10_000))


def _read_only_postgresql(kwargs: dict[str, Any]) -> None:
    """Readers without BEGIN/ROLLBACK round trips: each statement is its own transaction.

    The server refuses writes on these connections (``default_transaction_read_only``, sent at
    connection start-up, so it costs no round trip). Not behind a transaction pooler, which
    rejects unknown start-up parameters.
    """
    _server_settings(kwargs)["default_transaction_read_only"] = "on"
    _autocommit(kwargs)


def _hnsw_defaults(kwargs: dict[str, Any]) -> None:
    """pgvector's search setting, given at connection start-up (no round trip; not behind a
    transaction pooler, which rejects unknown start-up parameters). Before pgvector is loaded
    it waits as a placeholder; ``RESET ALL`` returns to it."""
    _server_settings(kwargs)["hnsw.ef_search"] = str(DEFAULT_EF_SEARCH)
    kwargs.setdefault("execution_options", {})[HNSW_EF_SEARCH] = DEFAULT_EF_SEARCH


def _server_settings(kwargs: dict[str, Any]) -> dict[str, str]:
    connect_args = kwargs.setdefault("connect_args", {})
    settings: dict[str, str] = connect_args.setdefault("server_settings", {})
    return settings


def _autocommit(kwargs: dict[str, Any]) -> None:
    # The connections' own level (set once per connection, never reset on check-in), and a mark
    # the Unit of Work reads.
    kwargs["isolation_level"] = "AUTOCOMMIT"
    kwargs.setdefault("execution_options", {})[AUTOCOMMIT] = True
    # Nothing to roll back at check-in: a Unit of Work that asked for an isolation level (and so
    # a transaction) has ended it when it closed.
    kwargs["pool_reset_on_return"] = None


def behind_transaction_pooler(engine: AsyncEngine) -> bool:
    """Whether ``engine`` reaches its server through a transaction pooler (supabase mode).

    Such a pooler may hand every transaction, and every statement outside one, another server
    connection: asyncpg prepares a statement and then executes it in two round trips, so both
    must be inside one transaction, never in autocommit.
    """
    return bool(engine.get_execution_options().get(TRANSACTION_POOLER))


def is_autocommit(engine: AsyncEngine) -> bool:
    """Whether ``engine``'s connections run each statement in its own transaction."""
    return bool(engine.get_execution_options().get(AUTOCOMMIT))


def _configure_sqlite(engine: AsyncEngine, *, read_only: bool) -> None:
    """WAL, enforced foreign keys, and BEGIN IMMEDIATE for writers.

    SQLite allows one writer at a time; a deferred transaction that reads and then writes fails
    with SQLITE_BUSY when another writer got there first. Taking the write lock at BEGIN makes
    writers queue behind ``busy_timeout`` instead, so concurrent Units of Work never lose updates.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA case_sensitive_like=ON")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()
        dbapi_connection.create_function(
            "archon_json_contains", 2, _sqlite_json_contains, deterministic=True
        )

    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Readers run autocommit unless a Unit of Work asked for an isolation level.
        level = connection.get_execution_options().get("isolation_level")
        if not read_only or level not in (None, "AUTOCOMMIT"):
            connection.exec_driver_sql(begin)


def _configure_mysql_reader(engine: AsyncEngine) -> None:
    """Read-only autocommit connections: the server refuses writes, no ROLLBACK per reader.

    An isolation level asked for by a Unit of Work is a session setting on MySQL; SQLAlchemy
    turns autocommit back on at check-in but leaves the level, so it is restored here too.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.close()

    @event.listens_for(engine.sync_engine, "set_connection_execution_options")
    def _on_options(connection: Any, options: dict[str, Any]) -> None:
        if "isolation_level" in options:
            connection.info[_ISOLATION_CHANGED] = True

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        default = engine.dialect.default_isolation_level
        if dbapi_connection is None or not record.info.pop(_ISOLATION_CHANGED, False):
            return
        if default and default != "AUTOCOMMIT":
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {default}")
            cursor.close()


_ISOLATION_CHANGED = "archon_isolation_changed"


def _skip_needless_rollbacks(engine: AsyncEngine) -> None:
    """Send a rollback only when the driver reports an open transaction.

    SQLAlchemy rolls back twice when a session closes (its transaction, then the pool's reset
    on check-in) and leaves it to the DBAPI to ignore rollbacks outside a transaction. asyncpg's
    adapter does; aiosqlite still hops to its thread (``sqlite3`` then does nothing) and PyMySQL
    sends ``ROLLBACK`` to the server. The checks used here are the drivers' own: ``sqlite3``'s
    ``in_transaction``, and on MySQL the server's status flags (autocommit on and no transaction
    in progress); a connection out of autocommit always gets its rollback.
    """
    dialect = engine.sync_engine.dialect
    rollback = dialect.do_rollback
    is_sqlite = dialect.name == "sqlite"

    def do_rollback(dbapi_connection: Any) -> None:
        driver: Any = getattr(dbapi_connection, "driver_connection", None)
        try:
            if is_sqlite:
                idle = not driver.in_transaction
            else:
                idle = driver.get_autocommit() and not driver.get_transaction_status()
        except Exception:  # closed or unknown: let the dialect deal with it
            idle = False
        if not idle:
            rollback(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _sqlite_json_contains(document: str | None, wanted: str | None) -> int | None:
    """PostgreSQL's ``jsonb @> jsonb`` for SQLite, which has no JSON containment of its own."""
    if document is None or wanted is None:
        return None
    return int(json_contains(json.loads(document), json.loads(wanted)))


def _install_query_logging(engine: AsyncEngine, slow_ms: float) -> None:
    """Log each statement (never its parameters, which may hold secrets) and flag slow ones."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _start(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        conn.info.setdefault("query_start", []).append(time.perf_counter())

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _end(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        elapsed_ms = (time.perf_counter() - conn.info["query_start"].pop()) * 1000
        level = logging.WARNING if elapsed_ms >= slow_ms else logging.INFO
        log.log(level, "%.1f ms %s", elapsed_ms, " ".join(statement.split())[:500])
