"""PgVectorIndex: vectors in Archon's ``embedding_<dim>`` columns, searched by pgvector's HNSW.

Vectors travel in pgvector's binary format (its asyncpg codec, registered once per connection).
Columns up to 2000 dimensions are indexed as ``vector``; up to 4000 through a ``halfvec``
expression index, which a query uses by ordering by the same expression and then re-ranking the
candidates at full precision; longer ones are searched exactly. Each query sets ``hnsw.ef_search``
and, with pgvector 0.8 or later, iterative scans (``set_config(..., true)`` in the query itself),
so a filtered query still finds ``k`` rows when ``k`` rows match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.engines import DEFAULT_EF_SEARCH, HNSW_EF_SEARCH
from app.errors import InvalidInputError, UnsupportedFeatureError, translate_errors
from app.filters import OPERATORS
from app.repositories import driver
from app.repositories.rows import entity_rows
from app.vector.arguments import check_k
from app.vector.port import VectorCapabilities, VectorHit, collection_table, vector_length
from app.vector.sql.base import SqlVectorIndex
from app.vector.sql.common import (
    ENTITIES,
    MAX_DIMENSION,
    embedding_column,
    pgvector_codecs,
    pgvector_extension,
    quote_identifier,
    register_pgvector,
)

VECTOR_INDEX_LIMIT = 2000  # pgvector's HNSW limit for ``vector``
HALFVEC_INDEX_LIMIT = 4000  # and for ``halfvec``
ITERATIVE_SCANS = (0, 8, 0)  # the pgvector release that brought hnsw.iterative_scan
MAX_EF_SEARCH = 1000


def ef_search(k: int) -> int:
    """The HNSW candidate list for a top-``k`` query: generous for small k, capped by pgvector."""
    return min(MAX_EF_SEARCH, max(DEFAULT_EF_SEARCH, 2 * k))


def hnsw_index_ddl(table: str, dimension: int, schema: str = "public") -> str | None:
    """The cosine HNSW index for ``embedding_<dimension>``; None past pgvector's index limits."""
    column = embedding_column(dimension)
    name = f"idx_{table}_{column}_hnsw"
    if dimension <= VECTOR_INDEX_LIMIT:
        target = f"{column} vector_cosine_ops"
    elif dimension <= HALFVEC_INDEX_LIMIT:
        target = f"(({column})::{quote_identifier(schema)}.halfvec({dimension})) halfvec_cosine_ops"
    else:
        return None
    return f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw ({target})"


class _PgType(sa.types.UserDefinedType[Any]):
    """``vector(n)`` / ``halfvec(n)`` for casts; values pass through to the asyncpg codec."""

    cache_ok = True

    def __init__(self, name: str, dimension: int, schema: str) -> None:
        self.name, self.dimension, self.schema = name, dimension, schema

    def get_col_spec(self, **_: Any) -> str:
        return f"{quote_identifier(self.schema)}.{self.name}({self.dimension})"


