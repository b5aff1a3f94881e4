"""Revision 0005: Archon's row-level security, as Supabase's roles see it, and its undoing.

Every check runs as one of Supabase's roles (``SET LOCAL ROLE``) in a transaction that is rolled
back, against rows written by the table owner (the layer's own connection). The Supabase roles
hold Supabase's default grants on the tables, so a denial comes from row-level security.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrations
from app.bootstrap import DataLayer
from app.config import Settings
from app.engines import create_engine_for
from tests.support import Backend, execute, fetch_all, fetch_scalar
from tests.support import backends as servers

pytestmark = pytest.mark.backends("pgvector", "postgres")

KNOWLEDGE = (
    "archon_sources",
    "archon_crawled_pages",
    "archon_code_examples",
    "archon_page_metadata",
)
# What Archon keeps from anon, and the layer's own tables.
PRIVATE = (
    "archon_settings",
    "archon_projects",
    "archon_tasks",
    "archon_project_sources",
    "archon_document_versions",
    "archon_prompts",
    "archon_migrations",
    "archon_configured_repositories",
    "archon_agent_work_orders",
    "archon_agent_work_order_steps",
    "archon_audit_log",
    "archon_vector_outbox",
    "archon_vector_versions",
    "archon_database_identity",
    "alembic_version",
)
AUTHENTICATED_WRITES = (
    "archon_settings",
    "archon_projects",
    "archon_tasks",
    "archon_project_sources",
    "archon_page_metadata",
)
AUTHENTICATED_HIDDEN = ("archon_vector_outbox", "alembic_version", "archon_audit_log")
SEED = """
INSERT INTO archon_sources (source_id, title) VALUES ('s1', 'Docs');
INSERT INTO archon_page_metadata (id, source_id, url, full_content, word_count, char_count)
    VALUES ('00000000-0000-0000-0000-0000000000a1', 's1', 'https://d/1', 'page', 1, 4);
INSERT INTO archon_crawled_pages (url, chunk_number, content, source_id)
    VALUES ('https://d/1', 0, 'chunk', 's1');
INSERT INTO archon_code_examples (url, chunk_number, content, summary, source_id)
    VALUES ('https://d/1', 0, 'x = 1', 'assign', 's1');
INSERT INTO archon_projects (id, title) VALUES ('00000000-0000-0000-0000-0000000000b1', 'P');
INSERT INTO archon_tasks (project_id, title) VALUES ('00000000-0000-0000-0000-0000000000b1', 'T');
INSERT INTO archon_project_sources (project_id, source_id)
    VALUES ('00000000-0000-0000-0000-0000000000b1', 's1');
INSERT INTO archon_document_versions (project_id, field_name, version_number, content)
    VALUES ('00000000-0000-0000-0000-0000000000b1', 'docs', 1, '[]');
INSERT INTO archon_settings (key, value) VALUES ('K', 'v');
INSERT INTO archon_prompts (prompt_name, prompt) VALUES ('p', 'text');
INSERT INTO archon_migrations (version, migration_name) VALUES ('0.1.0', 'x');
INSERT INTO archon_vector_outbox (batch, collection, record_id, op, created_at, updated_at)
    VALUES ('b', 'crawled_pages', '1', 'upsert', now(), now());
INSERT INTO archon_configured_repositories (repository_url)
    VALUES ('https://github.com/acme/api');
INSERT INTO archon_agent_work_orders (agent_work_order_id, repository_url, sandbox_identifier,
    status) VALUES ('wo-1', 'https://github.com/acme/api', 'sb-1', 'pending');
INSERT INTO archon_agent_work_order_steps (agent_work_order_id, step, agent_name, success,
    duration_seconds, executed_at, step_order) VALUES ('wo-1', 'plan', 'a', true, 1.0, now(), 0);
INSERT INTO archon_audit_log (occurred_at, actor, unit_id, entity, operation, row_count, fields)
    VALUES (now(), 'system', 'u1', 'archon_projects', 'insert', 1, '[]');
"""


@pytest.fixture
async def seeded(layer: DataLayer) -> AsyncEngine:
    for statement in filter(str.strip, SEED.split(";")):
        await execute(layer.engine, statement)
    return layer.engine


async def as_role(
    engine: AsyncEngine, role: str, statement: str, claims: dict[str, str] | None = None
) -> Any:
    """``statement`` run as ``role`` (rolled back): its rows' first values, or its row count."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            await conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
            if claims is not None:
                await conn.execute(
                    sa.text("SELECT set_config('request.jwt.claims', :c, true)"),
                    {"c": json.dumps(claims)},
                )
            result = await conn.exec_driver_sql(statement)
            return [row[0] for row in result] if result.returns_rows else result.rowcount
        finally:
            await transaction.rollback()


