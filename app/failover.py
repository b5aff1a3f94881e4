"""Surviving a PostgreSQL failover: pooled connections to a server that went away or became a
standby are dropped, so the next connection goes to whichever server accepts writes now.

``DATABASE_URL`` may name several servers (``app.urls.multi_host_url``); asyncpg then tries
them in turn and keeps the first that matches ``target_session_attrs`` (``read-write`` by
default). What stays to be done is not reusing connections made before the failover.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine

# SQLSTATE of a write refused by a server that is (now) a standby.
READ_ONLY_TRANSACTION = "25006"


def primary_readers_url(url: str) -> str:
    """The URL the primary's read-only connections use: ``target_session_attrs=primary``
    where it said ``read-write``, which those connections (``default_transaction_read_only``)
    would never match."""
    parsed = make_url(url)
    if parsed.query.get("target_session_attrs") != "read-write":
        return url
    primary = parsed.update_query_dict({"target_session_attrs": "primary"})
    return primary.render_as_string(hide_password=False)


def drop_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection whose server has closed it (a stop, a restart, a failover) is
    replaced at checkout instead of failing the Unit of Work's first statement.

    asyncpg notices the closed socket by itself; asking it costs no round trip, unlike
    ``pool_pre_ping``.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the server closed this pooled connection")


def reconnect_when_read_only(engine: AsyncEngine) -> None:
    """A write refused as read-only (SQLSTATE 25006) on a writer's connection means its server
    is a standby now: SQLAlchemy treats it as a disconnect, drops the pool's connections, and
    the error becomes ``RetryableError`` (``app.errors.classify``); the next connection goes
    to the server that accepts writes."""
    dialect = engine.sync_engine.dialect
    is_disconnect = dialect.is_disconnect

    def demoted_or_disconnected(error: Any, connection: Any, cursor: Any) -> bool:
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        return state == READ_ONLY_TRANSACTION or is_disconnect(error, connection, cursor)

    dialect.is_disconnect = demoted_or_disconnected  # type: ignore[method-assign,assignment]
