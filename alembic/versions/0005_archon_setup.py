"""Archon's own setup on PostgreSQL / Supabase: row-level security, Archon's SQL functions, indexes.

- Row-level security on every table, Archon's and the layer's, with Archon's policies
  (``app.migrations.rls``): a database built by ``archon-db migrate upgrade`` on Supabase is not
  open to whoever holds the anon key. Anon reads the knowledge tables (sources, crawled pages,
  code examples, page metadata) and nothing else, and writes nothing. The layer's own tables
  are the service role's (outbox, ``alembic_version``); authenticated users may read the
  database identity and the vector versions, which the exact index reads for every search. On a
  plain PostgreSQL server the Supabase roles and ``auth.role()`` are created when missing.
- Archon's hybrid search functions (``hybrid_search_archon_*``, both signatures) select and
  order as Archon's do: the vector and the full-text top ``match_count`` joined, similarity
  descending (the vector similarity where there is one), Archon's ``match_type``. The layer's
  reciprocal-rank fusion stays in ``DataLayer.search``. Revision 0002's fused versions come back
  on downgrade.
- Archon's helpers ``detect_embedding_dimension(vector)`` (pgvector only),
  ``get_embedding_column_name(integer)`` (also names a column added for another length) and
  ``archive_task(uuid, text)``, where the database does not already have Archon's own.
- The indexes Archon's upgrade 011 creates on ``archon_page_metadata`` (url, section,
  created_at), on every dialect.
MySQL / MariaDB and SQLite get the indexes only. Objects this revision creates on PostgreSQL
carry a comment, so its downgrade removes exactly those and leaves an adopted database's own.

Revision ID: 0005_archon_setup
Revises: 0004_rows_of_record
Create Date: 2025-01-05
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from alembic import context, op
from app.migrations import rls
from app.migrations.rls import query_scalar

revision: str = "0005_archon_setup"
down_revision: str | Sequence[str] | None = "0004_rows_of_record"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARK = "archon-db: 0005_archon_setup"
RLS_KINDS = {
    "archon_settings": "authenticated",
    "archon_projects": "authenticated",
    "archon_tasks": "authenticated",
    "archon_project_sources": "authenticated",
    "archon_document_versions": "authenticated_read",
    "archon_prompts": "authenticated_read",
    "archon_migrations": "authenticated_read",
    "archon_sources": "public_read",
    "archon_crawled_pages": "public_read",
    "archon_code_examples": "public_read",
    "archon_page_metadata": "public_read_authenticated_write",
    "archon_vector_outbox": "private",
    "archon_vector_versions": "authenticated_read",
    "archon_database_identity": "authenticated_read",
}
PAGE_INDEXES = {
    "idx_archon_page_metadata_url": ["url"],
    "idx_archon_page_metadata_section": ["source_id", "section_title", "section_order"],
    "idx_archon_page_metadata_created_at": ["created_at"],
}
HELPERS = {
    "detect_embedding_dimension": "{schema}.vector",
    "get_embedding_column_name": "integer",
    "archive_task": "uuid, text",
}


def upgrade() -> None:
    _create_page_indexes()
    # The row-level security helpers do nothing on the other dialects.
    rls.ensure_supabase_roles()
    for table, kind in {**RLS_KINDS, _version_table(): "private"}.items():
        rls.enable_archon_rls(table, kind)
    if op.get_context().dialect.name == "postgresql":
        _create_functions()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _drop_functions()
    for table in [*RLS_KINDS, _version_table()]:
        rls.disable_archon_rls(table)
    rls.remove_supabase_roles()
    _drop_page_indexes()


def _create_functions() -> None:
    search = _revision_0002()
    pgvector = search._pgvector()
    schema = f'"{pgvector[0]}"' if pgvector else ""
    if pgvector:
        _create_hybrid_functions(search, schema)
    for name, signature in HELPERS.items():
        if name == "detect_embedding_dimension" and not pgvector:
            continue
        if _function_exists(name, signature.format(schema=schema)):
            continue  # Archon's own, from its setup script
        op.execute(_HELPER_SQL[name].format(schema=schema))
        op.execute(f"COMMENT ON FUNCTION {name}({signature.format(schema=schema)}) IS '{MARK}'")


def _drop_functions() -> None:
    search = _revision_0002()
    pgvector = search._pgvector()
    schema = f'"{pgvector[0]}"' if pgvector else ""
    for name, signature in HELPERS.items():
        arguments = signature.format(schema=schema)
        if (pgvector or "vector" not in signature) and _marked_function(name, arguments):
            op.execute(f"DROP FUNCTION {name}({arguments})")
    if pgvector:
        search._create_functions(pgvector)  # 0002's fused hybrid functions again


# -- archon_page_metadata indexes --------------------------------------------------------------


def _create_page_indexes() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for name, columns in PAGE_INDEXES.items():
        if postgresql and query_scalar("SELECT to_regclass(:n) IS NOT NULL", n=name):
            continue  # created by Archon's upgrade 011
        kwargs: dict[str, Any] = {"mysql_length": {"section_title": 191}}
        op.create_index(name, "archon_page_metadata", columns, **kwargs)
        if postgresql:
            op.execute(f"COMMENT ON INDEX {name} IS '{MARK}'")


def _drop_page_indexes() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for name in PAGE_INDEXES:
        if postgresql and query_scalar(
            "SELECT obj_description(to_regclass(:n), 'pg_class')", n=name
        ) != (MARK):
            continue
        op.drop_index(name, table_name="archon_page_metadata")


# -- functions ---------------------------------------------------------------------------------


def _revision_0002() -> ModuleType:
    """Revision 0002's module: its column lists, nearest-neighbour SQL and function builder."""
    return context.script.get_revision("0002_vector_search").module  # type: ignore[no-any-return]


