"""Vector and keyword search: ANN indexes, full-text structures, Archon's search functions.

- Every dialect: ``archon_vector_versions``, the version each collection's vectors are at (the
  exact index reloads its in-process matrix when it changes).
- PostgreSQL with pgvector: a cosine HNSW index per ``embedding_<dim>`` column (``vector`` up to
  2000 dimensions, a ``halfvec`` expression index up to 4000; Archon's ivfflat indexes on the same
  columns, built once on an empty table, are replaced), and Archon's search functions
  ``match_archon_*`` / ``hybrid_search_archon_*`` (and ``_multi``) with Archon's signatures and
  result columns. The ``_multi`` ones accept any dimension that has a column; hybrid ones fuse
  the vector and full-text lists by reciprocal rank (k = 60), as ``DataLayer.search`` does.
- SQLite: FTS5 external-content tables ``<table>_fts`` kept in step by triggers (bm25 ranking).
- MySQL / MariaDB: a stored generated ``content_search_vector`` column (the searchable text, in
  a case-insensitive collation) with a FULLTEXT index.

Revision ID: 0002_vector_search
Revises: 0001_archon_baseline
Create Date: 2025-01-02
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002_vector_search"
down_revision: str | Sequence[str] | None = "0001_archon_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

VERSIONS = "archon_vector_versions"
COLLECTIONS = {"crawled_pages": "archon_crawled_pages", "code_examples": "archon_code_examples"}
SEARCHABLE = {"archon_crawled_pages": ("content",), "archon_code_examples": ("content", "summary")}
VECTOR_INDEX_LIMIT, HALFVEC_INDEX_LIMIT = 2000, 4000
RRF_K = 60


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    _create_versions()
    if dialect == "postgresql":
        pgvector = _pgvector()
        if pgvector is not None:
            _create_hnsw_indexes(pgvector[0])
            _create_functions(pgvector)
    elif dialect == "sqlite":
        for table, columns in SEARCHABLE.items():
            _create_fts5(table, columns)
    else:
        for table, columns in SEARCHABLE.items():
            _create_fulltext(table, columns)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        pgvector = _pgvector()
        for statement in _drop_functions(pgvector[0]) if pgvector else []:
            op.execute(statement)
        for table in SEARCHABLE:
            for dimension in _embedding_dimensions(table):
                op.execute(f"DROP INDEX IF EXISTS idx_{table}_embedding_{dimension}_hnsw")
    elif dialect == "sqlite":
        for table in SEARCHABLE:
            for suffix in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {table}_fts")
    else:
        for table in SEARCHABLE:
            op.execute(
                f"ALTER TABLE {table} DROP INDEX idx_{table}_content_search, "
                "DROP COLUMN content_search_vector"
            )
    op.drop_table(VERSIONS)


# -- versions ----------------------------------------------------------------------------------


def _create_versions() -> None:
    kwargs = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
    table = op.create_table(
        VERSIONS,
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("collection", name=f"{VERSIONS}_pkey"),
        **(kwargs if op.get_context().dialect.name in ("mysql", "mariadb") else {}),
    )
    op.bulk_insert(table, [{"collection": name, "version": 0} for name in COLLECTIONS])


# -- PostgreSQL --------------------------------------------------------------------------------


def _pgvector() -> tuple[str, tuple[int, ...]] | None:
    """(schema, version) of pgvector when the embedding columns are pgvector's; else None."""
    bind = op.get_bind()
    row = bind.execute(
        sa.text(
            "SELECT n.nspname, e.extversion FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        )
    ).first()
    if row is None:
        log.info("no pgvector: the exact index will search the embedding blobs")
        return None
    kinds = set(_embedding_columns("archon_crawled_pages").values())
    if kinds and not all("vector" in kind for kind in kinds):
        log.info("embedding columns are not pgvector's (%s): no HNSW indexes", sorted(kinds))
        return None
    return str(row[0]), tuple(int(p) for p in re.findall(r"\d+", str(row[1]))[:3])


def _embedding_columns(table: str) -> dict[int, str]:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped "
            "AND attname ~ '^embedding_[0-9]+$'"
        ),
        {"t": table},
    )
    return {int(name.split("_")[1]): str(kind) for name, kind in rows}


def _embedding_dimensions(table: str) -> list[int]:
    return sorted(_embedding_columns(table))


def _create_hnsw_indexes(schema: str) -> None:
    bind = op.get_bind()
    for table in SEARCHABLE:
        for dimension in _embedding_dimensions(table):
            column = f"embedding_{dimension}"
            archon_index = f"idx_{table}_{column}"
            method = bind.execute(
                sa.text(
                    "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                    "WHERE c.oid = to_regclass(:name)"
                ),
                {"name": archon_index},
            ).scalar()
            if method == "ivfflat":
                op.execute(f"DROP INDEX {archon_index}")
            if dimension <= VECTOR_INDEX_LIMIT:
                target = f"{column} vector_cosine_ops"
            elif dimension <= HALFVEC_INDEX_LIMIT:
                target = f'(({column})::"{schema}".halfvec({dimension})) halfvec_cosine_ops'
            else:
                log.info("%s.%s: past pgvector's index limits, searched exactly", table, column)
                continue
            op.execute(
                f"CREATE INDEX IF NOT EXISTS {archon_index}_hnsw ON {table} USING hnsw ({target})"
            )


