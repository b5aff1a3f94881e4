"""An external store's records as the rows define them: the vector in the row, its fields.

A record in Chroma or Weaviate is derived from its row, never the other way round: its id is the
row id, its vector the row's ``embedding_<dim>`` value, its metadata the fields filters address
(``source_id``, ``url``, ``chunk_number``, ``embedding_model``, ``metadata``) and its document the
row's ``content``. Applying the outbox, reconciling and rebuilding all read records from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import translate_errors
from app.vector.port import VectorRecord, collection_table
from app.vector.sql.common import ENTITIES, HIT_FIELDS, embedding_column, embedding_columns
from app.vector.sql.exact import ExactVectorIndex, decode_blobs

PAGE = 1000
ID_BATCH = 1000


@dataclass(frozen=True, slots=True)
class RowVector:
    """One row's vector and the record a store holds for it."""

    id: int
    dimension: int
    vector: np.ndarray
    metadata: dict[str, Any]
    document: str | None

    def record(self) -> VectorRecord:
        vector: Any = self.vector
        return VectorRecord(self.id, vector, self.metadata, self.document)


def fields_of(row: Any) -> dict[str, Any]:
    """The metadata a store holds for a row (what filters address, as the SQL indexes see it)."""
    metadata = {name: getattr(row, name) for name in HIT_FIELDS}
    metadata["metadata"] = dict(metadata["metadata"] or {})
    return metadata


def chunk_fields(chunk: Any) -> dict[str, Any]:
    """``fields_of`` for an entity about to be written (the same values its row will hold)."""
    state = chunk.__dict__
    return {
        "source_id": state.get("source_id"),
        "url": state.get("url"),
        "chunk_number": state.get("chunk_number"),
        "embedding_model": state.get("embedding_model"),
        "metadata": dict(state.get("metadata_") or {}),
    }


def as_vector(value: Any, dimension: int) -> np.ndarray:
    """A stored vector (float32 blob, or pgvector's value) as a float32 array."""
    if isinstance(value, bytes | bytearray | memoryview):
        return decode_blobs([bytes(value)], dimension)[0]
    to_numpy = getattr(value, "to_numpy", None)
    data = to_numpy() if to_numpy is not None else value
    return np.asarray(data, dtype=np.float32)


class RowReader:
    """Reads records from the rows in a session (pgvector's codec registered when needed)."""

    def __init__(self, rows: ExactVectorIndex, session: AsyncSession) -> None:
        self.rows = rows.bind(session)
        self.session = session

    async def dimensions(self, collection: str) -> list[int]:
        """The lengths the collection's table has columns for."""
        return sorted(await embedding_columns(self.session, collection_table(collection)))

    async def by_ids(self, collection: str, ids: Sequence[int]) -> dict[int, RowVector]:
        """The rows of ``ids`` that hold a vector (absent ids: no row, or no vector)."""
        found: dict[int, RowVector] = {}
        dimensions = await self.dimensions(collection)
        for start in range(0, len(ids), ID_BATCH):
            chunk = list(ids[start : start + ID_BATCH])
            for dimension in dimensions:
                where = ENTITIES[collection].__table__.c.id.in_(chunk)
                for row in await self._select(collection, dimension, where):
                    found[int(row.id)] = _row_vector(row, dimension)
        return found

    async def pages(self, collection: str, dimension: int) -> AsyncIterator[list[RowVector]]:
        """Every row holding a vector of ``dimension``, by id, a page at a time."""
        after = -1
        table = ENTITIES[collection].__table__
        while True:
            rows = await self._select(collection, dimension, table.c.id > after, limit=PAGE)
            if not rows:
                return
            yield [_row_vector(row, dimension) for row in rows]
            after = int(rows[-1].id)

    async def ids(self, collection: str, dimension: int) -> np.ndarray:
        """The ids of the rows holding a vector of ``dimension``, ascending."""
        table = ENTITIES[collection].__table__
        column: Any = sa.literal_column(embedding_column(dimension))
        statement = sa.select(table.c.id).where(column.is_not(None)).order_by(table.c.id)
        with translate_errors(f"reading the ids of {table.name}"):
            found = (await self.session.execute(statement)).scalars().all()
        return np.fromiter(found, dtype=np.int64, count=len(found))

    async def _select(
        self, collection: str, dimension: int, where: Any, *, limit: int | None = None
    ) -> list[Any]:
        table = ENTITIES[collection].__table__
        column: Any = sa.literal_column(embedding_column(dimension))
        fields = [table.c.id, *(table.c[name] for name in HIT_FIELDS), table.c.content]
        statement = (
            sa.select(*fields, column.label("vector"))
            .where(column.is_not(None), where)
            .order_by(table.c.id)
        )
        if limit is not None:
            statement = statement.limit(limit)
        await self.rows._prepare_connection(self.session)
        with translate_errors(f"reading the vectors of {table.name}"):
            return list((await self.session.execute(statement)).all())


def _row_vector(row: Any, dimension: int) -> RowVector:
    return RowVector(
        int(row.id), dimension, as_vector(row.vector, dimension), fields_of(row), row.content
    )
