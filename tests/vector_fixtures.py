"""Fixtures and helpers of the vector, search and ingest suites.

``vector_layer``: a migrated ``DataLayer`` on the backend, with pgvector where the database has it
and the exact index elsewhere. ``add_chunks`` writes rows with plain SQL (never through the code
under test), so the SQL-backed indexes have rows to hold vectors. ``clustered`` makes vectors that
look like real embeddings (points around a few hundred centres), where approximate search has to
work for its recall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain import CodeExample, CrawledPage, Source
from tests.support import Backend, LayerFactory

if TYPE_CHECKING:
    from app.bootstrap import DataLayer

ENTITIES: dict[str, Any] = {"crawled_pages": CrawledPage, "code_examples": CodeExample}
INSERT_BATCH = 2000


def vector_backend_for(backend: Backend) -> str:
    """The index a layer on ``backend`` should use: pgvector where it can, exact elsewhere."""
    return "pgvector" if backend.has_pgvector else "exact"


@pytest.fixture
async def vector_layer(backend: Backend, make_layer: LayerFactory) -> DataLayer:
    return await make_layer(vector_database=vector_backend_for(backend))


async def add_source(engine: AsyncEngine, source_id: str = "src-a", **values: Any) -> str:
    """One ``archon_sources`` row, by plain SQL."""
    row = {"source_id": source_id, "title": values.pop("title", source_id), **values}
    async with engine.begin() as conn:
        await conn.execute(sa.insert(Source.__table__), [row])
    return source_id


async def add_chunks(
    engine: AsyncEngine, collection: str, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Chunk rows (``url``, ``chunk_number``, ``content``, ``source_id``, ``metadata``...) by
    plain SQL; their ids, in order. Sources named by the rows are created when missing."""
    entity = ENTITIES[collection]
    table = entity.__table__
    prepared = []
    for i, row in enumerate(rows):
        values = {"chunk_number": 0, "content": f"chunk {i}", "metadata": {}, **row}
        values.setdefault("url", f"https://example.com/{collection}/{i}")
        if collection == "code_examples":
            values.setdefault("summary", f"summary {i}")
        prepared.append(values)
    sources = sorted({values["source_id"] for values in prepared})
    async with engine.begin() as conn:
        present = sa.select(Source.__table__.c.source_id).where(
            Source.__table__.c.source_id.in_(sources)
        )
        known = set((await conn.execute(present)).scalars())
        missing = [{"source_id": s, "title": s} for s in sources if s not in known]
        if missing:
            await conn.execute(sa.insert(Source.__table__), missing)
        for start in range(0, len(prepared), INSERT_BATCH):
            await conn.execute(sa.insert(table), prepared[start : start + INSERT_BATCH])
        urls = [values["url"] for values in prepared]
        found: dict[tuple[str, int], int] = {}
        for start in range(0, len(urls), INSERT_BATCH):
            chunk = urls[start : start + INSERT_BATCH]
            result = await conn.execute(
                sa.select(table.c.id, table.c.url, table.c.chunk_number).where(
                    table.c.url.in_(chunk)
                )
            )
            found.update({(row.url, row.chunk_number): row.id for row in result})
    return [found[(values["url"], values["chunk_number"])] for values in prepared]


def clustered(n: int, dimension: int, *, centres: int = 200, seed: int = 0) -> np.ndarray:
    """``n`` float32 vectors around ``centres`` random directions (a stand-in for embeddings)."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dimension))
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    members = middle[rng.integers(0, centres, size=n)]
    noise = rng.normal(scale=0.6 / np.sqrt(dimension), size=(n, dimension))
    return (members + noise).astype(np.float32)


def brute_force(vectors: np.ndarray, ids: Sequence[int], query: np.ndarray, k: int) -> list[int]:
    """The exact cosine top-``k`` ids (ties to the smaller id)."""
    if len(ids) == 0:
        return []
    rows = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = rows @ (query / np.linalg.norm(query))
    order = np.lexsort((np.asarray(ids), -scores))
    return [int(ids[i]) for i in order[:k]]
