"""What the two SQL-backed indexes share: Archon's ``embedding_<dim>`` columns and their upkeep.

Both ``PgVectorIndex`` and ``ExactVectorIndex`` keep a row's vector in the ``embedding_<dim>``
column of the row itself, chosen from the vector's length. A row holds at most one vector: writing
one clears the row's other embedding columns. Filters address the row's own columns and
``metadata.<key>`` paths, compiled by the repositories' SQL filter compiler.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain import CodeExample, CrawledPage
from app.errors import (
    DataLayerError,
    InvalidInputError,
    NotFoundError,
    UnsupportedFeatureError,
    translate_errors,
)
from app.vector.port import (
    RecordId,
    VectorCapabilities,
    VectorHit,
    VectorRecord,
    collection_table,
)

# The lengths Archon's schema ships columns for; any other gets its own column on demand.
ARCHON_DIMENSIONS = (384, 768, 1024, 1536, 3072)
MAX_DIMENSION = 16_000  # pgvector's limit for ``vector``; far beyond any embedding model
ENTITIES: dict[str, Any] = {"crawled_pages": CrawledPage, "code_examples": CodeExample}
ENTITIES_BY_TABLE: dict[str, Any] = {e.__tablename__: e for e in ENTITIES.values()}
HIT_FIELDS = ("source_id", "url", "chunk_number", "embedding_model", "metadata")
_EMBEDDING = re.compile(r"^embedding_([0-9]+)$")
_ID_BATCH = 1000


def dialect_name(session: AsyncSession) -> str:
    """``postgresql``, ``mysql`` or ``sqlite``: the dialect the session talks to."""
    return session.get_bind().dialect.name


def embedding_column(dimension: int) -> str:
    """``embedding_<dimension>``, after checking the dimension is a sane positive int."""
    if isinstance(dimension, bool) or not isinstance(dimension, int):
        raise InvalidInputError(f"a vector dimension is an integer, got {dimension!r}")
    if not 1 <= dimension <= MAX_DIMENSION:
        raise InvalidInputError(f"vector dimension must be in 1..{MAX_DIMENSION}, got {dimension}")
    return f"embedding_{dimension}"


def add_dimension_hint(dimension: int) -> str:
    return f"`archon-db vectors add-dimension {dimension}`"


def as_matrix(vectors: Sequence[Sequence[float]], dimension: int) -> np.ndarray:
    """Vectors as one float32 matrix, all checked at once (length, NaN/infinity, zero norm)."""
    for vector in vectors:
        if len(vector) != dimension:
            raise InvalidInputError(
                f"wrong vector length: expected {dimension}, received {len(vector)}"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dimension)
    if not np.isfinite(matrix).all():
        raise InvalidInputError("vector contains NaN or infinity (or overflows float32)")
    if (~matrix.any(axis=1)).any():
        raise InvalidInputError("an all-zero vector has no direction: cosine is undefined")
    return matrix


def row_ids(ids: Sequence[RecordId]) -> list[int]:
    """Record ids as the integer row ids of Archon's chunk tables."""
    out = []
    for raw in ids:
        try:
            out.append(int(raw))
        except (TypeError, ValueError):
            raise InvalidInputError(f"vector ids are the rows' integer ids, got {raw!r}") from None
    return out


async def embedding_columns(session: AsyncSession, table: str) -> dict[int, str]:
    """Each ``embedding_<dim>`` column of ``table``: dimension -> SQL type name (lower case)."""
    dialect = dialect_name(session)
    if dialect == "postgresql":
        query = (
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped"
        )
    elif dialect in ("mysql", "mariadb"):
        query = (
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = :t"
        )
    else:
        query = "SELECT name, type FROM pragma_table_info(:t)"
    with translate_errors(f"reading the columns of {table}"):
        rows = (await session.execute(sa.text(query), {"t": table})).all()
    found = {}
    for name, type_name in rows:
        match = _EMBEDDING.match(str(name))
        if match:
            found[int(match.group(1))] = str(type_name).lower()
    return found


