"""ExactVectorIndex: float32 blobs in the ``embedding_<dim>`` columns, searched exactly with numpy.

For SQLite, MySQL/MariaDB and PostgreSQL without pgvector. Each process keeps one normalised
matrix per (table, dimension) and serves queries from it while the collection's version in
``archon_vector_versions`` is the one the matrix was read at. Every vector write stores a fresh
random version in the same transaction, so a write from any process (committed or, for the
writing transaction itself, not yet) makes the next query reload. Filters run in SQL; the hits are
re-read from their rows, so a row deleted without touching its vector is never returned.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.errors import DataLayerError, InvalidInputError, translate_errors
from app.filters import OPERATORS
from app.vector.arguments import check_k
from app.vector.port import VectorCapabilities, VectorHit, collection_table, vector_length
from app.vector.sql.base import SqlVectorIndex
from app.vector.sql.common import (
    ENTITIES,
    HIT_FIELDS,
    MAX_DIMENSION,
    dialect_name,
    embedding_column,
    pgvector_extension,
    quote_identifier,
    register_pgvector,
)

VERSIONS_TABLE = "archon_vector_versions"
_BLOB_TYPES = {"postgresql": "bytea", "mysql": "LONGBLOB", "mariadb": "LONGBLOB", "sqlite": "BLOB"}
_LITTLE_ENDIAN_F32 = np.dtype("<f4")


@dataclass(frozen=True)
class _Matrix:
    """Unit-length rows and their ids (ascending), as read at ``version``."""

    version: int
    ids: np.ndarray
    rows: np.ndarray


def encode_blob(vector: np.ndarray) -> bytes:
    """A vector as the bytes stored in a blob column: little-endian float32."""
    return np.asarray(vector, dtype=_LITTLE_ENDIAN_F32).tobytes()


def decode_blobs(blobs: Sequence[bytes], dimension: int) -> np.ndarray:
    """Stored blobs back to a float32 matrix; a blob of the wrong size is an error."""
    size = 4 * dimension
    bad = next((i for i, blob in enumerate(blobs) if len(blob) != size), None)
    if bad is not None:
        raise DataLayerError(
            f"a stored vector in embedding_{dimension} has {len(blobs[bad])} bytes, not {size}"
        )
    flat = np.frombuffer(b"".join(blobs), dtype=_LITTLE_ENDIAN_F32)
    return flat.reshape(len(blobs), dimension).astype(np.float32)


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, best first; ties go to the smaller id."""
    if k < len(scores):
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        part = np.flatnonzero(scores >= kth)  # every tie at the boundary, so ids decide
    else:
        part = np.arange(len(scores))
    order = np.lexsort((ids[part], -scores[part]))
    return part[order][:k]