_COLUMNS = {
    "archon_crawled_pages": (
        ("id", "bigint"),
        ("url", "varchar"),
        ("chunk_number", "integer"),
        ("content", "text"),
        ("metadata", "jsonb"),
        ("source_id", "text"),
    ),
    "archon_code_examples": (
        ("id", "bigint"),
        ("url", "varchar"),
        ("chunk_number", "integer"),
        ("content", "text"),
        ("summary", "text"),
        ("metadata", "jsonb"),
        ("source_id", "text"),
    ),
}

# Resolves the column for the dimension (any that exists), refuses a query of another length,
# and builds the nearest-neighbour SQL: ordered by the indexed expression, re-sorted exactly.
_NEAREST_PRELUDE = """
    IF embedding_dimension IS NULL OR NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = '{table}'::regclass AND attname = 'embedding_' || embedding_dimension
          AND NOT attisdropped
    ) THEN
        RAISE EXCEPTION 'Unsupported embedding dimension: %', embedding_dimension
            USING HINT = 'archon-db vectors add-dimension N adds a column for another length';
    END IF;
    IF vector_dims(query_embedding) <> embedding_dimension THEN
        RAISE EXCEPTION 'query_embedding has % dimensions, embedding_dimension is %',
            vector_dims(query_embedding), embedding_dimension;
    END IF;
    col := 'embedding_' || embedding_dimension;
    IF embedding_dimension <= {vector_limit} THEN
        order_by := format('t.%I <=> $1', col);
        candidates := '$2';
    ELSIF embedding_dimension <= {halfvec_limit} THEN
        order_by := format('(t.%I)::{schema}.halfvec(%s) <=> ($1)::{schema}.halfvec(%s)',
                           col, embedding_dimension, embedding_dimension);
        candidates := '2 * $2';
    ELSE
        order_by := format('t.%I <=> $1', col);
        candidates := '$2';
    END IF;
    nearest := format(
        'SELECT c.id, c.distance FROM (SELECT t.id, t.%1$I <=> $1 AS distance FROM {table} t '
        'WHERE t.%1$I IS NOT NULL AND t.metadata @> $3 AND ($4 IS NULL OR t.source_id = $4) '
        'ORDER BY %2$s LIMIT %3$s) c ORDER BY c.distance, c.id LIMIT $2',
        col, order_by, candidates);
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(64, 2 * match_count))::text, true);
"""

_MATCH = """
CREATE OR REPLACE FUNCTION {name}_multi(
    query_embedding {schema}.vector,
    embedding_dimension integer,
    match_count integer DEFAULT 10,
    filter jsonb DEFAULT '{{}}'::jsonb,
    source_filter text DEFAULT NULL
) RETURNS TABLE ({returns}, similarity double precision)
LANGUAGE plpgsql {settings}
AS $fn$
DECLARE
    col text; order_by text; candidates text; nearest text;
BEGIN
{prelude}
    RETURN QUERY EXECUTE format(
        'SELECT {fields}, (1 - n.distance)::float8 FROM (%s) n JOIN {table} t ON t.id = n.id '
        'ORDER BY n.distance, n.id', nearest)
    USING query_embedding, match_count, filter, source_filter;
END
$fn$
"""

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
            SELECT n.id, 1 - n.distance AS sim,
                   row_number() OVER (ORDER BY n.distance, n.id) AS r
            FROM (%s) n
        ), kw AS (
            SELECT k.id, k.sim, row_number() OVER (ORDER BY k.sim DESC, k.id) AS r
            FROM (
                SELECT t.id, ts_rank_cd(t.content_search_vector, q.query) AS sim
                FROM {table} t, plainto_tsquery('english', $5) AS q(query)
                WHERE t.content_search_vector @@ q.query
                  AND t.metadata @> $3 AND ($4 IS NULL OR t.source_id = $4)
                ORDER BY sim DESC, t.id
                LIMIT $2
            ) k
        ), fused AS (
            SELECT COALESCE(v.id, kw.id) AS id,
                   COALESCE(1.0::float8 / ({rrf_k} + v.r), 0)
                       + COALESCE(1.0::float8 / ({rrf_k} + kw.r), 0) AS score,
                   COALESCE(v.sim, kw.sim)::float8 AS similarity,
                   CASE WHEN v.id IS NOT NULL AND kw.id IS NOT NULL THEN 'hybrid'
                        WHEN v.id IS NOT NULL THEN 'vector' ELSE 'keyword' END AS match_type
            FROM v FULL OUTER JOIN kw ON v.id = kw.id
        )
        SELECT {fields}, f.similarity, f.match_type
        FROM fused f JOIN {table} t ON t.id = f.id
        ORDER BY f.score DESC, f.id
        LIMIT $2
    $q$, nearest)
    USING query_embedding, match_count, filter, source_filter, query_text;
