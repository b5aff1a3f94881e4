"""The Alembic history on every backend: upgrade builds the schema, downgrade removes it.

Each test migrates a database of its own (``fresh``), never the session's shared ``backend``
database, which other suites expect at head.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app import migrations
from app.cli.migrate import app as migrate_cli
from app.config import Settings
from app.domain import metadata
from app.engines import create_engine_for
from app.errors import BackendUnavailableError, InvalidInputError
from tests.support import Backend, execute, fetch_all, fetch_scalar
from tests.support import backends as servers

ARCHON_TABLES = set(metadata.tables)
EMBEDDING_COLUMNS = {f"embedding_{dim}" for dim in (384, 768, 1024, 1536, 3072)}


def fresh_database(
    backend: Backend, request: pytest.FixtureRequest
) -> AbstractAsyncContextManager[Backend]:
    """An empty database on the same server as ``backend``, dropped afterwards."""
    if backend.name == "sqlite":
        return servers.sqlite_backend()
    if backend.name == "mariadb":
        return servers.mariadb_backend()
    if backend.name == "postgres":
        return servers.postgres_backend("postgres", servers.postgres_admin_url())
    admin_url = request.getfixturevalue("pgvector_server")
    return servers.postgres_backend("pgvector", admin_url)


def engine_for(url: str) -> AsyncEngine:
    """An engine configured as the data layer configures it."""
    return create_engine_for(url, Settings(_env_file=None, database_url=url))


@pytest.fixture
async def fresh(backend: Backend, request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    async with fresh_database(backend, request) as database:
        engine = engine_for(database.url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    queries = {
        "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
        "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    }
    return {row[0] for row in await fetch_all(engine, queries[engine.dialect.name])}


async def column_types(engine: AsyncEngine, table: str) -> dict[str, str]:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        rows = await fetch_all(engine, f"SELECT name, type FROM pragma_table_info('{table}')")
    elif dialect == "mysql":
        rows = await fetch_all(
            engine,
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = :table",
            table=table,
        )
    else:
        rows = await fetch_all(
            engine,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped",
            table=table,
        )
    return {name: type_.lower() for name, type_ in rows}


def expected_embedding_type(backend: Backend, dim: int) -> str:
    if backend.dialect == "postgresql":
        return f"vector({dim})" if backend.has_pgvector else "bytea"
    return "longblob" if backend.dialect == "mysql" else "blob"


def new_id(engine: AsyncEngine) -> str:
    # sa.Uuid stores 32 hex digits where the database has no UUID type.
    value = uuid.uuid4()
    return str(value) if engine.dialect.name == "postgresql" else value.hex


# ---------------------------------------------------------------- upgrade / downgrade


async def test_upgrade_head_builds_every_table(backend: Backend, fresh: AsyncEngine) -> None:
    await migrations.upgrade(fresh, "head")

    assert ARCHON_TABLES <= await table_names(fresh)
    assert await fetch_scalar(fresh, "SELECT version_num FROM alembic_version") == migrations.head()
    assert await migrations.current(fresh) == migrations.head()
    for table in ("archon_crawled_pages", "archon_code_examples"):
        types = await column_types(fresh, table)
        for dim in (384, 768, 1024, 1536, 3072):
            assert types[f"embedding_{dim}"] == expected_embedding_type(backend, dim)


async def test_downgrade_base_removes_everything_and_upgrade_works_again(
    backend: Backend, fresh: AsyncEngine
) -> None:
    await migrations.upgrade(fresh)
    await migrations.downgrade(fresh, "base")

    # Alembic keeps its (now empty) version table; everything the history made is gone
    # (SQLite keeps its own sqlite_sequence, made by AUTOINCREMENT, which cannot be dropped).
    assert await table_names(fresh) - {"sqlite_sequence"} == {"alembic_version"}
    assert await migrations.current(fresh) is None
    if backend.dialect == "postgresql":
        types = await fetch_all(
            fresh, "SELECT typname FROM pg_type WHERE typname IN ('task_status', 'task_priority')"
        )
        functions = await fetch_all(
            fresh, "SELECT proname FROM pg_proc WHERE proname = 'update_updated_at_column'"
        )
        assert types == [] and functions == []

    await migrations.upgrade(fresh)
    assert ARCHON_TABLES <= await table_names(fresh)
    assert await migrations.check(fresh) == []


async def test_stamp_records_a_revision_without_running_it(fresh: AsyncEngine) -> None:
    await migrations.stamp(fresh, migrations.BASELINE_REVISION)

    assert await migrations.current(fresh) == migrations.BASELINE_REVISION
    assert not ARCHON_TABLES & await table_names(fresh)


async def test_an_unknown_revision_is_invalid_input(fresh: AsyncEngine) -> None:
    with pytest.raises(InvalidInputError, match="no_such_revision"):
        await migrations.upgrade(fresh, "no_such_revision")


async def test_an_unreachable_database_is_backend_unavailable() -> None:
    engine = engine_for("postgresql+asyncpg://archon:secret@127.0.0.1:1/archon")
    try:
        with pytest.raises(BackendUnavailableError) as raised:
            await migrations.current(engine)
    finally:
        await engine.dispose()
    assert "secret" not in str(raised.value)


# ---------------------------------------------------------------- schema details


async def test_check_finds_no_difference_after_upgrade(fresh: AsyncEngine) -> None:
    await migrations.upgrade(fresh)

    assert await migrations.check(fresh) == []


async def test_check_reports_what_is_missing(fresh: AsyncEngine) -> None:
    assert "missing table archon_tasks" in await migrations.check(fresh)

    await migrations.upgrade(fresh)
    await execute(fresh, "ALTER TABLE archon_prompts DROP COLUMN description")

    differences = await migrations.check(fresh)
    assert any("missing column archon_prompts.description" in line for line in differences)


async def test_check_ignores_the_vector_and_keyword_index_objects(fresh: AsyncEngine) -> None:
    await migrations.upgrade(fresh)
    await execute(fresh, "CREATE TABLE archon_vector_probe (id INTEGER PRIMARY KEY)")
    await execute(fresh, "ALTER TABLE archon_sources ADD COLUMN embedding_512 INTEGER")

    assert await migrations.check(fresh) == []


async def test_server_defaults_fill_rows_written_by_plain_sql(fresh: AsyncEngine) -> None:
    await migrations.upgrade(fresh)
    project, task = new_id(fresh), new_id(fresh)
    await execute(fresh, "INSERT INTO archon_projects (id, title) VALUES (:id, 'p')", id=project)
    await execute(
        fresh,
        # assignee given: MySQL 8 allows no literal default on a TEXT column, so it has none.
        "INSERT INTO archon_tasks (id, project_id, title, assignee) "
        "VALUES (:id, :project, 't', 'User')",
        id=task,
        project=project,
    )

    row = (
        await fetch_all(
            fresh,
            "SELECT status, priority, task_order, archived, created_at FROM archon_tasks",
        )
    )[0]
    assert (row[0], row[1], row[2], bool(row[3])) == ("todo", "medium", 0, False)
    assert row[4] is not None


@pytest.mark.backends("pgvector", "postgres")
async def test_postgres_gets_archons_triggers_search_columns_and_defaults(
    fresh: AsyncEngine,
) -> None:
    await migrations.upgrade(fresh)
    triggers = await fetch_all(
        fresh, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'update_archon_%_updated_at'"
    )
    assert {name for (name,) in triggers} == {
        f"update_archon_{table}_updated_at"
        for table in ("settings", "projects", "tasks", "prompts")
    }

    await execute(fresh, "INSERT INTO archon_projects (title) VALUES ('p')")
    project = await fetch_scalar(fresh, "SELECT id FROM archon_projects WHERE title = 'p'")
    assert project is not None  # gen_random_uuid() filled it
    await execute(fresh, "UPDATE archon_projects SET title = 'q' WHERE id = :id", id=project)
    assert await fetch_scalar(
        fresh, "SELECT updated_at > created_at FROM archon_projects WHERE id = :id", id=project
    )

    await execute(fresh, "INSERT INTO archon_sources (source_id) VALUES ('s1')")
    await execute(
        fresh,
        "INSERT INTO archon_code_examples (url, chunk_number, content, summary, source_id) "
        "VALUES ('u', 0, 'def limiter(): pass', 'Rate limiting helper', 's1')",
    )
    found = await fetch_scalar(
        fresh,
        "SELECT count(*) FROM archon_code_examples "
        "WHERE content_search_vector @@ plainto_tsquery('english', 'rate limiting')",
    )
    assert found == 1
    assert await fetch_scalar(fresh, "SELECT metadata::text FROM archon_code_examples") == "{}"


# ---------------------------------------------------------------- command line


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(migrate_cli, list(args))
    return result.exit_code, result.output


@pytest.mark.backends("sqlite", "mariadb")
async def test_cli_upgrade_check_and_downgrade(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    async with fresh_database(backend, request) as database:
        url = database.url
        # The command runs its own event loop (asyncio.run): give it a thread of its own.
        code, output = await asyncio.to_thread(invoke, "upgrade", "--url", url)
        assert code == 0, output
        assert migrations.head() in output

        assert (await asyncio.to_thread(invoke, "check", "--url", url))[0] == 0
        code, output = await asyncio.to_thread(invoke, "current", "--url", url)
        assert code == 0 and "up to date" in " ".join(output.split())

        engine = engine_for(url)
        try:
            await execute(engine, "ALTER TABLE archon_prompts DROP COLUMN description")
        finally:
            await engine.dispose()
        code, output = await asyncio.to_thread(invoke, "check", "--url", url)
        assert code == 1 and "archon_prompts.description" in output

        code, output = await asyncio.to_thread(invoke, "downgrade", "base", "--url", url)
        assert code == 0 and "(base)" in output


async def test_cli_errors_are_clear_and_hide_passwords() -> None:
    url = "postgresql://archon:s3cret@127.0.0.1:1/archon"
    code, output = await asyncio.to_thread(invoke, "current", "--url", url)

    assert code == 2
    assert "error:" in output and "Traceback" not in output
    assert "s3cret" not in output

    code, output = await asyncio.to_thread(invoke, "upgrade", "nope", "--url", "sqlite://")
    assert code == 2 and "nope" in output