class ExactVectorIndex(SqlVectorIndex):
    """The ``VectorIndex`` port, exact (recall 1.0), inside the caller's transaction.

    Cosine only; score = 1 - cosine distance. A vector is stored in the row it embeds: upserting a
    vector for a missing row raises ``NotFoundError``. Works on blob columns and, should a
    database have them, on pgvector ``vector`` columns.
    """

    capabilities = VectorCapabilities(
        name="exact",
        metrics=frozenset({"cosine"}),
        filter_operators=OPERATORS,
        hybrid=True,
        max_dimension=MAX_DIMENSION,
        transactional=True,
        approximate=False,
    )

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._matrices: dict[tuple[str, int], _Matrix] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    def _add_dimension_ddl(self, dialect: str, table: str, dimension: int) -> list[str]:
        column = embedding_column(dimension)
        kind = _BLOB_TYPES.get(dialect, "BLOB")
        extension = self._shared.get("extension")
        if extension and any("vector" in k for k in self._dimensions.get(table, {}).values()):
            kind = f"{quote_identifier(extension[0])}.vector({dimension})"  # one kind per table
        return [f"ALTER TABLE {table} ADD COLUMN {column} {kind}"]

    async def ensure_collection(
        self, collection: str, dimension: int, metric: str = "cosine"
    ) -> None:
        """Make sure ``embedding_<dimension>`` exists (a blob column; ``vector`` on pgvector)."""
        async with self._scope() as session:
            await self._prepare_connection(session)  # learns whether pgvector is there
        await super().ensure_collection(collection, dimension, metric)

    def _encode(self, kind: str, vector: np.ndarray) -> Any:
        return vector if "vector" in kind else encode_blob(vector)

    def _encode_many(self, kind: str, matrix: np.ndarray) -> list[Any]:
        if "vector" in kind:
            return list(matrix)
        data = encode_blob(matrix)  # one conversion, then a slice per row
        size = 4 * matrix.shape[1]
        return [data[i * size : (i + 1) * size] for i in range(len(matrix))]

    async def _prepare_connection(self, session: AsyncSession) -> None:
        if dialect_name(session) != "postgresql":
            return
        if "extension" not in self._shared:
            self._shared["extension"] = await pgvector_extension(session)
        if self._shared["extension"] is not None:
            await register_pgvector(session, self._shared["extension"][0])

    # -- versions --------------------------------------------------------------------------

    async def _written(self, session: AsyncSession, collection: str) -> None:
        version = secrets.randbits(62)
        params = {"c": collection, "v": version}
        with translate_errors("recording the vector version"):
            result = await session.execute(
                sa.text(f"UPDATE {VERSIONS_TABLE} SET version = :v WHERE collection = :c"), params
            )
            if not getattr(result, "rowcount", 0):
                await session.execute(
                    sa.text(f"INSERT INTO {VERSIONS_TABLE} (collection, version) VALUES (:c, :v)"),
                    params,
                )

    async def _version(self, session: AsyncSession, collection: str) -> int | None:
        query = sa.text(f"SELECT version FROM {VERSIONS_TABLE} WHERE collection = :c")
        with translate_errors(f"reading {VERSIONS_TABLE} (missing? run `archon-db migrate`)"):
            value = (await session.execute(query, {"c": collection})).scalar()
        return None if value is None else int(value)

    # -- the matrix ------------------------------------------------------------------------

    async def _matrix(
        self, session: AsyncSession, collection: str, dimension: int, *, reload: bool = False
    ) -> _Matrix:
        table = collection_table(collection)
        key = (table, dimension)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            version = await self._version(session, collection)
            cached = self._matrices.get(key)
            if not reload and cached is not None and version is not None:
                if cached.version == version:
                    return cached
            matrix = await self._load(session, table, dimension, version)
            if version is not None:
                self._matrices[key] = matrix
            return matrix

    async def _load(
        self, session: AsyncSession, table: str, dimension: int, version: int | None
    ) -> _Matrix:
        column = embedding_column(dimension)
        await self._prepare_connection(session)
        statement = sa.text(
            f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY id"
        )
        with translate_errors(f"reading the vectors of {table}"):
            rows = (await session.execute(statement)).all()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        if not rows:
            matrix = np.zeros((0, dimension), dtype=np.float32)
        elif isinstance(rows[0][1], bytes | bytearray | memoryview):
            matrix = decode_blobs([bytes(row[1]) for row in rows], dimension)
        else:  # pgvector values through the codec
            matrix = np.stack([np.asarray(row[1].to_numpy(), dtype=np.float32) for row in rows])
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return _Matrix(version or 0, ids, matrix / norms)

    # -- queries ---------------------------------------------------------------------------

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[VectorHit]:
        """The ``k`` rows nearest to ``vector`` by cosine, matching ``filters``, best first."""
        k = check_k(k)
        if k < 0:
            raise InvalidInputError(f"k must be >= 0, got {k}")
        table = collection_table(collection)
        dimension = vector_length(vector)
        async with self._scope() as session:
            query_vector = await self._query_vector(session, table, vector)
            query_vector /= np.linalg.norm(query_vector)
            if k == 0:
                return []
            where = None
            if filters or embedding_model is not None:
                where = self.filter_clause(collection, filters, embedding_model)
            search = partial(self._search, session, collection, dimension, query_vector, k, where)
            hits = await search(await self._matrix(session, collection, dimension))
            if hits is None:  # stale: read the vectors again, as this transaction sees them
                fresh = await self._matrix(session, collection, dimension, reload=True)
                hits = await search(fresh, strict=False)
            assert hits is not None
            return hits

    async def _search(
        self,
        session: AsyncSession,
        collection: str,
        dimension: int,
        query_vector: np.ndarray,
        k: int,
        where: Any,
        matrix: _Matrix,
        *,
        strict: bool = True,
    ) -> list[VectorHit] | None:
        """Top-k from the matrix, read back from the rows; None when the matrix proved stale.

        Not ``strict`` (a matrix just read in this transaction), rows that a concurrent commit
        removed meanwhile are dropped from the answer instead.
        """
        positions = np.arange(len(matrix.ids))
        if where is not None:
            allowed = await self._matching_ids(session, collection, dimension, where)
            positions = positions[np.isin(matrix.ids, allowed, assume_unique=True)]
            if strict and len(positions) < len(allowed):
                return None  # rows with vectors the matrix lacks
        if len(positions) == 0:
            return []
        # float32 rounding may stray past 1: keep cosine within its range
        scores = np.clip(matrix.rows[positions] @ query_vector, -1.0, 1.0)
        best = top_k(scores, matrix.ids[positions], k)
        best_scores = {
            int(rid): float(score)
            for rid, score in zip(matrix.ids[positions[best]], scores[best], strict=True)
        }
        rows = await self._rows(session, collection, dimension, list(best_scores))
        if strict and len(rows) < len(best_scores):
            return None  # a row was deleted (or its vector cleared) behind the matrix
        return [self.hit(rows[rid], score) for rid, score in best_scores.items() if rid in rows]

    async def _matching_ids(
        self, session: AsyncSession, collection: str, dimension: int, where: Any
    ) -> np.ndarray:
        table = ENTITIES[collection].__table__
        column: Any = sa.literal_column(embedding_column(dimension))
        statement = sa.select(table.c.id).where(column.is_not(None), where)
        with translate_errors(f"filtering {table.name}"):
            ids = (await session.execute(statement)).scalars().all()
        return np.fromiter(ids, dtype=np.int64, count=len(ids))

    async def _rows(
        self, session: AsyncSession, collection: str, dimension: int, ids: list[int]
    ) -> dict[int, Any]:
        table = ENTITIES[collection].__table__
        column: Any = sa.literal_column(embedding_column(dimension))
        fields = [table.c.id, *(table.c[name] for name in HIT_FIELDS)]
        statement = sa.select(*fields).where(table.c.id.in_(ids), column.is_not(None))
        with translate_errors(f"reading {table.name}"):
            return {int(row.id): row for row in (await session.execute(statement)).all()}
