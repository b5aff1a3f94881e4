"""Alembic environment: one async history for PostgreSQL, MySQL/MariaDB and SQLite.

Where the database comes from, first match wins:
1. ``config.attributes["connection"]``: a synchronous ``Connection`` handed in by
   ``app.migrations`` from inside ``AsyncConnection.run_sync``; the caller owns its transaction;
2. ``alembic -x url=...`` on the command line;
3. ``sqlalchemy.url`` set on the ``Config`` in code (left empty in ``alembic.ini``);
4. ``DATABASE_URL`` (and the other settings) read by ``app.config.Settings``.
"""

from __future__ import annotations

import asyncio
import logging
from logging.config import fileConfig
from typing import Any

from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from alembic import context
from app.config import Settings, mask_url, to_async_url
from app.domain import metadata
from app.migrations.autogen import include_name, include_object

config = context.config
target_metadata = metadata
log = logging.getLogger("alembic.env")

# Programmatic callers keep their own logging setup; only the `alembic` command reads the ini's.
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url") or Settings().database_url
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set DATABASE_URL")
    return to_async_url(url)


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_object=include_object,
        include_name=include_name,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations (``alembic upgrade --sql``) without connecting."""
    url = _database_url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on a synchronous connection (from ``run_sync``)."""
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Open a short-lived async engine on the configured URL and migrate through it."""
    url = _database_url()
    log.info("migrating %s", mask_url(url))
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Migrate through the caller's connection, or one of our own."""
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(run_async_migrations())
    elif isinstance(connection, AsyncConnection):
        raise TypeError(
            "config.attributes['connection'] must be a synchronous Connection: "
            "call alembic from inside `await async_connection.run_sync(...)`"
        )
    else:
        do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