def permission_denied(exc: BaseException) -> bool:
    """Whether a DDL statement failed for want of rights (not for any other reason)."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    args = getattr(orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    text = str(orig).lower()
    return (
        code == "42501"
        or errno in (1142, 1044, 1227)
        or "must be owner" in text
        or "permission denied" in text
        or "readonly database" in text
    )


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (PostgreSQL schema names)."""
    return '"' + name.replace('"', '""') + '"'


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
        table = collection_table(collection)
        latest = dict(zip(row_ids([r.id for r in records]), records, strict=True))
        if not latest:
            return 0
        groups: dict[int, list[tuple[int, VectorRecord]]] = {}
        for rid, record in latest.items():
            groups.setdefault(len(record.vector), []).append((rid, record))
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
        return len(latest)

    async def _check_rows_exist(self, session: AsyncSession, table: str, ids: list[int]) -> None:
        entity = ENTITIES_BY_TABLE[table]
        found: set[int] = set()
        for start in range(0, len(ids), _ID_BATCH):
            chunk = ids[start : start + _ID_BATCH]
            with translate_errors(f"reading {table}"):
                result = await session.execute(sa.select(entity.id).where(entity.id.in_(chunk)))
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
        column = embedding_column(dimension)
        others = [embedding_column(d) for d in self._dimensions[table] if d != dimension]
        clear = "".join(f", {other} = NULL" for other in others)
        statement = sa.text(
            f"UPDATE {table} SET {column} = :v{clear}, embedding_dimension = :dim, "
            "embedding_model = COALESCE(:model, embedding_model) WHERE id = :id"
        )
        kind = self._dimensions[table][dimension]
        params = [
            {
                "v": self._encode(kind, matrix[i]),
                "dim": dimension,
                "model": record.metadata.get("embedding_model"),
                "id": rid,
            }
            for i, (rid, record) in enumerate(items)
        ]
        await self._prepare_connection(session)
        with translate_errors(f"writing vectors to {table}.{column}"):
            await session.execute(statement, params)

    def _encode(self, kind: str, vector: np.ndarray) -> Any:
        raise NotImplementedError

    async def _prepare_connection(self, session: AsyncSession) -> None:
        """Hook: e.g. register pgvector's binary codec on the connection."""

    async def _written(self, session: AsyncSession, collection: str) -> None:
        """Hook: called in the same transaction after every write (exact bumps its version)."""

    async def delete(self, collection: str, ids: Sequence[RecordId]) -> int:
        """Clear the vectors of these rows (the rows stay); how many rows had one."""
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


def has_vector(columns: Sequence[str]) -> Any:
    """``embedding_a IS NOT NULL OR embedding_b IS NOT NULL ...``"""
    return sa.or_(*(sa.literal_column(c).is_not(None) for c in columns))


def sql_filter(
    collection: str, filters: Mapping[str, Any] | None, embedding_model: str | None = None
) -> Any:
    """The condition for ``filters`` (and the embedding-model restriction) on the collection."""
    from app.repositories.sql_filters import compile_filters

    entity = ENTITIES[collection]
    clauses = []
    compiled = compile_filters(filters, entity) if filters else None
    if compiled is not None:
        clauses.append(compiled)
    if embedding_model is not None:
        clauses.append(entity.__table__.c.embedding_model == embedding_model)
    return sa.and_(sa.true(), *clauses)


async def pgvector_extension(session: AsyncSession) -> tuple[str, tuple[int, ...]] | None:
    """(schema, version) of the ``vector`` extension in this database, or None."""
    if dialect_name(session) != "postgresql":
        return None
    query = sa.text(
        "SELECT n.nspname, e.extversion FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
    )
    with translate_errors("looking for the vector extension"):
        row = (await session.execute(query)).first()
    if row is None:
        return None
    version = tuple(int(p) for p in re.findall(r"\d+", str(row[1]))[:3])
    return str(row[0]), version


async def register_pgvector(session: AsyncSession, schema: str) -> None:
    """Give this session's asyncpg connection pgvector's binary codecs (once per connection)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    if raw.info.get("archon_pgvector_codec"):
        return
    from pgvector.asyncpg import register_vector

    await register_vector(raw.driver_connection, schema=schema)
    raw.info["archon_pgvector_codec"] = True