async def counts(engine: AsyncEngine, role: str | None, tables: tuple[str, ...]) -> dict[str, int]:
    found = {}
    for table in tables:
        query = f"SELECT count(*) FROM {table}"
        rows = await as_role(engine, role, query) if role else [await fetch_scalar(engine, query)]
        found[table] = int(rows[0])
    return found


async def refused(engine: AsyncEngine, role: str, statement: str) -> str:
    """The error message ``statement`` fails with as ``role``; '' when it succeeds."""
    try:
        await as_role(engine, role, statement)
    except Exception as exc:  # noqa: BLE001 - the message is what the test looks at
        return str(exc)
    return ""


async def test_every_table_has_row_level_security(seeded: AsyncEngine) -> None:
    rows = await fetch_all(
        seeded,
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relnamespace = to_regnamespace(current_schema()) AND relkind = 'r'",
    )
    tables = {row.relname: (row.relrowsecurity, row.relforcerowsecurity) for row in rows}

    assert set(KNOWLEDGE + PRIVATE) <= set(tables)
    # On, never forced: the owner (the layer's connection) is not subject to it.
    assert {name: state for name, state in tables.items() if state != (True, False)} == {}


async def test_anon_reads_the_knowledge_tables_only(seeded: AsyncEngine) -> None:
    owner = await counts(seeded, None, KNOWLEDGE + PRIVATE)
    anon = await counts(seeded, "anon", KNOWLEDGE + PRIVATE)

    assert all(owner.values()), owner
    assert {t: anon[t] for t in KNOWLEDGE} == {t: owner[t] for t in KNOWLEDGE}
    assert {t: anon[t] for t in PRIVATE} == dict.fromkeys(PRIVATE, 0)


async def test_anon_writes_no_table(seeded: AsyncEngine) -> None:
    for table in KNOWLEDGE + PRIVATE:
        # Granted as on Supabase: the insert gets as far as the policies, which refuse it.
        message = await refused(seeded, "anon", f"INSERT INTO {table} DEFAULT VALUES")
        assert "row-level security" in message, (table, message)
        assert await as_role(seeded, "anon", f"DELETE FROM {table}") == 0, table
    assert await as_role(seeded, "anon", "UPDATE archon_sources SET title = 'x'") == 0
    assert await fetch_scalar(seeded, "SELECT title FROM archon_sources") == "Docs"


async def test_authenticated_users_get_what_archon_grants(seeded: AsyncEngine) -> None:
    owner = await counts(seeded, None, KNOWLEDGE + PRIVATE)
    seen = await counts(seeded, "authenticated", KNOWLEDGE + PRIVATE)

    hidden = dict.fromkeys(AUTHENTICATED_HIDDEN, 0)
    assert seen == {**owner, **hidden}
    for table in AUTHENTICATED_WRITES:
        assert await as_role(seeded, "authenticated", f"DELETE FROM {table}") >= 1, table
    for table in ("archon_prompts", "archon_document_versions", "archon_migrations", *KNOWLEDGE):
        if table not in AUTHENTICATED_WRITES:
            assert await as_role(seeded, "authenticated", f"DELETE FROM {table}") == 0, table
    message = await refused(
        seeded, "authenticated", "INSERT INTO archon_sources (source_id) VALUES ('s2')"
    )
    assert "row-level security" in message


async def test_the_service_role_has_full_access(seeded: AsyncEngine) -> None:
    owner = await counts(seeded, None, KNOWLEDGE + PRIVATE)

    assert await counts(seeded, "service_role", KNOWLEDGE + PRIVATE) == owner
    insert = "INSERT INTO archon_sources (source_id) VALUES ('s2')"
    assert await as_role(seeded, "service_role", insert) == 1
    # Archon's policies name the service role through auth.role(), read from the JWT claims.
    claims = {"role": "service_role"}
    role = await as_role(seeded, "authenticated", "SELECT auth.role()", claims)
    assert role == ["service_role"]
    rows = await as_role(seeded, "authenticated", "SELECT count(*) FROM alembic_version", claims)
    assert rows == [1]


@pytest.mark.backends("sqlite", "mariadb", "postgres", "pgvector")
async def test_the_page_metadata_indexes_of_archon_upgrade_011(layer: DataLayer) -> None:
    async with layer.engine.connect() as conn:
        indexes = await conn.run_sync(
            lambda sync: sa.inspect(sync).get_indexes("archon_page_metadata")
        )
    found = {index["name"]: index["column_names"] for index in indexes}

    assert found["idx_archon_page_metadata_url"] == ["url"]
    assert found["idx_archon_page_metadata_created_at"] == ["created_at"]
    assert found["idx_archon_page_metadata_section"] == [
        "source_id",
        "section_title",
        "section_order",
    ]


# -------------------------------------------------------------------------------- downgrade


