"""Revision 0006 on every backend: Archon's default settings and upgrade records, seeded once.

Each test migrates a database of its own (``fresh``); outcomes are read back with plain SQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrations
from app.archon_defaults import ARCHON_SETTINGS, archon_migration_keys
from tests.support import execute, fetch_all, fetch_scalar
from tests.test_migrations import fresh, table_names  # noqa: F401  (a fixture)

BEFORE = "0005_archon_setup"
WORK_ORDER_TABLES = {
    "archon_configured_repositories",
    "archon_agent_work_orders",
    "archon_agent_work_order_steps",
}


def key(engine: AsyncEngine) -> str:
    """The ``key`` column, quoted (a reserved word on MySQL/MariaDB)."""
    return engine.dialect.identifier_preparer.quote("key")


async def settings(engine: AsyncEngine) -> dict[str, tuple[object, ...]]:
    rows = await fetch_all(
        engine,
        f"SELECT {key(engine)}, value, encrypted_value, is_encrypted, category, description "
        "FROM archon_settings",
    )
    return {row[0]: tuple(row[1:]) for row in rows}


async def recorded_upgrades(engine: AsyncEngine) -> list[tuple[str, str]]:
    rows = await fetch_all(engine, "SELECT version, migration_name FROM archon_migrations")
    return sorted((version, name) for version, name in rows)


async def test_upgrade_seeds_archons_settings_and_upgrade_records(fresh: AsyncEngine) -> None:  # noqa: F811
    await migrations.upgrade(fresh, "head")

    stored = await settings(fresh)
    assert set(stored) == {s.key for s in ARCHON_SETTINGS}
    for default in ARCHON_SETTINGS:
        value, encrypted_value, is_encrypted, category, description = stored[default.key]
        assert (value, encrypted_value) == (default.value, None), default.key
        assert bool(is_encrypted) is default.encrypted and category == default.category
        assert description == default.description and description
    assert stored["MODEL_CHOICE"][0] == "gpt-4.1-nano"
    assert stored["OPENAI_API_KEY"][3] == "api_keys" and stored["OPENAI_API_KEY"][2]
    assert await recorded_upgrades(fresh) == sorted(archon_migration_keys())
    assert len(archon_migration_keys()) == 11
    # Archon's prompts are its own writing: the table is left for Archon to fill.
    assert await fetch_scalar(fresh, "SELECT COUNT(*) FROM archon_prompts") == 0
    assert WORK_ORDER_TABLES <= await table_names(fresh)


async def test_running_0006_again_keeps_what_users_set(fresh: AsyncEngine) -> None:  # noqa: F811
    await migrations.upgrade(fresh, "head")
    k = key(fresh)
    await execute(
        fresh, f"UPDATE archon_settings SET value = 'my-model' WHERE {k} = 'MODEL_CHOICE'"
    )
    await execute(
        fresh, f"UPDATE archon_settings SET description = 'mine' WHERE {k} = 'USE_RERANKING'"
    )
    await execute(fresh, f"DELETE FROM archon_settings WHERE {k} = 'HOST'")
    await execute(fresh, "DELETE FROM archon_migrations WHERE migration_name LIKE '007%'")

    await migrations.downgrade(fresh, BEFORE)
    assert not WORK_ORDER_TABLES & await table_names(fresh)
    # The seeded rows stay behind a downgrade: they are data a user may rely on.
    assert len(await settings(fresh)) == len(ARCHON_SETTINGS) - 1
    await migrations.upgrade(fresh, "head")

    stored = await settings(fresh)
    assert len(stored) == len(ARCHON_SETTINGS)  # nothing twice
    assert stored["MODEL_CHOICE"][0] == "my-model"
    assert stored["USE_RERANKING"][4] == "mine"
    assert stored["HOST"][0] == "localhost"  # a missing default comes back
    assert await recorded_upgrades(fresh) == sorted(archon_migration_keys())
    assert WORK_ORDER_TABLES <= await table_names(fresh)
    assert await migrations.check(fresh) == []


async def test_existing_work_order_tables_and_rows_are_kept(fresh: AsyncEngine) -> None:  # noqa: F811
    """A database that already has the tables (Archon's own scripts made them) keeps them."""
    await migrations.upgrade(fresh, "0006_archon_data")  # later revisions run after it again
    await execute(
        fresh,
        "INSERT INTO archon_agent_work_orders "
        "(agent_work_order_id, repository_url, sandbox_identifier, status) "
        "VALUES ('wo-kept', 'https://github.com/o/r', 'sandbox-1', 'running')",
    )
    await migrations.stamp(fresh, BEFORE)  # as if 0006 had never run
    await migrations.upgrade(fresh, "head")

    rows = await fetch_all(
        fresh, "SELECT agent_work_order_id, status FROM archon_agent_work_orders"
    )
    assert [tuple(r) for r in rows] == [("wo-kept", "running")]
    assert len(await settings(fresh)) == len(ARCHON_SETTINGS)
    assert await migrations.current(fresh) == migrations.head()
    # Archon's status CHECK holds in the database itself, on every backend.
    with pytest.raises(DBAPIError, match="(?i)check|constraint"):
        await execute(
            fresh,
            "INSERT INTO archon_agent_work_orders "
            "(agent_work_order_id, repository_url, sandbox_identifier, status) "
            "VALUES ('wo-bad', 'https://github.com/o/r', 'sandbox-1', 'paused')",
        )


@pytest.mark.backends("postgres", "pgvector")
async def test_postgres_gets_archons_triggers_security_and_url_check(
    fresh: AsyncEngine,  # noqa: F811
) -> None:
    await migrations.upgrade(fresh, "head")
    secured = await fetch_all(
        fresh,
        "SELECT relname FROM pg_class WHERE relrowsecurity AND relname LIKE 'archon_%'",
    )
    assert WORK_ORDER_TABLES <= {r[0] for r in secured}
    policies = await fetch_all(
        fresh,
        "SELECT tablename, policyname FROM pg_policies WHERE tablename = ANY(:tables)",
        tables=sorted(WORK_ORDER_TABLES),
    )
    # Archon's two policies per table (0005's helper): service role, authenticated read/write.
    assert sorted(tuple(r) for r in policies) == sorted(
        (table, f"{name} to {table}"[:63])
        for table in WORK_ORDER_TABLES
        for name in (
            "Allow service role full access",
            "Allow authenticated users to read and update",
        )
    )
    triggers = await fetch_all(
        fresh,
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'update_%'",
    )
    assert {
        "update_configured_repositories_updated_at",
        "update_agent_work_orders_updated_at",
    } <= {r[0] for r in triggers}
    with pytest.raises(DBAPIError, match="valid_repository_url"):
        await execute(
            fresh,
            "INSERT INTO archon_configured_repositories (repository_url) "
            "VALUES ('https://gitlab.com/o/r')",
        )
