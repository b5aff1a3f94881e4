"""The target's vector index around a copy: room for every length first, rebuilt at the end.

Before the rows: the target gets an ``embedding_<dim>`` column for every length the source has
(``ensure_collection``, as ``archon-db vectors add-dimension`` does), and on pgvector the chunk
tables' HNSW indexes are dropped, so the rows go in without updating the graph row by row; they
are built once at the end (a bulk build is several times faster than 50,000 inserts into it).
After the rows: the HNSW indexes are created, the exact index's cache versions are renewed (its
in-process matrices reload), and an external store (Chroma, Weaviate) is rebuilt from the rows.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import translate_errors
from app.transfer.tables import TableSpec, table_columns, vector_columns
from app.vector.factory import store_feed
from app.vector.outbox.reconcile import Progress
from app.vector.port import COLLECTIONS
from app.vector.sql.common import pgvector_extension
from app.vector.sql.exact import VERSIONS_TABLE
from app.vector.sql.pgvector import hnsw_index_ddl

_COLLECTION_OF = {table: collection for collection, table in COLLECTIONS.items()}
BUILD_MEMORY = "256MB"  # maintenance_work_mem for the HNSW build, this session only


async def resolved_index(layer: Any) -> Any:
    """The layer's concrete vector index (chosen now when chosen on first use)."""
    resolve = getattr(layer.vector_index, "resolve", None)
    return await resolve() if resolve is not None else layer.vector_index


async def index_name(layer: Any) -> str:
    """What serves the target's vector search: pgvector, exact, chroma or weaviate."""
    return str((await resolved_index(layer)).capabilities.name)


async def target_vectors(layer: Any, spec: TableSpec) -> dict[int, str]:
    """The target table's embedding columns (dimension -> SQL type), adding those the source
    has and the target lacks."""
    async with AsyncSession(layer.engine) as session:
        present = await table_columns(session, spec.name)
    lacking = [dim for dim in spec.vectors if dim not in vector_columns(present)]
    collection = _COLLECTION_OF.get(spec.name)
    if lacking and collection is not None:
        index = await resolved_index(layer)
        feed = store_feed(index, layer.engine)
        for dimension in lacking:
            await (feed or index).ensure_collection(collection, dimension)
        async with AsyncSession(layer.engine) as session:
            present = await table_columns(session, spec.name)
    return {dim: present[column] for dim, column in vector_columns(present).items()}


async def _hnsw_statements(session: AsyncSession, table: str) -> list[tuple[str, str]]:
    """(index name, CREATE INDEX) of each pgvector column's HNSW index on ``table``."""
    extension = await pgvector_extension(session)
    if extension is None:
        return []
    found = []
    present = await table_columns(session, table)
    for dimension, column in vector_columns(present).items():
        kind = present[column]
        ddl = hnsw_index_ddl(table, dimension, extension[0]) if "vector" in kind else None
        if ddl is not None:
            found.append((f"idx_{table}_{column}_hnsw", ddl))
    return found


async def drop_hnsw(layer: Any) -> None:
    """Drop the chunk tables' HNSW indexes on a pgvector target (built again by ``finish``)."""
    if layer.dialect_name != "postgresql":
        return
    async with AsyncSession(layer.engine) as session, session.begin():
        with translate_errors("dropping the HNSW indexes for the copy"):
            for table in COLLECTIONS.values():
                for name, _ in await _hnsw_statements(session, table):
                    await session.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))


async def build_hnsw(layer: Any) -> list[str]:
    """Create the chunk tables' HNSW indexes on a pgvector target; the names made."""
    if layer.dialect_name != "postgresql":
        return []
    made = []
    async with AsyncSession(layer.engine) as session, session.begin():
        with translate_errors("building the HNSW indexes"):
            await session.execute(sa.text(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'"))
            for table in COLLECTIONS.values():
                for name, ddl in await _hnsw_statements(session, table):
                    await session.execute(sa.text(ddl))
                    made.append(name)
    return made


async def renew_versions(layer: Any) -> None:
    """New cache versions for the exact index: every process reloads its matrices."""
    async with AsyncSession(layer.engine) as session, session.begin():
        with translate_errors("renewing the vector versions"):
            if not await table_columns(session, VERSIONS_TABLE):
                return
            for collection in COLLECTIONS:
                await session.execute(
                    sa.text(f"UPDATE {VERSIONS_TABLE} SET version = :v WHERE collection = :c"),
                    {"v": secrets.randbits(62), "c": collection},
                )


async def rebuild_store(layer: Any, on_progress: Progress | None = None) -> int | None:
    """Rebuild an external store from the copied rows; records written (None: no store)."""
    if await layer.vector_feed() is None:
        return None
    reports = await layer.rebuild_vectors(on_progress=on_progress)
    return sum(report.records for report in reports)
