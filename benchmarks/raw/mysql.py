"""MariaDB / MySQL through aiomysql alone: ``executemany`` (PyMySQL folds it into multi-row
INSERTs), vectors as little-endian float32 blobs as the exact index stores them."""

from __future__ import annotations

import json
from typing import Any

import aiomysql

from benchmarks.data import DIMENSION, Batch
from benchmarks.raw.common import (
    EMBEDDING,
    INSERT_COLUMNS,
    MODEL,
    PAGE_COLUMNS,
    PAGES,
    SOURCE_COLUMNS,
    TABLES,
    Digest,
    checksum,
    source_values,
    urls_of,
    utcnow,
)

_UPSERT_SOURCE = (
    f"INSERT INTO archon_sources ({', '.join(SOURCE_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(SOURCE_COLUMNS))}) ON DUPLICATE KEY UPDATE "
    + ", ".join(
        f"{c} = VALUES({c})" for c in SOURCE_COLUMNS if c not in ("source_id", "created_at")
    )
)
_INSERT = (
    f"INSERT INTO {PAGES} ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(INSERT_COLUMNS))})"
)


def naive(value: Any) -> Any:
    """MySQL has no time zones: the layer stores naive UTC."""
    return value.replace(tzinfo=None) if hasattr(value, "tzinfo") else value


class RawMySQL:
    """The raw side on MariaDB / MySQL: reads from an aiomysql pool (autocommit), bulk work on
    one held connection."""

    def __init__(self, args: dict[str, Any], pool_size: int = 1) -> None:
        self.args = args
        self.pool_size = pool_size
        self.conn: aiomysql.Connection | None = None
        self.pool: aiomysql.Pool | None = None

    async def open(self) -> RawMySQL:
        self.conn = await aiomysql.connect(**self.args, autocommit=True)
        self.pool = await aiomysql.create_pool(
            **self.args, autocommit=True, minsize=self.pool_size, maxsize=self.pool_size
        )
        return self

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()
            self.pool = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @property
    def c(self) -> aiomysql.Connection:
        assert self.conn is not None, "open() first"
        return self.conn

    async def _run(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        async with self.c.cursor() as cursor:
            await cursor.execute(statement, params)
            return list(await cursor.fetchall())

    async def reset(self) -> None:
        async with self.c.cursor() as cursor:
            await cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in TABLES:
                await cursor.execute(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = %s",
                    (table,),
                )
                if (await cursor.fetchone())[0]:
                    await cursor.execute(f"TRUNCATE TABLE {table}")
            await cursor.execute("SET FOREIGN_KEY_CHECKS = 1")

    async def ingest(self, batch: Batch, *, ids: bool = False) -> None:
        """Upsert the source, replace the chunks of the batch's URLs: one transaction."""
        now = naive(utcnow())
        source = source_values(batch, now)
        source["metadata"] = json.dumps(source["metadata"])
        rows = [
            ((c.index + 1,) if ids else ())
            + (c.url, c.chunk_number, c.content, c.metadata_json, c.source_id, MODEL, DIMENSION,
               now, batch.vectors[i].astype("<f4").tobytes())
            for i, c in enumerate(batch.chunks)
        ]  # fmt: skip
        urls = urls_of(batch)
        statement = _INSERT.replace("(url,", "(id, url,").replace("VALUES (", "VALUES (%s, ")
        await self.c.begin()
        async with self.c.cursor() as cursor:
            await cursor.execute(_UPSERT_SOURCE, tuple(source.values()))
            if not ids:
                marks = ", ".join(["%s"] * len(urls))
                await cursor.execute(f"DELETE FROM {PAGES} WHERE url IN ({marks})", urls)
            await cursor.executemany(statement if ids else _INSERT, rows)
        await self.c.commit()

    async def load(self, batch: Batch) -> None:
        await self.ingest(batch, ids=True)

    async def after_load(self) -> None:
        await self._run(f"ANALYZE TABLE {PAGES}")

    async def digest(self, full: bool) -> Digest:
        rows = (await self._run(f"SELECT count(*) FROM {PAGES}"))[0][0]
        vectors = (await self._run(f"SELECT count({EMBEDDING}) FROM {PAGES}"))[0][0]
        sources = (await self._run("SELECT count(*) FROM archon_sources"))[0][0]
        summary = None
        if full:
            found = await self._run(
                "SELECT url, chunk_number, content, metadata, source_id, embedding_model, "
                f"embedding_dimension, {EMBEDDING} FROM {PAGES} ORDER BY url, chunk_number"
            )
            summary = checksum(found)
        return Digest(int(rows), int(vectors), int(sources), summary)

    async def get(self, row_id: int, *, held: bool = False) -> Any:
        """One row by id: from the pool (``held``: on the held connection, the floor)."""
        statement = f"SELECT {PAGE_COLUMNS} FROM {PAGES} WHERE id = %s"
        if held:
            return await self._get(self.c, statement, row_id)
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            return await self._get(conn, statement, row_id)

    @staticmethod
    async def _get(conn: aiomysql.Connection, statement: str, row_id: int) -> Any:
        async with conn.cursor() as cursor:
            await cursor.execute(statement, (row_id,))
            row = await cursor.fetchone()
        return _decoded(row) if row else None

    async def list_rows(self, source_id: str, limit: int) -> list[Any]:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(
                f"SELECT {PAGE_COLUMNS} FROM {PAGES} WHERE source_id = %s ORDER BY id LIMIT %s",
                (source_id, limit),
            )
            rows = await cursor.fetchall()
        return [_decoded(row) for row in rows]


def _decoded(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # The JSON column comes back as text; the layer hands out dicts.
    return (*row[:4], json.loads(row[4]), *row[5:])