END
$fn$
"""

_LEGACY_MATCH = """
CREATE OR REPLACE FUNCTION {name}(
    query_embedding {schema}.vector(1536),
    match_count integer DEFAULT 10,
    filter jsonb DEFAULT '{{}}'::jsonb,
    source_filter text DEFAULT NULL
) RETURNS TABLE ({returns}, similarity double precision)
LANGUAGE sql
AS $fn$ SELECT * FROM {name}_multi(query_embedding, 1536, match_count, filter, source_filter) $fn$
"""

_LEGACY_HYBRID = """
CREATE OR REPLACE FUNCTION {name}(
    query_embedding {schema}.vector(1536),
    query_text text,
    match_count integer DEFAULT 10,
    filter jsonb DEFAULT '{{}}'::jsonb,
    source_filter text DEFAULT NULL
) RETURNS TABLE ({returns}, similarity double precision, match_type text)
LANGUAGE sql
AS $fn$
    SELECT * FROM {name}_multi(query_embedding, 1536, query_text, match_count, filter, source_filter)
$fn$
"""


def _function_names() -> list[tuple[str, str, str]]:
    """(table, match function, hybrid function) per collection."""
    return [(table, f"match_{table}", f"hybrid_search_{table}") for table in SEARCHABLE]


def _create_functions(pgvector: tuple[str, tuple[int, ...]]) -> None:
    schema, version = pgvector
    quoted = f'"{schema}"'
    # Iterative scans (pgvector 0.8) keep a filtered HNSW scan going until it has enough rows.
    settings = "SET hnsw.ef_search = '64'"
    if version >= (0, 8, 0):
        settings += " SET hnsw.iterative_scan = 'relaxed_order'"
    for table, match, hybrid in _function_names():
        returns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS[table])
        fields = ", ".join(f"t.{name}" for name, _ in _COLUMNS[table])
        prelude = _NEAREST_PRELUDE.format(
            table=table,
            schema=quoted,
            vector_limit=VECTOR_INDEX_LIMIT,
            halfvec_limit=HALFVEC_INDEX_LIMIT,
        )
        common = {"schema": quoted, "returns": returns, "table": table, "fields": fields}
        common.update(settings=settings, prelude=prelude, rrf_k=RRF_K)
        op.execute(_MATCH.format(name=match, **common))
        op.execute(_HYBRID.format(name=hybrid, **common))
        op.execute(_LEGACY_MATCH.format(name=match, schema=quoted, returns=returns))
        op.execute(_LEGACY_HYBRID.format(name=hybrid, schema=quoted, returns=returns))


def _drop_functions(schema: str) -> list[str]:
    vector = f'"{schema}".vector'
    statements = []
    for _, match, hybrid in _function_names():
        statements += [
            f"DROP FUNCTION IF EXISTS {match}({vector}, integer, jsonb, text)",
            f"DROP FUNCTION IF EXISTS {hybrid}({vector}, text, integer, jsonb, text)",
            f"DROP FUNCTION IF EXISTS {match}_multi({vector}, integer, integer, jsonb, text)",
            f"DROP FUNCTION IF EXISTS {hybrid}_multi({vector}, integer, text, integer, jsonb, text)",
        ]
    return statements


# -- SQLite ------------------------------------------------------------------------------------


def _create_fts5(table: str, columns: tuple[str, ...]) -> None:
    fts = f"{table}_fts"
    names = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    op.execute(
        f"CREATE VIRTUAL TABLE {fts} USING fts5({names}, content='{table}', "
        "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new}); END"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old}); END"
    )
    # Only when the searchable text changes: writing a vector must not rewrite the index.
    op.execute(
        f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {names} ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {names}) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO {fts}(rowid, {names}) VALUES (new.id, {new}); END"
    )
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


# -- MySQL / MariaDB ---------------------------------------------------------------------------


def _create_fulltext(table: str, columns: tuple[str, ...]) -> None:
    # The tables' binary collation would make FULLTEXT case-sensitive; the generated column
    # gives the search its own case-insensitive copy of the text.
    source = ", ' ', ".join(f"COALESCE({column}, '')" for column in columns)
    op.execute(
        f"ALTER TABLE {table} ADD COLUMN content_search_vector LONGTEXT CHARACTER SET utf8mb4 "
        f"COLLATE utf8mb4_unicode_ci GENERATED ALWAYS AS (CONCAT({source})) STORED, "
        f"ADD FULLTEXT INDEX idx_{table}_content_search (content_search_vector)"
    )