class PgVectorIndex(SqlVectorIndex):
    """The ``VectorIndex`` port on PostgreSQL + pgvector, inside the caller's transaction.

    Cosine only (Archon's indexes); score = 1 - cosine distance. A vector is stored in the row it
    embeds: upserting a vector for a missing row raises ``NotFoundError``.
    """

    capabilities = VectorCapabilities(
        name="pgvector",
        metrics=frozenset({"cosine"}),
        filter_operators=OPERATORS,
        hybrid=True,
        max_dimension=MAX_DIMENSION,
        transactional=True,
        approximate=True,
    )

    @property
    def _extension(self) -> tuple[str, tuple[int, ...]] | None:
        return self._shared.get("extension")

    async def _vector_extension(self, session: AsyncSession) -> tuple[str, tuple[int, ...]]:
        found = self._extension or await pgvector_extension(session)
        if found is None:
            raise UnsupportedFeatureError(
                "the `vector` extension is not installed in this database: "
                "CREATE EXTENSION vector (then `archon-db migrate`), or set VECTOR_DATABASE=exact"
            )
        self._shared["extension"] = found
        return found

    async def _prepare_connection(self, session: AsyncSession) -> None:
        schema, _ = await self._vector_extension(session)
        await register_pgvector(session, schema)

    def _add_dimension_ddl(self, dialect: str, table: str, dimension: int) -> list[str]:
        assert self._extension is not None
        schema = self._extension[0]
        column = embedding_column(dimension)
        vector = f"{quote_identifier(schema)}.vector({dimension})"
        ddl = [f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {vector}"]
        index = hnsw_index_ddl(table, dimension, schema)
        return [*ddl, index] if index else ddl

    async def ensure_collection(
        self, collection: str, dimension: int, metric: str = "cosine"
    ) -> None:
        """Make sure ``embedding_<dimension>`` (and its HNSW index) exists (adds it once)."""
        async with self._scope() as session:
            await self._vector_extension(session)
        await super().ensure_collection(collection, dimension, metric)

    async def describe(self) -> dict[str, Any]:
        """What ``archon-db doctor`` prints, with pgvector's version and index settings."""
        found = await super().describe()
        async with self._scope() as session:
            schema, version = await self._vector_extension(session)
        found["pgvector"] = ".".join(map(str, version)) + f" (schema {schema})"
        found["iterative scans"] = version >= ITERATIVE_SCANS
        return found

    def _encode_many(self, kind: str, matrix: np.ndarray) -> list[Any]:
        self._encode(kind, matrix[0])
        return list(matrix)  # rows as they are: the binary codec takes numpy arrays

    def _encode(self, kind: str, vector: np.ndarray) -> Any:
        if "vector" not in kind:
            raise UnsupportedFeatureError(
                f"the embedding columns are {kind}, not pgvector's vector: this database was "
                "migrated without pgvector; use VECTOR_DATABASE=exact"
            )
        return vector

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
        rows = await self._search(collection, vector, k, filters, embedding_model, whole=False)
        return [self.hit(row, 1.0 - float(row.distance)) for row in rows]

    async def query_entities(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        embedding_model: str | None = None,
    ) -> list[tuple[Any, float]]:
        """As ``query``, but (entity, score) pairs: the rows come with the nearest-rows query
        itself, so no second query loads them. The entities are detached."""
        build = entity_rows(ENTITIES[collection]).build
        rows = await self._search(collection, vector, k, filters, embedding_model, whole=True)
        return [(build(row), 1.0 - float(row.distance)) for row in rows]

    async def query_fused(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        filters: Mapping[str, Any] | None,
        *,
        embedding_model: str | None,
        keyword: Callable[[str, Any], Any],
        text: str,
        rrf_k: int,
    ) -> list[tuple[Any, float, str]]:
        """Hybrid search in ONE statement: (entity, score, match type), best first.

        The ``k`` nearest rows (this index's query, settings included) and the ``k`` best of
        ``keyword(collection, where)`` (a select of (id, rank), best first, its text the bound
        parameter ``t``) fused by reciprocal rank: ``1 / (rrf_k + rank)`` summed over the lists
        holding the row, ties to the smaller id; ``hybrid`` where both hold it. The rows come
        with it; the entities are detached.
        """
        build = entity_rows(ENTITIES[collection]).build
        rows = await self._search(
            collection, vector, k, filters, embedding_model, fused=(keyword, rrf_k), text=text
        )
        return [(build(row), float(row.score), str(row.match_type)) for row in rows]

    async def _search(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        filters: Mapping[str, Any] | None,
        embedding_model: str | None,
        *,
        whole: bool = False,
        fused: tuple[Callable[[str, Any], Any], int] | None = None,
        text: str | None = None,
    ) -> list[Any]:
        if k < 0:
            raise InvalidInputError(f"k must be >= 0, got {k}")
        table = collection_table(collection)
        dimension = vector_length(vector)
        async with self._scope() as session:
            query_vector = await self._query_vector(session, table, vector)
            self._encode(self._dimensions[table][dimension], query_vector)
            if k == 0:
                return []
            run = driver.runner(session)
            schema, _ = await self._vector_extension(session)
            if run is None:
                await register_pgvector(session, schema)
            # Connections that start with this query's ef_search need no settings in it (only
            # filtered queries need iterative scans).
            preset = session.get_bind().get_execution_options().get(HNSW_EF_SEARCH)
            statement, fixed = self._statement(
                collection, dimension, k, filters, embedding_model, whole, fused,
                settings=preset != ef_search(k),
            )  # fmt: skip
            params: dict[str, Any] = {"q": query_vector}
            if VECTOR_INDEX_LIMIT < dimension <= HALFVEC_INDEX_LIMIT:
                params["hq"] = query_vector
            if fused is not None:
                params["t"] = text
            with translate_errors(f"searching {table}"):
                if run is not None:
                    codecs = partial(pgvector_codecs, schema=schema)
                    found = await run.fetch(statement, params, fixed=fixed, named=True, on=codecs)
                    if found is not None:
                        return found
                    await register_pgvector(session, schema)
                return list((await session.execute(statement, params)).all())

    def _statement(
        self,
        collection: str,
        dimension: int,
        k: int,
        filters: Mapping[str, Any] | None,
        embedding_model: str | None,
        whole: bool,
        fused: tuple[Callable[[str, Any], Any], int] | None = None,
        *,
        settings: bool = True,
    ) -> tuple[Any, bool]:
        """The nearest-rows (or fused) statement, and whether it is built once and reused:
        unfiltered ones are (building one costs more than PostgreSQL takes to answer a top-10
        HNSW query)."""
        if filters or embedding_model is not None:
            where = self.filter_clause(collection, filters, embedding_model)
            return self._build(collection, dimension, k, where, whole, fused, True), False
        cache = self._shared.setdefault("statements", {})
        key = (collection, dimension, k, whole, fused, settings)
        if key not in cache:
            cache[key] = self._build(collection, dimension, k, sa.true(), whole, fused, settings)
        return cache[key], True

    def _build(
        self,
        collection: str,
        dimension: int,
        k: int,
        where: Any,
        whole: bool,
        fused: tuple[Callable[[str, Any], Any], int] | None,
        settings: bool = True,
    ) -> Any:
        if fused is None:
            return self._nearest(collection, dimension, k, where, whole=whole, settings=settings)
        keyword, rrf_k = fused
        return self._fused(
            collection, dimension, k, where, keyword(collection, where), rrf_k, settings
        )

    def _fused(
        self,
        collection: str,
        dimension: int,
        k: int,
        where: Any,
        keyword: Any,
        rrf_k: int,
        settings: bool = True,
    ) -> Any:
        """Nearest rows and keyword list, ranked, fused by reciprocal rank, rows joined: the
        plan of Archon's ``hybrid_search_*`` functions."""
        nearest = self._nearest(collection, dimension, k, where, settings=settings).subquery("n")
        by_vector = sa.select(
            nearest.c.id,
            sa.func.row_number().over(order_by=(nearest.c.distance, nearest.c.id)).label("r"),
        ).cte("v")
        best = keyword.limit(k).subquery("k")
        rank = best.c[best.c.keys()[1]]
        by_keyword = sa.select(
            best.c.id, sa.func.row_number().over(order_by=(rank.desc(), best.c.id)).label("r")
        ).cte("kw")
        one: Any = sa.literal_column("1.0::float8", sa.Float)

        def part(ranked: Any) -> Any:
            share = one / (sa.literal_column(str(int(rrf_k)), sa.Integer) + ranked.c.r)
            return sa.func.coalesce(share, sa.literal_column("0", sa.Float))

        both = sa.and_(by_vector.c.id.is_not(None), by_keyword.c.id.is_not(None))
        kind = sa.case(
            (both, sa.literal_column("'hybrid'", sa.Text)),
            (by_vector.c.id.is_not(None), sa.literal_column("'vector'", sa.Text)),
            else_=sa.literal_column("'keyword'", sa.Text),
        )
        fusion = (
            sa.select(
                sa.func.coalesce(by_vector.c.id, by_keyword.c.id).label("id"),
                (part(by_vector) + part(by_keyword)).label("score"),
                kind.label("match_type"),
            )
            .select_from(by_vector.join(by_keyword, by_vector.c.id == by_keyword.c.id, full=True))
            .cte("fused")
        )
        table = ENTITIES[collection].__table__
        columns = entity_rows(ENTITIES[collection]).columns
        return (
            sa.select(*columns, fusion.c.score, fusion.c.match_type)
            .select_from(fusion.join(table, table.c.id == fusion.c.id))
            .order_by(fusion.c.score.desc(), fusion.c.id)
            .limit(k)
        )

    def _settings(self, k: int) -> Any:
        """A one-row subquery that sets this transaction's search settings when it is read.

        Joined laterally to the nearest-rows query, its values gate the index scan (PostgreSQL
        evaluates such a constant condition once, before the scan's first row), so the settings
        travel in the query's own round trip: no statement of their own, and no transaction
        needed for them (``set_config(..., true)`` lasts until the transaction ends).
        """
        assert self._extension is not None
        settings = {"hnsw.ef_search": str(ef_search(k))}
        if self._extension[1] >= ITERATIVE_SCANS:
            settings["hnsw.iterative_scan"] = "relaxed_order"
        calls = [
            sa.func.set_config(sa.literal(name), sa.literal(value), sa.true()).label(f"s{i}")
            for i, (name, value) in enumerate(settings.items())
        ]
        return sa.select(*calls).subquery("settings")

    def _nearest(
        self,
        collection: str,
        dimension: int,
        k: int,
        where: Any,
        *,
        whole: bool = False,
        settings: bool = True,
    ) -> Any:
        """Nearest rows by the indexed expression, re-sorted by exact distance.

        Re-sorting makes relaxed-order iterative scans and halfvec candidates exact in order.
        ``whole``: every column of the entity (in ``EntityRows`` order), then the distance. The
        query vector is the parameter ``q`` (and ``hq`` for halfvec columns). ``settings``:
        the search settings travel in the statement (see ``_settings``); without, the
        connection's own apply.
        """
        assert self._extension is not None
        schema = self._extension[0]
        table = ENTITIES[collection].__table__
        column: Any = sa.literal_column(embedding_column(dimension))
        full = _PgType("vector", dimension, schema)
        exact_q = sa.cast(sa.bindparam("q", type_=full), full)
        exact = column.op("<=>", return_type=sa.Float)(exact_q)
        if VECTOR_INDEX_LIMIT < dimension <= HALFVEC_INDEX_LIMIT:
            half = _PgType("halfvec", dimension, schema)
            half_q = sa.cast(sa.bindparam("hq", type_=half), half)
            order = sa.cast(column, half).op("<=>", return_type=sa.Float)(half_q)
            limit = 2 * k
        else:
            order, limit = exact, k
        fields = [table.c[name] for name in ("id", "source_id", "url", "chunk_number")]
        if not whole:
            fields += [table.c.embedding_model, table.c["metadata"]]
        values = self._settings(k) if settings else None
        applied = [] if values is None else [c.is_not(None) for c in values.c]
        candidates = (
            sa.select(*fields, exact.label("distance"))
            .where(*applied, column.is_not(None), where)
            .order_by(order)
            .limit(limit)
            .correlate_except(table)  # the outer query joins the table again, for the rows
            .lateral("candidates")
        )
        scope: Any = candidates if values is None else values.join(candidates, sa.true())
        order_by = (candidates.c.distance, candidates.c.id)
        if whole:
            # The other columns joined to the k rows only: a sequential scan (small tables)
            # then sorts narrow rows, not whole chunks.
            columns = entity_rows(ENTITIES[collection]).columns
            rows = scope.join(table, table.c.id == candidates.c.id)
            joined = sa.select(*columns, candidates.c.distance).select_from(rows)
            return joined.order_by(*order_by).limit(k)
        return sa.select(*candidates.c).select_from(scope).order_by(*order_by).limit(k)
