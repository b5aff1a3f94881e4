"""Archon's upgrade 004 for ``adopt --apply``: the beta ``embedding`` column to ``embedding_1536``.

Archon's ``migration/0.1.0/004_ollama_migrate_data.sql`` copies the vectors of the beta
generation's single ``embedding`` column into ``embedding_1536`` (rows whose ``embedding_1536`` is
still empty), sets ``embedding_dimension = 1536`` and, where unset,
``embedding_model = 'text-embedding-3-small'``, then drops the old column and its index. The
move here is the same, with two safeguards: ``embedding_1536`` is added first when the database
lacks it (the layer adds such columns anyway), and the old column is dropped only once every
vector it holds has a home; vectors of another length (Archon's script drops them) keep it, and
the report says so.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.migrations.report import Finding, Severity

UPGRADE_004 = "migration/0.1.0/004_ollama_migrate_data.sql"
DEFAULT_MODEL = "text-embedding-3-small"


def pending_tables(connection: Connection) -> list[str]:
    """The chunk tables that still have the beta ``embedding`` column as a pgvector column."""
    rows = connection.execute(
        sa.text(
            "SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE c.relnamespace = to_regnamespace(current_schema()) "
            "AND c.relname IN ('archon_crawled_pages', 'archon_code_examples') "
            "AND a.attname = 'embedding' "
            "AND NOT a.attisdropped AND t.typname = 'vector' "
            "ORDER BY c.relname DESC"
        )
    )
    return [str(row[0]) for row in rows]


def move_legacy_embeddings(connection: Connection) -> list[Finding]:
    """Perform Archon's upgrade 004 where it is pending; one finding per table moved or kept."""
    tables = pending_tables(connection)
    findings = [_move(connection, table) for table in tables]
    if tables and connection.execute(sa.text("SELECT to_regclass('archon_migrations')")).scalar():
        connection.execute(
            sa.text(
                "INSERT INTO archon_migrations (version, migration_name) "
                "VALUES ('0.1.0', '004_ollama_migrate_data') "
                "ON CONFLICT (version, migration_name) DO NOTHING"
            )
        )
    return findings


def _move(connection: Connection, table: str) -> Finding:
    def run(sql: str) -> int:
        return int(connection.execute(sa.text(sql)).rowcount or 0)

    schema = connection.execute(
        sa.text(
            "SELECT quote_ident(n.nspname) FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        )
    ).scalar()
    vector = f"{schema}.vector"
    run(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS embedding_1536 {vector}(1536)")
    moved = run(
        f"UPDATE {table} SET embedding_1536 = embedding::{vector}(1536), "
        "embedding_dimension = 1536, "
        f"embedding_model = COALESCE(embedding_model, '{DEFAULT_MODEL}') "
        "WHERE embedding IS NOT NULL AND embedding_1536 IS NULL "
        f"AND {schema}.vector_dims(embedding) = 1536"
    )
    left = connection.execute(
        sa.text(
            f"SELECT count(*) FROM {table} WHERE embedding IS NOT NULL AND embedding_1536 IS NULL"
        )
    ).scalar()
    subject = f"{table}.embedding"
    if left:
        message = (
            f"moved {moved} vector(s) to embedding_1536 as Archon's {UPGRADE_004} does; kept the "
            f"column: {left} row(s) hold vectors of another length (that script would drop them)"
        )
        return Finding(Severity.WARNING, subject, message)
    run(f"DROP INDEX IF EXISTS idx_{table}_embedding")
    run(f"ALTER TABLE {table} DROP COLUMN embedding")
    message = f"moved {moved} vector(s) to embedding_1536 and dropped the column ({UPGRADE_004})"
    return Finding(Severity.NOTE, subject, message)
