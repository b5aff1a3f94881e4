"""SQLite through aiosqlite alone: ``executemany`` in one ``BEGIN IMMEDIATE`` transaction, with the
pragmas the layer sets (WAL, foreign keys, synchronous=NORMAL); vectors as float32 blobs."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

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
    f"VALUES ({', '.join(['?'] * len(SOURCE_COLUMNS))}) ON CONFLICT (source_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in SOURCE_COLUMNS if c not in ("source_id", "created_at")
    )
)


def stored_time(value: Any) -> str:
    """The layer's SQLite timestamps: naive UTC in ISO form."""
    return value.replace(tzinfo=None).isoformat(sep=" ")


class RawSQLite:
    """The raw side on SQLite: one aiosqlite connection, autocommit for reads."""

    def __init__(self, args: dict[str, Any], pool_size: int = 1) -> None:
        self.path = args["database"]
        self.conn: aiosqlite.Connection | None = None

    async def open(self) -> RawSQLite:
        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            await self.conn.execute(f"PRAGMA {pragma}")
        return self

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    @property
    def c(self) -> aiosqlite.Connection:
        assert self.conn is not None, "open() first"
        return self.conn

    async def _all(self, statement: str, params: Any = ()) -> list[Any]:
        async with self.c.execute(statement, params) as cursor:
            return list(await cursor.fetchall())

    async def reset(self) -> None:
        present = {r[0] for r in await self._all("SELECT name FROM sqlite_master")}
        await self.c.execute("BEGIN IMMEDIATE")
        await self.c.execute("PRAGMA defer_foreign_keys = ON")
        for table in TABLES:
            if table in present:
                await self.c.execute(f"DELETE FROM {table}")
        await self.c.execute("COMMIT")

    async def ingest(self, batch: Batch, *, ids: bool = False) -> None:
        """Upsert the source, replace the chunks of the batch's URLs: one transaction."""
        now = stored_time(utcnow())
        source = source_values(batch, now)  # type: ignore[arg-type]
        source["metadata"] = json.dumps(source["metadata"])
        columns = ("id", *INSERT_COLUMNS) if ids else INSERT_COLUMNS
        rows = [
            ((c.index + 1,) if ids else ())
            + (c.url, c.chunk_number, c.content, c.metadata_json, c.source_id, MODEL, DIMENSION,
               now, batch.vectors[i].astype("<f4").tobytes())
            for i, c in enumerate(batch.chunks)
        ]  # fmt: skip
        urls = urls_of(batch)
        insert = (
            f"INSERT INTO {PAGES} ({', '.join(columns)}) VALUES ({', '.join(['?'] * len(columns))})"
        )
        await self.c.execute("BEGIN IMMEDIATE")
        try:
            await self.c.execute(_UPSERT_SOURCE, tuple(source.values()))
            if not ids:
                marks = ", ".join(["?"] * len(urls))
                await self.c.execute(f"DELETE FROM {PAGES} WHERE url IN ({marks})", urls)
            await self.c.executemany(insert, rows)
        except BaseException:
            await self.c.execute("ROLLBACK")
            raise
        await self.c.execute("COMMIT")

    async def load(self, batch: Batch) -> None:
        await self.ingest(batch, ids=True)

    async def after_load(self) -> None:
        await self.c.execute("ANALYZE")

    async def digest(self, full: bool) -> Digest:
        rows = (await self._all(f"SELECT count(*) FROM {PAGES}"))[0][0]
        vectors = (await self._all(f"SELECT count({EMBEDDING}) FROM {PAGES}"))[0][0]
        sources = (await self._all("SELECT count(*) FROM archon_sources"))[0][0]
        summary = None
        if full:
            found = await self._all(
                "SELECT url, chunk_number, content, metadata, source_id, embedding_model, "
                f"embedding_dimension, {EMBEDDING} FROM {PAGES} ORDER BY url, chunk_number"
            )
            summary = checksum(found)
        return Digest(int(rows), int(vectors), int(sources), summary)

    async def get(self, row_id: int, *, held: bool = True) -> Any:
        """One row by id (SQLite has no pool: always the held connection)."""
        found = await self._all(f"SELECT {PAGE_COLUMNS} FROM {PAGES} WHERE id = ?", (row_id,))
        return _decoded(found[0]) if found else None

    async def list_rows(self, source_id: str, limit: int) -> list[Any]:
        found = await self._all(
            f"SELECT {PAGE_COLUMNS} FROM {PAGES} WHERE source_id = ? ORDER BY id LIMIT ?",
            (source_id, limit),
        )
        return [_decoded(row) for row in found]


def _decoded(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*row[:4], json.loads(row[4]), *row[5:])
