"""SqlVectorIndex: what ``PgVectorIndex`` and ``ExactVectorIndex`` share.

A row holds at most one vector, in the ``embedding_<dim>`` column its length picks: writing one
clears the row's other embedding columns, and deleting a vector clears its column (the row stays).
A vector is written into an existing row only; a new length gets its column on
``ensure_collection``. Unbound, each call runs in a short transaction of its own; ``bind(uow)``
gives the Unit of Work's view, whose writes commit or roll back with the rows.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.errors import (
    DataLayerError,
    InvalidInputError,
    NotFoundError,
    UnsupportedFeatureError,
    translate_errors,
)
from app.repositories import audit
from app.repositories.bulk_insert import insert_with_columns
from app.repositories.validation import columns_of
from app.vector.arguments import check_ids, check_records
from app.vector.port import (
    RecordId,
    VectorCapabilities,
    VectorHit,
    VectorRecord,
    collection_table,
    vector_length,
)
from app.vector.sql.common import (
    ENTITIES,
    ENTITIES_BY_TABLE,
    HIT_FIELDS,
    add_dimension_hint,
    as_matrix,
    dialect_name,
    embedding_column,
    embedding_columns,
    has_vector,
    permission_denied,
    row_ids,
    sql_filter,
)
from app.vector.sql.writes import update_vectors

_ID_BATCH = 1000


class SqlVectorIndex:
    """Base of the SQL-backed adapters: sessions, dimensions, and the writes both share.

    Unbound, each call runs in its own short transaction on ``engine``; ``bind(uow)`` returns a
    view that works in the Unit of Work's session and transaction instead.
    """

    capabilities: VectorCapabilities

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._session: AsyncSession | None = None
        # Shared by every bound view (bind copies the references, not the dicts).
        self._dimensions: dict[str, dict[int, str]] = {}
        self._shared: dict[str, Any] = {}

    # -- sessions --------------------------------------------------------------------------

    def bind(self, target: Any) -> Self:
        """A view of this index working in ``target``'s transaction (a Unit of Work or session)."""
        session = target if isinstance(target, AsyncSession) else target.session
        view = copy.copy(self)
        view._session = session
        return view

    @asynccontextmanager
    async def _scope(self) -> AsyncIterator[AsyncSession]:
        if self._session is not None:
            yield self._session
            return
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            with translate_errors("vector index"):
                async with session.begin():
                    yield session

    # -- dimensions ------------------------------------------------------------------------

    async def _columns(self, session: AsyncSession, table: str, refresh: bool = False) -> dict:
        if refresh or table not in self._dimensions:
            self._dimensions[table] = await embedding_columns(session, table)
        return self._dimensions[table]

    async def _query_vector(
        self, session: AsyncSession, table: str, vector: Sequence[float]
    ) -> np.ndarray:
        """A query vector checked against ``table``'s embedding columns, as float32."""
        await self._require_column(session, table, vector_length(vector))
        return as_matrix([vector], len(vector))[0]

    async def _require_column(self, session: AsyncSession, table: str, dimension: int) -> str:
        """The column for ``dimension``; ``InvalidInputError`` naming the lengths there are."""
        column = embedding_column(dimension)
        if dimension in await self._columns(session, table):
            return column
        if dimension in await self._columns(session, table, refresh=True):
            return column
        known = ", ".join(map(str, sorted(self._dimensions[table]))) or "none"
        raise InvalidInputError(
            f"wrong vector length: expected one of {known}, received {dimension}. "
            f"To store {dimension}-length vectors, ensure_collection(..., {dimension}) or run "
            f"{add_dimension_hint(dimension)}"
        )

    def has_dimension(self, collection: str, dimension: int) -> bool:
        """Whether ``embedding_<dimension>`` is known to exist (as last read; no round trip)."""
        return dimension in self._dimensions.get(collection_table(collection), {})

    async def ensure_collection(
        self, collection: str, dimension: int, metric: str = "cosine"
    ) -> None:
        """Make sure ``embedding_<dimension>`` exists on the collection's table (adds it once)."""
        if metric != "cosine":
            raise UnsupportedFeatureError(
                f"{type(self).__name__} searches by cosine only (Archon's indexes); got {metric!r}"
            )
        table = collection_table(collection)
        embedding_column(dimension)
        async with self._scope() as session:
            if dimension in await self._columns(session, table, refresh=True):
                return
            statements = self._add_dimension_ddl(dialect_name(session), table, dimension)
            if dialect_name(session) in ("mysql", "mariadb"):
                # MySQL commits implicitly before DDL: never inside the caller's transaction.
                await _run_ddl_apart(self.engine, table, dimension, statements)
            else:
                await _run_ddl(session, table, dimension, statements)
            self._dimensions.pop(table, None)

    def _add_dimension_ddl(self, dialect: str, table: str, dimension: int) -> list[str]:
        raise NotImplementedError

    # -- writes ----------------------------------------------------------------------------

    async def upsert(self, collection: str, records: Sequence[VectorRecord]) -> int:
        """Write each record's vector into its row (the row must exist); last one wins."""
        records = check_records(records)
        table = collection_table(collection)
        latest = dict(zip(row_ids([r.id for r in records]), records, strict=True))
        if not latest:
            return 0
        groups: dict[int, list[tuple[int, VectorRecord]]] = {}
        for rid, record in latest.items():
            groups.setdefault(vector_length(record.vector), []).append((rid, record))
        async with self._scope() as session:
            prepared = []
            for dimension, items in groups.items():
                await self._require_column(session, table, dimension)
                matrix = as_matrix([record.vector for _, record in items], dimension)
                prepared.append((dimension, items, matrix))
            await self._check_rows_exist(session, table, list(latest))
            for dimension, items, matrix in prepared:
                await self._write(session, table, dimension, items, matrix)
            await self._written(session, collection)
            fields = [embedding_column(dimension) for dimension in groups]
            audit.record(session, table, "vector_upsert", latest, fields=fields)
        return len(latest)

    async def _check_rows_exist(self, session: AsyncSession, table: str, ids: list[int]) -> None:
        """The rows exist now, and stay until commit: a locking read (a snapshot could still
        show a row a concurrent transaction deleted; its UPDATE would then change nothing)."""
        entity = ENTITIES_BY_TABLE[table]
        found: set[int] = set()
        ids = sorted(ids)  # one lock order for every writer
        for start in range(0, len(ids), _ID_BATCH):
            chunk = ids[start : start + _ID_BATCH]
            query = sa.select(entity.id).where(entity.id.in_(chunk)).with_for_update()
            with translate_errors(f"reading {table}"):
                result = await session.execute(query)
            found.update(result.scalars())
        missing = [rid for rid in ids if rid not in found]
        if missing:
            raise NotFoundError(
                f"no {table} rows with ids {missing[:10]}{' ...' if len(missing) > 10 else ''}: "
                "a vector is stored in its row, so add the rows (same Unit of Work) first"
            )

    async def _write(
        self,
        session: AsyncSession,
        table: str,
        dimension: int,
        items: list[tuple[int, VectorRecord]],
        matrix: np.ndarray,
    ) -> None:
        """One set-based UPDATE per batch of rows (``vector_writes``), never one per row."""
        column = embedding_column(dimension)
        others = [embedding_column(d) for d in self._dimensions[table] if d != dimension]
        kind = self._dimensions[table][dimension]
        values = self._encode_many(kind, matrix)
        rows = [
            (rid, values[i], record.metadata.get("embedding_model"))
            for i, (rid, record) in enumerate(items)
        ]
        await self._prepare_connection(session)
        connection = await session.connection()
        with translate_errors(f"writing vectors to {table}.{column}"):
            await update_vectors(connection, table, column, kind, others, dimension, rows)

    def _encode_many(self, kind: str, matrix: np.ndarray) -> list[Any]:
        """The matrix's rows as the column takes them (one value per row)."""
        return [self._encode(kind, row) for row in matrix]

    async def add_with_vectors(
        self,
        collection: str,
        entities: Sequence[Any],
        matrix: np.ndarray | None,
        present: Sequence[bool] | None = None,
        *,
        bump: bool = True,
    ) -> None:
        """Insert validated, new ``entities`` with their vectors in the same row write.

        ``matrix`` holds the vectors of the entities whose ``present`` flag is set (all when
        ``present`` is None), in order; ids are set on the entities. Needs
        ``bulk_insert.can_insert_with_columns``. ``bump=False`` leaves the write unannounced:
        call ``written`` before the transaction ends.
        """
        table = collection_table(collection)
        async with self._scope() as session:
            extra: dict[str, list[Any]] = {}
            if matrix is not None and len(matrix):
                dimension = matrix.shape[1]
                column = await self._require_column(session, table, dimension)
                encoded = iter(self._encode_many(self._dimensions[table][dimension], matrix))
                flags = present if present is not None else [True] * len(entities)
                extra[column] = [next(encoded) if flag else None for flag in flags]
                await self._prepare_connection(session)
            with translate_errors(f"adding rows to {table}"):
                columns = columns_of(ENTITIES_BY_TABLE[table])
                await insert_with_columns(session, columns, entities, extra)
            if bump and extra:
                await self._written(session, collection)
            if audit.recorder_of(session) is not None:
                fields = audit.given_fields(columns.attr_of, entities) | set(extra)
                ids = [entity.id for entity in entities]
                audit.record(session, table, "insert", ids, fields=fields)

    async def written(self, collection: str) -> None:
        """Announce vector writes made in this transaction (``add_with_vectors(bump=False)``)."""
        async with self._scope() as session:
            await self._written(session, collection)

    def _encode(self, kind: str, vector: np.ndarray) -> Any:
        raise NotImplementedError

    async def _prepare_connection(self, session: AsyncSession) -> None:
        """Hook: e.g. register pgvector's binary codec on the connection."""

    async def _written(self, session: AsyncSession, collection: str) -> None:
        """Hook: called in the same transaction after every write (exact bumps its version)."""

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Clear the vectors of these rows (the rows stay); how many rows had one."""
        ids = check_ids(ids)
        table = collection_table(collection)
        keys = sorted(set(row_ids(ids)))
        if not keys:
            return 0
        entity = ENTITIES_BY_TABLE[table]
        total = 0
        async with self._scope() as session:
            for start in range(0, len(keys), _ID_BATCH):
                where = entity.id.in_(keys[start : start + _ID_BATCH])
                total += await self._clear(session, table, where)
            if total:
                await self._written(session, collection)
        return total

    async def delete_where(self, collection: str, filters: Mapping[str, Any]) -> int:
        """Clear the vectors of every row matching ``filters``; how many rows had one."""
        table = collection_table(collection)
        async with self._scope() as session:
            where = self.filter_clause(collection, filters)
            total = await self._clear(session, table, where)
            if total:
                await self._written(session, collection)
        return total

    async def _clear(self, session: AsyncSession, table: str, where: Any) -> int:
        columns = [embedding_column(d) for d in sorted(await self._columns(session, table))]
        if not columns:
            return 0
        entity = ENTITIES_BY_TABLE[table]
        # Select, then clear by id: SQL cannot SET columns the models do not declare through
        # the ORM table, and MySQL refuses a subquery on the table being updated.
        chosen = sa.select(entity.id).where(where, has_vector(columns)).with_for_update()
        with translate_errors(f"clearing vectors in {table}"):
            ids = list((await session.execute(chosen)).scalars())
            for start in range(0, len(ids), _ID_BATCH):
                statement = sa.text(
                    f"UPDATE {table} SET {', '.join(f'{c} = NULL' for c in columns)} "
                    "WHERE id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True))
                await session.execute(statement, {"ids": ids[start : start + _ID_BATCH]})
        if ids:
            audit.record(session, table, "vector_delete", ids, fields=columns)
        return len(ids)

    async def count(self, collection: str, filters: Mapping[str, Any] | None = None) -> int:
        """How many rows of the collection hold a vector (and match ``filters``)."""
        table = collection_table(collection)
        entity = ENTITIES_BY_TABLE[table]
        async with self._scope() as session:
            columns = [embedding_column(d) for d in await self._columns(session, table)]
            if not columns:
                return 0
            statement = sa.select(sa.func.count()).select_from(entity).where(has_vector(columns))
            if filters:
                statement = statement.where(self.filter_clause(collection, filters))
            with translate_errors(f"counting vectors in {table}"):
                return int((await session.execute(statement)).scalar_one())

    # -- beyond the port --------------------------------------------------------------------

    async def dimensions(self, collection: str) -> dict[int, str]:
        """Dimension -> metric of the embedding columns the collection's table has."""
        table = collection_table(collection)
        async with self._scope() as session:
            columns = await self._columns(session, table, refresh=True)
        return dict.fromkeys(sorted(columns), "cosine")

    async def describe(self) -> dict[str, Any]:
        """What ``archon-db doctor`` prints: the vectors stored per collection and length."""
        stored: dict[str, dict[int, int]] = {}
        async with self._scope() as session:
            for collection, entity in ENTITIES.items():
                table = entity.__tablename__
                dims = sorted(await self._columns(session, table, refresh=True))
                if not dims:
                    stored[collection] = {}
                    continue
                counts = ", ".join(f"count({embedding_column(d)})" for d in dims)
                with translate_errors(f"counting the vectors of {table}"):
                    row = (await session.execute(sa.text(f"SELECT {counts} FROM {table}"))).one()
                stored[collection] = dict(zip(dims, map(int, row), strict=True))
            dialect = dialect_name(session)
        return {"backend": self.capabilities.name, "database": dialect, "vectors": stored}

    # -- filters and hits ------------------------------------------------------------------

    @staticmethod
    def filter_clause(
        collection: str, filters: Mapping[str, Any] | None, embedding_model: str | None = None
    ) -> Any:
        """The SQL condition for ``filters`` over the collection's own columns."""
        return sql_filter(collection, filters, embedding_model)

    @staticmethod
    def hit(row: Any, score: float) -> VectorHit:
        metadata = {name: getattr(row, name) for name in HIT_FIELDS}
        return VectorHit(id=int(row.id), score=score, metadata=metadata)


