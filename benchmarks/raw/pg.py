"""PostgreSQL + pgvector through asyncpg alone: binary COPY, prepared statements, one round trip
per statement, vectors in pgvector's binary format."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from benchmarks.data import DIMENSION, Batch
from benchmarks.raw.common import (
    EMBEDDING,
    INSERT_COLUMNS,
    MODEL,
    PAGE_COLUMNS,
    PAGES,
    SOURCE_COLUMNS,
    Digest,
    checksum,
    source_values,
    urls_of,
    utcnow,
)

TABLES = "archon_crawled_pages, archon_code_examples, archon_page_metadata, archon_sources"
RRF_K = 60
EF_SEARCH = 64  # what the layer sets for k <= 32 (max(64, 2k))

_UPSERT_SOURCE = (
    f"INSERT INTO archon_sources ({', '.join(SOURCE_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(SOURCE_COLUMNS) + 1))}) "
    "ON CONFLICT (source_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = EXCLUDED.{c}" for c in SOURCE_COLUMNS if c not in ("source_id", "created_at")
    )
)
_NEAREST = (
    f"SELECT c.id FROM (SELECT id, {EMBEDDING} <=> $1 AS distance FROM {PAGES} "
    f"WHERE {EMBEDDING} IS NOT NULL ORDER BY {EMBEDDING} <=> $1 LIMIT $2) c "
    "ORDER BY c.distance, c.id"
)
_VECTOR_QUERY = (
    f"SELECT {', '.join('t.' + c.strip() for c in PAGE_COLUMNS.split(','))}, 1 - n.distance "
    f"AS score FROM (SELECT id, {EMBEDDING} <=> $1 AS distance FROM {PAGES} "
    f"WHERE {EMBEDDING} IS NOT NULL ORDER BY {EMBEDDING} <=> $1 LIMIT $2) n "
    f"JOIN {PAGES} t ON t.id = n.id ORDER BY n.distance, n.id"
)
# The layer's hybrid plan in one statement: the same nearest rows, the same keyword ranking,
# reciprocal rank fusion with ties to the smaller id, the rows joined at the end.
_HYBRID_QUERY = f"""
WITH v AS (
    SELECT n.id, row_number() OVER (ORDER BY n.distance, n.id) AS r
    FROM (SELECT id, {EMBEDDING} <=> $1 AS distance FROM {PAGES}
          WHERE {EMBEDDING} IS NOT NULL ORDER BY {EMBEDDING} <=> $1 LIMIT $2) n
), kw AS (
    SELECT k.id, row_number() OVER (ORDER BY k.sim DESC, k.id) AS r
    FROM (SELECT t.id, ts_rank_cd(t.content_search_vector, q.query) AS sim
          FROM {PAGES} t, plainto_tsquery('english', $3) AS q(query)
          WHERE t.content_search_vector @@ q.query
          ORDER BY sim DESC, t.id LIMIT $2) k
), fused AS (
    SELECT COALESCE(v.id, kw.id) AS id,
           COALESCE(1.0::float8 / ({RRF_K} + v.r), 0)
             + COALESCE(1.0::float8 / ({RRF_K} + kw.r), 0) AS score
    FROM v FULL OUTER JOIN kw ON v.id = kw.id
)
SELECT {", ".join("t." + c.strip() for c in PAGE_COLUMNS.split(","))}, f.score
FROM fused f JOIN {PAGES} t ON t.id = f.id
ORDER BY f.score DESC, f.id LIMIT $2
"""


# Per connection, once, as a hand-written client would set them (the layer sets them per query);
# given at connect time they survive the pool's RESET ALL.
SERVER_SETTINGS = {"hnsw.ef_search": str(EF_SEARCH), "hnsw.iterative_scan": "relaxed_order"}


async def init_connection(conn: asyncpg.Connection) -> None:
    """The codecs the layer's connections have: pgvector's binary ``vector``, jsonb as JSON."""
    await register_vector(conn)
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda text: b"\x01" + text.encode(),
        decoder=lambda data: json.loads(data[1:].decode()),
        schema="pg_catalog",
        format="binary",
    )


class RawPostgres:
    """The raw side on PostgreSQL.

    Calls a service makes one at a time (reads, transactions) take a connection from an asyncpg
    pool and give it back, as the layer's Unit of Work does with its engine's pool; bulk work and
    the bookkeeping use one held connection.
    """

    def __init__(self, args: dict[str, Any], pool_size: int = 1) -> None:
        self.args = args
        self.pool_size = pool_size
        self.conn: asyncpg.Connection | None = None
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> RawPostgres:
        args = {**self.args, "server_settings": SERVER_SETTINGS}
        self.conn = await asyncpg.connect(**args)
        await init_connection(self.conn)
        self.pool = await asyncpg.create_pool(
            **args, min_size=self.pool_size, max_size=self.pool_size, init=init_connection
        )
        return self

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    @property
    def p(self) -> asyncpg.Pool:
        assert self.pool is not None, "open() first"
        return self.pool

    @property
    def c(self) -> asyncpg.Connection:
        assert self.conn is not None, "open() first"
        return self.conn

    # -- ingest ------------------------------------------------------------------------------

    async def reset(self) -> None:
        await self.c.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        await self.c.execute("CHECKPOINT")

    async def ingest(self, batch: Batch) -> None:
        """Upsert the source, replace the chunks of the batch's URLs: one transaction."""
        now = utcnow()
        source = source_values(batch, now)
        source["metadata"] = json.dumps(source["metadata"])
        records = [
            (c.url, c.chunk_number, c.content, c.metadata_json, c.source_id, MODEL, DIMENSION,
             now, batch.vectors[i])
            for i, c in enumerate(batch.chunks)
        ]  # fmt: skip
        async with self.c.transaction():
            await self.c.execute(_UPSERT_SOURCE, *source.values())
            await self.c.execute(f"DELETE FROM {PAGES} WHERE url = ANY($1::text[])", urls_of(batch))
            await self.c.copy_records_to_table(PAGES, records=records, columns=INSERT_COLUMNS)

    async def load(self, batch: Batch) -> None:
        """Rows with explicit ids (corpus index + 1), for the query scenarios."""
        now = utcnow()
        source = source_values(batch, now)
        source["metadata"] = json.dumps(source["metadata"])
        records = [
            (c.index + 1, c.url, c.chunk_number, c.content, c.metadata_json, c.source_id, MODEL,
             DIMENSION, now, batch.vectors[i])
            for i, c in enumerate(batch.chunks)
        ]  # fmt: skip
        async with self.c.transaction():
            await self.c.execute(_UPSERT_SOURCE, *source.values())
            await self.c.copy_records_to_table(
                PAGES, records=records, columns=("id", *INSERT_COLUMNS)
            )

    async def after_load(self) -> None:
        await self.c.execute(
            f"SELECT setval(pg_get_serial_sequence('{PAGES}', 'id'), "
            f"(SELECT coalesce(max(id), 1) FROM {PAGES}))"
        )
        await self.c.execute(f"VACUUM ANALYZE {PAGES}")

    async def digest(self, full: bool) -> Digest:
        rows = await self.c.fetchval(f"SELECT count(*) FROM {PAGES}")
        vectors = await self.c.fetchval(f"SELECT count({EMBEDDING}) FROM {PAGES}")
        sources = await self.c.fetchval("SELECT count(*) FROM archon_sources")
        summary = None
        if full:
            found = await self.c.fetch(
                "SELECT url, chunk_number, content, metadata, source_id, embedding_model, "
                f"embedding_dimension, {EMBEDDING} FROM {PAGES} ORDER BY url, chunk_number"
            )
            summary = checksum(tuple(r) for r in found)
        return Digest(rows, vectors, sources, summary)

    # -- the HNSW index ----------------------------------------------------------------------

    async def hnsw_definitions(self) -> list[tuple[str, str]]:
        """(name, CREATE INDEX statement) of the HNSW indexes on the pages' embedding column."""
        rows = await self.c.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 "
            "AND indexdef ILIKE '%USING hnsw%' AND indexdef LIKE '%' || $2 || '%'",
            PAGES,
            EMBEDDING,
        )
        return [(r["indexname"], r["indexdef"]) for r in rows]

    async def drop_indexes(self, definitions: list[tuple[str, str]]) -> None:
        for name, _ in definitions:
            await self.c.execute(f'DROP INDEX IF EXISTS "{name}"')

    async def create_indexes(self, definitions: list[tuple[str, str]]) -> None:
        await self.c.execute("SET maintenance_work_mem = '512MB'")
        for _, statement in definitions:
            await self.c.execute(statement.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
        await self.c.execute("RESET maintenance_work_mem")

    # -- reads -------------------------------------------------------------------------------

    async def get(self, row_id: int, *, held: bool = False) -> asyncpg.Record | None:
        """One row by id: from the pool (``held``: on the held connection, the floor)."""
        statement = f"SELECT {PAGE_COLUMNS} FROM {PAGES} WHERE id = $1"
        return await (self.c if held else self.p).fetchrow(statement, row_id)

    async def list_rows(self, source_id: str, limit: int) -> list[asyncpg.Record]:
        return await self.p.fetch(
            f"SELECT {PAGE_COLUMNS} FROM {PAGES} WHERE source_id = $1 ORDER BY id LIMIT $2",
            source_id,
            limit,
        )

    async def nearest_ids(self, vector: np.ndarray, k: int) -> list[int]:
        return [r["id"] for r in await self.p.fetch(_NEAREST, vector, k)]

    async def vector(self, vector: np.ndarray, k: int) -> list[asyncpg.Record]:
        return await self.p.fetch(_VECTOR_QUERY, vector, k)

    async def hybrid(self, vector: np.ndarray, text: str, k: int) -> list[asyncpg.Record]:
        return await self.p.fetch(_HYBRID_QUERY, vector, k, text)

    async def plan(self, vector: np.ndarray, k: int) -> str:
        """How PostgreSQL runs the nearest-rows query: the HNSW index, or a full scan."""
        rows = await self.c.fetch("EXPLAIN " + _NEAREST, vector, k)
        text = "\n".join(r[0] for r in rows)
        return "HNSW index scan" if "hnsw" in text.lower() else "sequential scan (planner's choice)"

    # -- transactions ------------------------------------------------------------------------

    async def create_projects(self, count: int) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        now = utcnow()
        await self.c.executemany(
            "INSERT INTO archon_projects (id, title, description, docs, features, data, pinned, "
            "created_at, updated_at) VALUES ($1, $2, '', '[]', '[]', '[]', false, $3, $3)",
            [(pid, f"bench project {i}", now) for i, pid in enumerate(ids)],
        )
        return ids

    async def task_transaction(self, project_id: uuid.UUID, title: str) -> None:
        """Insert a task and touch its project, in one transaction."""
        now = utcnow()
        async with self.p.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO archon_tasks (id, project_id, title, description, status, assignee, "
                "task_order, priority, sources, code_examples, archived, created_at, updated_at) "
                "VALUES ($1, $2, $3, '', 'todo', 'User', 0, 'medium', '[]', '[]', false, $4, $4)",
                uuid.uuid4(),
                project_id,
                title,
                now,
            )
            await conn.execute(
                "UPDATE archon_projects SET updated_at = $2 WHERE id = $1", project_id, now
            )

    async def count_tasks(self) -> int:
        return int(await self.c.fetchval("SELECT count(*) FROM archon_tasks"))

    async def clear_tasks(self) -> None:
        await self.c.execute("TRUNCATE archon_tasks, archon_projects CASCADE")
