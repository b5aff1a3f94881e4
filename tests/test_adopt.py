"""Adopting databases set up by Archon's own SQL (and older generations of it).

Each test builds its own database on the pgvector server from ``archon_sql/complete_setup.sql``,
then alters it with plain SQL into the variant under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app import migrations
from app.cli.migrate import app as migrate_cli
from app.config import Settings
from app.engines import create_engine_for
from app.errors import UnsupportedFeatureError
from app.migrations import Severity
from tests.support import Backend, fetch_all, fetch_scalar
from tests.support import backends as servers
from tests.support.backends import asyncpg_connect_args

ARCHON_SETUP = (Path(__file__).parent / "archon_sql" / "complete_setup.sql").read_text()

# What distinguishes the beta generation that matters here: one embedding column, no CASCADE.
BETA = """
ALTER TABLE archon_crawled_pages
    DROP CONSTRAINT archon_crawled_pages_source_id_fkey,
    ADD CONSTRAINT archon_crawled_pages_source_id_fkey
        FOREIGN KEY (source_id) REFERENCES archon_sources(source_id),
    DROP COLUMN embedding_384, DROP COLUMN embedding_768, DROP COLUMN embedding_1024,
    DROP COLUMN embedding_1536, DROP COLUMN embedding_3072,
    ADD COLUMN embedding vector(1536);