def _version_table() -> str:
    return str(op.get_context().version_table)


def _function_exists(name: str, arguments: str) -> bool:
    return bool(query_scalar("SELECT to_regprocedure(:f) IS NOT NULL", f=f"{name}({arguments})"))


def _marked_function(name: str, arguments: str) -> bool:
    description = query_scalar(
        "SELECT obj_description(to_regprocedure(:f), 'pg_proc')", f=f"{name}({arguments})"
    )
    return description == MARK


# Archon's hybrid search: the vector top match_count and the full-text top match_count (both
# filtered), full-outer-joined; similarity is the vector's where the row has one, else the text
# rank; ordered by similarity (ties by id), match_count rows. The vector list comes from 0002's
# nearest-neighbour SQL (the HNSW index where there is one, re-sorted exactly).
_HYBRID = """
CREATE OR REPLACE FUNCTION {name}_multi(
    query_embedding {schema}.vector,
    embedding_dimension integer,
    query_text text,
    match_count integer DEFAULT 10,
    filter jsonb DEFAULT '{{}}'::jsonb,
    source_filter text DEFAULT NULL
) RETURNS TABLE ({returns}, similarity double precision, match_type text)
LANGUAGE plpgsql {settings}
AS $fn$
DECLARE
    col text; order_by text; candidates text; nearest text;
BEGIN
{prelude}
    RETURN QUERY EXECUTE format($q$
        WITH v AS (
            SELECT n.id, 1 - n.distance AS sim FROM (%s) n
        ), kw AS (
            SELECT t.id, ts_rank_cd(t.content_search_vector, q.query) AS sim
            FROM {table} t, plainto_tsquery('english', $5) AS q(query)
            WHERE t.content_search_vector @@ q.query
              AND t.metadata @> $3 AND ($4 IS NULL OR t.source_id = $4)
            ORDER BY sim DESC, t.id
            LIMIT $2
        ), combined AS (
            SELECT COALESCE(v.id, kw.id) AS id,
                   COALESCE(v.sim, kw.sim, 0)::float8 AS similarity,
                   CASE WHEN v.id IS NOT NULL AND kw.id IS NOT NULL THEN 'hybrid'
                        WHEN v.id IS NOT NULL THEN 'vector' ELSE 'keyword' END AS match_type
            FROM v FULL OUTER JOIN kw ON v.id = kw.id
        )
        SELECT {fields}, c.similarity, c.match_type
        FROM combined c JOIN {table} t ON t.id = c.id
        ORDER BY c.similarity DESC, c.id
        LIMIT $2
    $q$, nearest)
    USING query_embedding, match_count, filter, source_filter, query_text;
END
$fn$
"""


def _create_hybrid_functions(search: ModuleType, schema: str) -> None:
    """Replace 0002's fused ``_multi`` functions; the legacy 1536 ones call them unchanged."""
    settings = "SET hnsw.ef_search = '64'"
    if search._pgvector()[1] >= (0, 8, 0):
        settings += " SET hnsw.iterative_scan = 'relaxed_order'"
    for table, _, hybrid in search._function_names():
        columns = search._COLUMNS[table]
        prelude = search._NEAREST_PRELUDE.format(
            table=table,
            schema=schema,
            vector_limit=search.VECTOR_INDEX_LIMIT,
            halfvec_limit=search.HALFVEC_INDEX_LIMIT,
        )
        op.execute(
            _HYBRID.format(
                name=hybrid,
                schema=schema,
                table=table,
                settings=settings,
                prelude=prelude,
                returns=", ".join(f"{name} {kind}" for name, kind in columns),
                fields=", ".join(f"t.{name}" for name, _ in columns),
            )
        )


_HELPER_SQL = {
    # The vector's length, as Archon's helper answers it.
    "detect_embedding_dimension": """
CREATE FUNCTION detect_embedding_dimension(embedding_vector {schema}.vector)
RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$ SELECT {schema}.vector_dims(embedding_vector) $fn$
""",
    # Archon's five columns by name; a length the layer added a column for names that column;
    # any other raises Archon's message.
    "get_embedding_column_name": """
CREATE FUNCTION get_embedding_column_name(dimension integer)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF dimension IN (384, 768, 1024, 1536, 3072) OR EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('archon_crawled_pages')
          AND attname = 'embedding_' || dimension AND NOT attisdropped
    ) THEN
        RETURN 'embedding_' || dimension;
    END IF;
    RAISE EXCEPTION 'Unsupported embedding dimension: %. Supported dimensions are: '
        '384, 768, 1024, 1536, 3072', dimension;
END
$fn$
""",
    # Archon's soft delete: false when the task is absent or already archived; otherwise the
    # task and its subtasks not yet archived are marked, and true.
    "archive_task": """
CREATE FUNCTION archive_task(task_id_param uuid, archived_by_param text DEFAULT 'system')
RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM archon_tasks WHERE id = task_id_param AND archived = false
    ) THEN
        RETURN false;
    END IF;
    UPDATE archon_tasks
    SET archived = true, archived_at = now(), archived_by = archived_by_param, updated_at = now()
    WHERE id = task_id_param
       OR (parent_task_id = task_id_param AND archived = false);
    RETURN true;
END
$fn$
""",
}