async def _run_ddl(session: AsyncSession, table: str, dimension: int, ddl: list[str]) -> None:
    try:
        with translate_errors(f"adding embedding_{dimension} to {table}"):
            for statement in ddl:
                await session.execute(sa.text(statement))
    except DataLayerError as exc:
        if permission_denied(exc.__cause__ or exc):
            raise UnsupportedFeatureError(
                f"the database user may not add the column embedding_{dimension} to {table}; "
                f"run {add_dimension_hint(dimension)} as the schema owner"
            ) from exc
        raise


async def _run_ddl_apart(engine: AsyncEngine, table: str, dimension: int, ddl: list[str]) -> None:
    async with AsyncSession(engine) as session:
        # A Unit of Work that already touched the table holds a metadata lock until it ends:
        # fail soon with advice rather than wait for it.
        await session.execute(sa.text("SET SESSION lock_wait_timeout = 10"))
        try:
            await _run_ddl(session, table, dimension, ddl)
        except DataLayerError as exc:
            if "lock wait timeout" in str(exc).lower():
                raise UnsupportedFeatureError(
                    f"could not add embedding_{dimension} to {table} while a transaction uses "
                    f"it: call ensure_collection before the Unit of Work, or run "
                    f"{add_dimension_hint(dimension)}"
                ) from exc
            raise