@pytest.fixture
async def fresh(backend: Backend, request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    if backend.name == "postgres":
        database = servers.postgres_backend("postgres", servers.postgres_admin_url())
    else:
        database = servers.postgres_backend("pgvector", request.getfixturevalue("pgvector_server"))
    async with database as created:
        engine = create_engine_for(created.url, Settings(_env_file=None, database_url=created.url))
        try:
            yield engine
        finally:
            await engine.dispose()


async def _setup_state(engine: AsyncEngine) -> dict[str, Any]:
    """What revision 0005 makes, as the catalogue shows it."""
    functions = await fetch_all(
        engine,
        "SELECT proname, prosrc FROM pg_proc WHERE proname IN ('archive_task', "
        "'get_embedding_column_name', 'detect_embedding_dimension', "
        "'hybrid_search_archon_crawled_pages_multi')",
    )
    return {
        "rls": await fetch_scalar(
            engine,
            "SELECT count(*) FROM pg_class WHERE relrowsecurity "
            "AND relnamespace = to_regnamespace(current_schema())",
        ),
        "policies": await fetch_scalar(engine, "SELECT count(*) FROM pg_policies"),
        "auth": await fetch_scalar(engine, "SELECT to_regnamespace('auth') IS NOT NULL"),
        "anon_grant": await fetch_scalar(
            engine,
            "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'anon'",
        ),
        "indexes": await fetch_scalar(
            engine,
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('idx_archon_page_metadata_url', "
            "'idx_archon_page_metadata_section', 'idx_archon_page_metadata_created_at')",
        ),
        "helpers": sorted(f.proname for f in functions if "hybrid" not in f.proname),
        "fused": [("score DESC" in f.prosrc) for f in functions if "hybrid" in f.proname],
    }


async def test_downgrade_undoes_the_setup_and_upgrade_redoes_it(
    fresh: AsyncEngine, backend: Backend
) -> None:
    await migrations.upgrade(fresh, "head")
    at_head = await _setup_state(fresh)
    await migrations.downgrade(fresh, "0004_rows_of_record")
    before = await _setup_state(fresh)
    await migrations.upgrade(fresh, "head")

    helpers = ["archive_task", "get_embedding_column_name"]
    if backend.has_pgvector:
        helpers.insert(1, "detect_embedding_dimension")
    assert at_head["rls"] >= len(KNOWLEDGE + PRIVATE) and at_head["policies"] >= 20
    assert at_head["auth"] and at_head["anon_grant"] > 0 and at_head["indexes"] == 3
    assert at_head["helpers"] == helpers
    assert at_head["fused"] == ([False] if backend.has_pgvector else [])
    assert before == {
        "rls": 0,
        "policies": 0,
        "auth": False,
        "anon_grant": 0,
        "indexes": 0,
        "helpers": [],
        "fused": [True] if backend.has_pgvector else [],
    }
    assert await _setup_state(fresh) == at_head


@pytest.mark.backends("sqlite")
def test_an_unknown_policy_kind_is_refused_before_any_sql(backend: Backend) -> None:
    from app.errors import InvalidInputError
    from app.migrations.rls import enable_archon_rls

    with pytest.raises(InvalidInputError, match="policy_kind must be one of private, "):
        enable_archon_rls("archon_agent_work_orders", "public")


@pytest.mark.backends("pgvector")
async def test_a_service_role_without_bypassrls_gets_a_full_access_policy(
    fresh: AsyncEngine, pgvector_backend: Backend
) -> None:
    """As when a non-superuser created the roles: the service role still has full access."""
    await execute(
        fresh,
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') "
        "THEN CREATE ROLE service_role NOLOGIN; COMMENT ON ROLE service_role IS "
        "'archon-db: Supabase stand-in'; END IF; END $$",
    )
    await execute(fresh, "ALTER ROLE service_role NOBYPASSRLS")
    try:
        await migrations.upgrade(fresh, "head")
        policies = await fetch_scalar(
            fresh, "SELECT count(*) FROM pg_policies WHERE 'service_role' = ANY (roles)"
        )
        version = await as_role(fresh, "service_role", "SELECT count(*) FROM alembic_version")
        insert = "INSERT INTO archon_sources (source_id) VALUES ('s1')"
        inserted = await as_role(fresh, "service_role", insert)
        await migrations.downgrade(fresh, "0004_rows_of_record")
        left = await fetch_scalar(fresh, "SELECT count(*) FROM pg_policies")
    finally:
        # The downgrade dropped the role if no other database of the server is granted to it.
        await execute(
            fresh,
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') "
            "THEN ALTER ROLE service_role BYPASSRLS; END IF; END $$",
        )

    # 15 on the tables of 0005, 3 on the work order tables of 0006, 1 on the audit log (0007).
    assert policies == 19 and version == [1] and inserted == 1 and left == 0
