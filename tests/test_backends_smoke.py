"""The test fixtures themselves: every backend answers, is what it claims, and cleans up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.bootstrap import DataLayer
from app.domain import Setting
from tests.support import (
    Backend,
    Databases,
    LayerFactory,
    Sql,
    TableReset,
    execute,
    fetch_all,
    fetch_scalar,
)
from tests.support.backends import asyncpg_connect_args


@pytest.fixture
async def engine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(backend.url, poolclass=NullPool)
    yield engine
    await engine.dispose()


async def test_backend_answers_select_1(backend: Backend, engine: AsyncEngine) -> None:
    assert await fetch_scalar(engine, "SELECT 1") == 1
    assert engine.dialect.name == backend.dialect


@pytest.mark.backends("postgres", "mariadb", "pgvector")
async def test_server_backends_get_a_database_of_their_own(
    backend: Backend, engine: AsyncEngine
) -> None:
    query = "SELECT current_database()" if backend.dialect == "postgresql" else "SELECT DATABASE()"
    name = await fetch_scalar(engine, query)
    assert name == make_url(backend.url).database
    assert name.startswith("archon_test_")


@pytest.mark.backends("pgvector", "postgres")
async def test_pgvector_is_available_only_on_the_pgvector_backend(
    backend: Backend, engine: AsyncEngine
) -> None:
    found = await fetch_scalar(
        engine, "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
    )
    assert bool(found) is backend.has_pgvector is (backend.name == "pgvector")


@pytest.mark.backends("pgvector")
async def test_pgvector_user_may_create_extensions(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:  # rolled back on exit: the database stays empty
        await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        dims = await conn.exec_driver_sql("SELECT vector_dims('[1,2,3]'::vector)")
        assert dims.scalar() == 3


@pytest.mark.backends("mariadb")
async def test_mariadb_columns_compare_strings_exactly(engine: AsyncEngine) -> None:
    # Columns take the database's collation (literals would take the connection's).
    async with engine.connect() as conn:
        await conn.exec_driver_sql("CREATE TEMPORARY TABLE smoke (word VARCHAR(10))")
        await conn.exec_driver_sql("INSERT INTO smoke VALUES ('abc')")
        found = await conn.execute(
            text(
                "SELECT (SELECT count(*) FROM smoke WHERE word = 'ABC'),"
                " (SELECT count(*) FROM smoke WHERE word LIKE 'A%'),"
                " (SELECT count(*) FROM smoke WHERE word = 'abc')"
            )
        )
        assert tuple(found.one()) == (0, 0, 1)


async def test_pgbouncer_runs_in_transaction_mode(pgbouncer: str) -> None:
    # Session mode would pin each client to its own server connection. In transaction mode the
    # connection goes back to the pool after every transaction: another client reuses it, and
    # the first client is handed a different one while it is taken.
    args = asyncpg_connect_args(make_url(pgbouncer))
    first = await asyncpg.connect(**args, statement_cache_size=0)
    second = await asyncpg.connect(**args, statement_cache_size=0)
    try:
        before = await first.fetchval("SELECT pg_backend_pid()")
        async with second.transaction():
            held = await second.fetchval("SELECT pg_backend_pid()")
            meanwhile = await first.fetchval("SELECT pg_backend_pid()")
        assert held == before
        assert meanwhile != before
    finally:
        await first.close()
        await second.close()


async def test_table_reset_empties_archon_tables_only(
    backend: Backend, engine: AsyncEngine
) -> None:
    # Captured first, so whatever the database holds now (migration seeds) is put back after.
    reset = await TableReset.capture(backend.url)
    # The first table stands in for one a migration adds outside the entities.
    added, foreign = "archon_zz_smoke", "zz_smoke_not_archon"
    for name in (added, foreign):
        await execute(engine, f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, note VARCHAR(20))")
        await execute(engine, f"INSERT INTO {name} (id, note) VALUES (1, 'x')")
    try:
        await reset.run()
        assert await fetch_scalar(engine, f"SELECT count(*) FROM {added}") == 0
        assert await fetch_scalar(engine, f"SELECT count(*) FROM {foreign}") == 1
    finally:
        for name in (added, foreign):
            await execute(engine, f"DROP TABLE {name}")


@pytest.mark.backends("sqlite")
async def test_table_reset_keeps_sqlite_fts5_indexes_sound(
    backend: Backend, engine: AsyncEngine
) -> None:
    reset = await TableReset.capture(backend.url)
    statements = [
        "CREATE TABLE archon_zz_docs (id INTEGER PRIMARY KEY, body TEXT)",
        "CREATE VIRTUAL TABLE archon_zz_docs_fts USING fts5(body, content='archon_zz_docs',"
        " content_rowid='id')",
        "CREATE TRIGGER archon_zz_docs_ad AFTER DELETE ON archon_zz_docs BEGIN INSERT INTO"
        " archon_zz_docs_fts(archon_zz_docs_fts, rowid, body) VALUES ('delete', old.id, old.body);"
        " END",
        "CREATE VIRTUAL TABLE archon_zz_notes_fts USING fts5(body)",
        "INSERT INTO archon_zz_docs (id, body) VALUES (1, 'rate limit')",
        "INSERT INTO archon_zz_docs_fts (rowid, body) VALUES (1, 'rate limit')",
        "INSERT INTO archon_zz_notes_fts (body) VALUES ('rate limit')",
    ]
    for statement in statements:
        await execute(engine, statement)
    try:
        await reset.run()
        for fts in ("archon_zz_docs_fts", "archon_zz_notes_fts"):
            await execute(engine, f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
            matches = f"SELECT count(*) FROM {fts} WHERE {fts} MATCH 'rate'"
            assert await fetch_scalar(engine, matches) == 0
    finally:
        for table in ("archon_zz_notes_fts", "archon_zz_docs_fts", "archon_zz_docs"):
            await execute(engine, f"DROP TABLE {table}")


async def test_table_reset_puts_seeded_rows_back(backend: Backend, engine: AsyncEngine) -> None:
    seeded = "archon_zz_seeded"
    await execute(engine, f"CREATE TABLE {seeded} (id INTEGER PRIMARY KEY, note VARCHAR(20))")
    try:
        await execute(engine, f"INSERT INTO {seeded} (id, note) VALUES (1, 'seed')")
        reset = await TableReset.capture(backend.url)
        await execute(engine, f"INSERT INTO {seeded} (id, note) VALUES (2, 'test')")
        await reset.run()
        rows = await fetch_all(engine, f"SELECT id, note FROM {seeded}")
        assert [tuple(row) for row in rows] == [(1, "seed")]
    finally:
        await execute(engine, f"DROP TABLE {seeded}")


async def test_layers_get_a_migrated_database_emptied_after_use(
    backend: Backend, databases: Databases
) -> None:
    setting = Setting.__table__
    factory = LayerFactory(databases, backend.url)
    layer = await factory()
    assert layer.dialect_name == backend.dialect
    assert await fetch_scalar(layer, "SELECT count(*) FROM alembic_version") == 1
    before = await fetch_scalar(layer, "SELECT count(*) FROM archon_settings")
    try:
        async with layer.engine.begin() as conn:
            await conn.execute(insert(setting).values(id=uuid.uuid4(), key="smoke", value="x"))
        assert await fetch_scalar(layer, "SELECT count(*) FROM archon_settings") == before + 1
    finally:
        await factory.aclose()

    probe = create_async_engine(backend.url, poolclass=NullPool)
    try:
        assert await fetch_scalar(probe, "SELECT count(*) FROM archon_settings") == before
    finally:
        await probe.dispose()


async def test_layer_and_sql_fixtures_see_the_same_empty_tables(layer: DataLayer, sql: Sql) -> None:
    assert sql.engine is layer.engine
    assert await sql.scalar("SELECT count(*) FROM archon_sources") == 0
    assert await sql.execute("DELETE FROM archon_tasks WHERE 1 = 0") == 0


async def test_pooled_layers_reach_the_pgvector_database(
    make_pooled_layer: LayerFactory, pgbouncer: str, pgvector_backend: Backend
) -> None:
    layer = await make_pooled_layer()
    assert layer.settings.database_url == pgbouncer
    database = await fetch_scalar(layer, "SELECT current_database()")
    assert database == make_url(pgvector_backend.url).database
    assert await fetch_scalar(layer, "SELECT count(*) FROM archon_sources") == 0