"""
# The rest of the beta generation: what Archon's upgrades 001, 004, 011 and 005 added.
OLDEST = """
ALTER TABLE archon_sources DROP COLUMN source_url, DROP COLUMN source_display_name;
ALTER TABLE archon_tasks DROP COLUMN priority;
DROP TYPE task_priority;
ALTER TABLE archon_crawled_pages DROP COLUMN page_id;
DROP TABLE archon_page_metadata;
DROP TABLE archon_migrations;
"""

# Archon's optional agent work order tables, in the shape its SQL scripts give them.
WORK_ORDER_TABLES = (
    "archon_configured_repositories",
    "archon_agent_work_orders",
    "archon_agent_work_order_steps",
)
WORK_ORDERS = """
CREATE TABLE archon_configured_repositories (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    repository_url TEXT NOT NULL UNIQUE,
    display_name TEXT, owner TEXT, default_branch TEXT,
    is_verified BOOLEAN DEFAULT false,
    last_verified_at TIMESTAMPTZ,
    default_sandbox_type TEXT DEFAULT 'git_worktree'
        CHECK (default_sandbox_type IN ('git_worktree', 'full_clone', 'tmp_dir')),
    default_commands JSONB DEFAULT '["create-branch", "planning"]'::jsonb,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE UNIQUE INDEX idx_configured_repositories_url
    ON archon_configured_repositories(repository_url);
CREATE INDEX idx_configured_repositories_verified ON archon_configured_repositories(is_verified);
CREATE INDEX idx_configured_repositories_created_at
    ON archon_configured_repositories(created_at DESC);
CREATE TABLE archon_agent_work_orders (
    agent_work_order_id TEXT PRIMARY KEY,
    repository_url TEXT NOT NULL,
    sandbox_identifier TEXT NOT NULL,
    git_branch_name TEXT, agent_session_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    metadata JSONB DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_agent_work_orders_status ON archon_agent_work_orders(status);
CREATE INDEX idx_agent_work_orders_created_at ON archon_agent_work_orders(created_at DESC);
CREATE INDEX idx_agent_work_orders_repository ON archon_agent_work_orders(repository_url);
CREATE INDEX idx_agent_work_orders_metadata ON archon_agent_work_orders USING GIN(metadata);
CREATE TABLE archon_agent_work_order_steps (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_work_order_id TEXT NOT NULL
        REFERENCES archon_agent_work_orders(agent_work_order_id) ON DELETE CASCADE,
    step TEXT NOT NULL, agent_name TEXT NOT NULL, success BOOLEAN NOT NULL,
    output TEXT, error_message TEXT,
    duration_seconds FLOAT NOT NULL,
    session_id TEXT,
    executed_at TIMESTAMPTZ NOT NULL,
    step_order INT NOT NULL
);
CREATE INDEX idx_agent_work_order_steps_work_order_id
    ON archon_agent_work_order_steps(agent_work_order_id);
CREATE INDEX idx_agent_work_order_steps_executed_at ON archon_agent_work_order_steps(executed_at);
INSERT INTO archon_agent_work_orders
    (agent_work_order_id, repository_url, sandbox_identifier, status)
VALUES ('wo-archon', 'https://github.com/o/r', 'sandbox-1', 'completed');
"""


def engine_for(url: str) -> AsyncEngine:
    return create_engine_for(url, Settings(_env_file=None, database_url=url))


async def run_script(url: str, script: str) -> None:
    """A multi-statement script, as psql would run it (asyncpg's simple query protocol)."""
    conn = await asyncpg.connect(**asyncpg_connect_args(make_url(url)))
    try:
        await conn.execute(script)
    finally:
        await conn.close()


@pytest.fixture
async def archon_url(pgvector_server: str) -> AsyncIterator[str]:
    async with servers.postgres_backend("pgvector", pgvector_server) as database:
        await run_script(database.url, ARCHON_SETUP)
        yield database.url


@pytest.fixture
async def archon(archon_url: str) -> AsyncIterator[AsyncEngine]:
    engine = engine_for(archon_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def subjects(findings: list[migrations.Finding]) -> set[str]:
    return {finding.subject for finding in findings}


async def test_an_archon_database_is_adoptable_and_gets_stamped(archon: AsyncEngine) -> None:
    report = await migrations.adopt(archon, apply=False)

    assert report.adoptable and report.warnings == [], report.lines()
    assert not report.stamped and await migrations.current(archon) is None
    absent = subjects(report.of(Severity.NOTE))
    assert set(WORK_ORDER_TABLES) <= absent  # optional in Archon: the upgrade creates them

    report = await migrations.adopt(archon, apply=True)
    assert report.stamped
    assert await migrations.current(archon) == migrations.BASELINE_REVISION
    # The data is untouched; the upgrade adds the agent work order tables Archon's setup left out
    # and the default settings and upgrade records it lacks, keeping those it has.
    assert await fetch_scalar(archon, "SELECT count(*) FROM archon_sources") == 1
    await migrations.upgrade(archon, "head")
    assert await migrations.current(archon) == migrations.head()
    assert await migrations.check(archon) == []
    description = "SELECT description FROM archon_settings WHERE key = 'MODEL_CHOICE'"
    assert await fetch_scalar(archon, description) == "summaries model"
    assert await fetch_scalar(archon, "SELECT count(*) FROM archon_settings") == 45
    assert await fetch_scalar(archon, "SELECT count(*) FROM archon_migrations") == 11


async def test_archons_work_order_tables_are_adopted_and_kept(
    archon_url: str, archon: AsyncEngine
) -> None:
    await run_script(archon_url, WORK_ORDERS)
    report = await migrations.adopt(archon, apply=True)
    assert report.stamped and report.blockers == [] and report.warnings == [], report.lines()
    assert not set(WORK_ORDER_TABLES) & subjects(report.findings)

    await migrations.upgrade(archon, "head")
    assert await migrations.check(archon) == []
    query = "SELECT agent_work_order_id FROM archon_agent_work_orders"
    assert await fetch_scalar(archon, query) == "wo-archon"


async def test_a_missing_column_blocks_adoption(archon: AsyncEngine) -> None:
    await run_script_on(archon, "ALTER TABLE archon_prompts DROP COLUMN description")

    report = await migrations.adopt(archon, apply=True)

    assert not report.adoptable and not report.stamped
    assert "archon_prompts.description" in subjects(report.blockers)
    assert await migrations.current(archon) is None


async def test_a_changed_type_blocks_adoption_and_a_narrower_one_warns(
    archon: AsyncEngine,
) -> None:
    await run_script_on(
        archon,
        "ALTER TABLE archon_sources ALTER COLUMN total_word_count TYPE text;"
        "ALTER TABLE archon_settings ALTER COLUMN category TYPE varchar(50);",
    )

    report = await migrations.adopt(archon, apply=True)

    blocker = next(f for f in report.blockers if f.subject == "archon_sources.total_word_count")
    assert "type text" in blocker.message and "integer" in blocker.message
    assert "archon_settings.category" in subjects(report.warnings)
    assert not report.stamped


async def test_a_missing_unique_constraint_blocks_adoption(archon: AsyncEngine) -> None:
    await run_script_on(
        archon,
        "ALTER TABLE archon_crawled_pages "
        "DROP CONSTRAINT archon_crawled_pages_url_chunk_number_key",
    )

    report = await migrations.adopt(archon, apply=False)

    assert "archon_crawled_pages(url, chunk_number)" in subjects(report.blockers)


async def test_a_beta_database_yields_warnings_and_is_adopted(archon: AsyncEngine) -> None:
    await run_script_on(archon, BETA)

    report = await migrations.adopt(archon, apply=True)

    assert report.adoptable and report.stamped, report.lines()
    warned = subjects(report.warnings)
    assert "archon_crawled_pages(source_id) -> archon_sources" in warned
    assert "archon_crawled_pages.embedding" in warned
    assert {f"archon_crawled_pages.embedding_{d}" for d in (384, 768, 1536)} <= warned
    on_delete = next(f for f in report.warnings if "ON DELETE" in f.message)
    assert "NO ACTION" in on_delete.message and "CASCADE" in on_delete.message


async def test_the_oldest_generation_is_refused_with_the_upgrades_it_lacks(
    archon: AsyncEngine,
) -> None:
    await run_script_on(archon, BETA + OLDEST)

    report = await migrations.adopt(archon, apply=True)

    assert not report.stamped
    blockers = {f.subject: f.message for f in report.blockers}
    # The hints name Archon's upgrade files as Archon's repository names them.
    upgrades = {
        "archon_sources.source_url": "001_add_source_url_display_name.sql",
        "archon_page_metadata": "011_add_page_metadata_table.sql",
        "archon_crawled_pages.page_id": "011_add_page_metadata_table.sql",
        "archon_tasks.priority": "007_add_priority_column_to_tasks.sql",
        "enum type task_priority": "007_add_priority_column_to_tasks.sql",
        "archon_migrations": "008_add_migration_tracking.sql",
    }
    for subject, upgrade in upgrades.items():
        assert f"Archon's migration/0.1.0/{upgrade}" in blockers[subject], blockers[subject]
    warnings = {f.subject: f.message for f in report.warnings}
    assert (
        "migration/0.1.0/004_ollama_migrate_data.sql" in warnings["archon_crawled_pages.embedding"]
    )
    on_delete = next(m for s, m in warnings.items() if s.endswith("-> archon_sources"))
    assert "migration/0.1.0/009_add_cascade_delete_constraints.sql" in on_delete


async def test_a_database_built_by_the_baseline_needs_nothing(
    pgvector_server: str,
) -> None:
    async with servers.postgres_backend("pgvector", pgvector_server) as database:
        engine = engine_for(database.url)
        try:
            await migrations.upgrade(engine)
            report = await migrations.adopt(engine, apply=True)
        finally:
            await engine.dispose()

    assert report.blockers == [] and report.warnings == [], report.lines()
    assert report.revision == migrations.head() and not report.stamped
    assert any(f.severity is Severity.NOTE and "already" in f.message for f in report.findings)


@pytest.mark.backends("sqlite")
async def test_adopt_is_for_postgresql_only(backend: Backend) -> None:
    engine = engine_for(backend.url)
    try:
        with pytest.raises(UnsupportedFeatureError, match="upgrade"):
            await migrations.adopt(engine, apply=False)
    finally:
        await engine.dispose()


async def test_cli_adopt_prints_the_differences_and_its_verdict(
    archon: AsyncEngine, archon_url: str
) -> None:
    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(migrate_cli, ["adopt", "--url", archon_url, *args])
        return result.exit_code, result.output

    code, output = await asyncio.to_thread(invoke)
    assert code == 0 and "--apply" in output, output
    assert await migrations.current(archon) is None

    code, output = await asyncio.to_thread(invoke, "--apply")
    assert code == 0 and "stamped" in output, output
    assert await migrations.current(archon) == migrations.BASELINE_REVISION

    await migrations.stamp(archon, "base")
    await run_script_on(archon, "ALTER TABLE archon_tasks DROP COLUMN title")
    code, output = await asyncio.to_thread(invoke, "--apply")
    assert code == 1 and "not adoptable" in output and "archon_tasks.title" in output


async def run_script_on(engine: AsyncEngine, script: str) -> None:
    url = engine.url.render_as_string(hide_password=False)
    await run_script(url, script)


LEGACY_ROWS = """
INSERT INTO archon_crawled_pages (url, chunk_number, content, source_id, embedding, embedding_model)
SELECT 'https://docs.example.com/' || i, 0, 'page ' || i, 'a1b2c3d4e5f60718',
       array_fill(i::real, ARRAY[1536])::vector,
       CASE WHEN i = 1 THEN 'my-model' END
FROM generate_series(1, 3) AS i;
INSERT INTO archon_crawled_pages (url, chunk_number, content, source_id)
VALUES ('https://docs.example.com/none', 0, 'no vector', 'a1b2c3d4e5f60718');
"""


async def test_adopt_apply_performs_archons_upgrade_004(archon: AsyncEngine) -> None:
    await run_script_on(archon, BETA + LEGACY_ROWS)

    report = await migrations.adopt(archon, apply=True)

    assert report.stamped, report.lines()
    moved = next(
        f
        for f in report.findings
        if f.subject == "archon_crawled_pages.embedding" and f.severity is Severity.NOTE
    )
    assert "moved 3 vector(s)" in moved.message
    assert "migration/0.1.0/004_ollama_migrate_data.sql" in moved.message
    rows = await fetch_all(
        archon,
        "SELECT url, vector_dims(embedding_1536) AS dims, (embedding_1536::real[])[1] AS first, "
        "embedding_dimension, embedding_model FROM archon_crawled_pages ORDER BY url",
    )
    assert [tuple(row) for row in rows] == [
        ("https://docs.example.com/1", 1536, 1.0, 1536, "my-model"),
        ("https://docs.example.com/2", 1536, 2.0, 1536, "text-embedding-3-small"),
        ("https://docs.example.com/3", 1536, 3.0, 1536, "text-embedding-3-small"),
        ("https://docs.example.com/none", None, None, None, None),
    ]
    assert (
        await fetch_scalar(
            archon,
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'archon_crawled_pages' AND column_name = 'embedding'",
        )
        == 0
    )
    assert (
        await fetch_scalar(
            archon,
            "SELECT count(*) FROM archon_migrations "
            "WHERE migration_name = '004_ollama_migrate_data'",
        )
        == 1
    )
    await migrations.upgrade(archon, "head")
    assert await migrations.current(archon) == migrations.head()


async def test_upgrade_004_keeps_the_column_when_vectors_of_another_length_remain(
    archon: AsyncEngine,
) -> None:
    await run_script_on(
        archon,
        BETA + LEGACY_ROWS + "ALTER TABLE archon_crawled_pages ALTER COLUMN embedding TYPE vector;"
        "INSERT INTO archon_crawled_pages (url, chunk_number, content, source_id, embedding) "
        "VALUES ('https://docs.example.com/short', 0, 's', 'a1b2c3d4e5f60718', '[1,2,3]');",
    )

    report = await migrations.adopt(archon, apply=True)

    kept = next(
        f
        for f in report.warnings
        if f.subject == "archon_crawled_pages.embedding" and "kept" in f.message
    )
    assert "moved 3 vector(s)" in kept.message and "1 row(s)" in kept.message
    assert (
        await fetch_scalar(
            archon, "SELECT count(*) FROM archon_crawled_pages WHERE embedding IS NOT NULL"
        )
        == 4
    )
    assert (
        await fetch_scalar(
            archon, "SELECT count(*) FROM archon_crawled_pages WHERE embedding_1536 IS NOT NULL"
        )
        == 3
    )


async def test_the_setup_revision_keeps_an_adopted_databases_own_policies(
    archon: AsyncEngine,
) -> None:
    """Revision 0005 adds Archon's policies and indexes where missing; its downgrade removes
    only what it added, so Archon's own survive it."""

    async def state() -> tuple[list[str], int, bool]:
        policies = await fetch_all(
            archon, "SELECT policyname FROM pg_policies WHERE tablename = 'archon_sources'"
        )
        indexes = await fetch_scalar(
            archon, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_archon_page_%'"
        )
        rls = await fetch_scalar(
            archon, "SELECT relrowsecurity FROM pg_class WHERE relname = 'archon_tasks'"
        )
        return sorted(row.policyname for row in policies), int(indexes), bool(rls)

    before = await state()
    await migrations.adopt(archon, apply=True)
    await migrations.upgrade(archon, "head")
    at_head = await state()
    await migrations.downgrade(archon, "0004_rows_of_record")

    assert before == (["public read"], 5, True)
    assert at_head == (["Allow public read access to archon_sources", "public read"], 5, True)
    assert await state() == before
    assert await fetch_scalar(archon, "SELECT to_regprocedure('auth.role()') IS NOT NULL")
