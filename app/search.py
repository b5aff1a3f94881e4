"""``DataLayer.search``: vector, keyword and hybrid search, hydrated with the entities.

Keyword search is each dialect's own full-text search over the chunk's text, indexed alike
(``app.search_words``: the text is words, never query syntax; every word required, matched
exactly): PostgreSQL's ``to_tsvector('simple', ...)`` index ``@@ plainto_tsquery('simple',
words)`` ranked by ``ts_rank_cd``; SQLite's FTS5 tables, each word quoted, ranked by ``bm25``;
MySQL's FULLTEXT ``MATCH ... AGAINST`` in boolean mode, ``+word`` for each.
Hybrid fuses the vector and keyword top-``k`` lists by reciprocal rank (``1 / (60 + rank)``
summed, ties to the smaller id), exactly as Archon's ``hybrid_search_*`` functions created by the
migrations do, so both give the same rows. A row found by both lists matches as ``hybrid``.
On pgvector, a vector or hybrid search is one statement carrying its settings, the ranking and
fusion, and the rows themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncSession

from app.engines import behind_transaction_pooler, is_autocommit
from app.errors import InvalidInputError, translate_errors
from app.repositories.rows import entity_rows
from app.search_words import postgresql_words, search_words
from app.text import check_text
from app.vector.arguments import MAX_K
from app.vector.factory import AutoVectorIndex
from app.vector.port import MatchType, SearchHit, collection_table, vector_length
from app.vector.sql.common import ENTITIES, sql_filter
from app.vector.sql.pgvector import PgVectorIndex

if TYPE_CHECKING:
    from app.uow.port import UnitsOfWork

Mode = Literal["auto", "vector", "keyword", "hybrid"]
Ranked = list[tuple[int, float]]
RRF_K = 60
SEARCHED = {"crawled_pages": ("content",), "code_examples": ("content", "summary")}


async def search(
    layer: UnitsOfWork,
    collection: str,
    *,
    vector: Sequence[float] | None = None,
    text: str | None = None,
    k: int = 10,
    filters: Mapping[str, Any] | None = None,
    mode: Mode = "auto",
    embedding_model: str | None = None,
) -> list[SearchHit]:
    """The ``k`` best chunks of ``collection`` for the query, each with its entity, best first."""
    if vector is not None:
        vector_length(vector)  # a sequence, before anything uses its length
    chosen = resolve_mode(mode, vector, text)
    collection_table(collection)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be an integer in 1..{MAX_K}, got {k!r}")
    if text is not None:
        if not isinstance(text, str):
            raise InvalidInputError(f"search text is a string, got {type(text).__name__}")
        check_text("search text", text)
    index = layer.vector_index
    if isinstance(index, AutoVectorIndex):
        index = await index.resolve()
    if chosen in ("vector", "hybrid") and isinstance(index, PgVectorIndex):
        assert vector is not None
        fused_text = text if chosen == "hybrid" else None
        return await _pgvector_search(
            layer, index, collection, vector, fused_text, k, filters, embedding_model
        )
    async with layer.uow(read_only=True) as uow:
        by_vector: Ranked = []
        by_keyword: Ranked = []
        if chosen in ("vector", "hybrid"):
            assert vector is not None
            hits = await uow.vectors.query(
                collection, vector, k, filters, embedding_model=embedding_model
            )
            by_vector = [(int(hit.id), float(hit.score)) for hit in hits]
        if chosen in ("keyword", "hybrid"):
            assert text is not None
            by_keyword = await keyword_search(
                uow.session, collection, text, k, filters, embedding_model
            )
        if chosen == "hybrid":
            ranked = fuse(by_vector, by_keyword, k)
        else:
            kind: MatchType = "vector" if chosen == "vector" else "keyword"
            ranked = [(rid, score, kind) for rid, score in (by_vector or by_keyword)]
        return await hydrate(uow.session, collection, ranked)


async def _pgvector_search(
    layer: UnitsOfWork,
    index: PgVectorIndex,
    collection: str,
    vector: Sequence[float],
    text: str | None,
    k: int,
    filters: Mapping[str, Any] | None,
    embedding_model: str | None,
) -> list[SearchHit]:
    """Vector (``text`` None) or hybrid search on pgvector: ONE statement, settings, ranking,
    fusion and rows included, in autocommit.

    A single statement sees one snapshot and writes nothing, so it needs no transaction:
    autocommit spares the BEGIN and ROLLBACK round trips. Served by the readers (read replicas
    when there are some), as read-only Units of Work are.
    """
    async with _autocommit_session(layer) as session:
        bound = index.bind(session)
        if text is None:
            found = await bound.query_entities(
                collection, vector, k, filters, embedding_model=embedding_model
            )
            return [SearchHit(entity=e, score=s, match_type="vector") for e, s in found]
        fused = await bound.query_fused(
            collection,
            vector,
            k,
            filters,
            embedding_model=embedding_model,
            keyword=_postgresql_bound,
            text=" ".join(search_words(text)),
            rrf_k=RRF_K,
        )
    return [
        SearchHit(entity=entity, score=score, match_type=cast(MatchType, kind))
        for entity, score, kind in fused
    ]


@asynccontextmanager
async def _autocommit_session(layer: UnitsOfWork) -> AsyncIterator[AsyncSession]:
    """A session whose statements each run on their own: a read-only Unit of Work on the
    readers' autocommit pools, else a writer connection switched to autocommit.

    Behind a transaction pooler, a read-only Unit of Work (a transaction) instead: outside one,
    the pooler may run a statement's prepare and its execution on two server connections.
    """
    if behind_transaction_pooler(layer.engine) or (
        layer.read_engines and all(is_autocommit(engine) for engine in layer.read_engines)
    ):
        async with layer.uow(read_only=True) as uow:
            yield uow.session
        return
    with translate_errors("connecting for a vector search"):
        async with layer.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            async with AsyncSession(bind=connection, expire_on_commit=False) as session:
                yield session


def resolve_mode(mode: str, vector: Sequence[float] | None, text: str | None) -> str:
    """``auto`` -> hybrid with both inputs, else the one given; the others need their inputs."""
    if mode not in ("auto", "vector", "keyword", "hybrid"):
        raise InvalidInputError(f"unknown search mode {mode!r}: auto, vector, keyword or hybrid")
    if text is not None and not isinstance(text, str):
        raise InvalidInputError(f"search text must be a string, not {type(text).__name__}")
    has_text = text is not None and text.strip() != ""
    if mode == "auto":
        if vector is not None and has_text:
            return "hybrid"
        if vector is not None:
            return "vector"
        if has_text:
            return "keyword"
        raise InvalidInputError("search needs a vector, a text, or both")
    if mode in ("vector", "hybrid") and vector is None:
        raise InvalidInputError(f"mode={mode!r} needs a query vector")
    if mode in ("keyword", "hybrid") and not has_text:
        raise InvalidInputError(f"mode={mode!r} needs a query text")
    return mode


def fuse(by_vector: Ranked, by_keyword: Ranked, k: int) -> list[tuple[int, float, MatchType]]:
    """Reciprocal rank fusion of two ranked lists; ``hybrid`` where an id is in both."""
    vector_part = {rid: 1.0 / (RRF_K + rank) for rank, (rid, _) in enumerate(by_vector, 1)}
    keyword_part = {rid: 1.0 / (RRF_K + rank) for rank, (rid, _) in enumerate(by_keyword, 1)}
    fused = []
    for rid in vector_part.keys() | keyword_part.keys():
        score = vector_part.get(rid, 0.0) + keyword_part.get(rid, 0.0)
        if rid in vector_part and rid in keyword_part:
            kind: MatchType = "hybrid"
        else:
            kind = "vector" if rid in vector_part else "keyword"
        fused.append((rid, score, kind))
    fused.sort(key=lambda item: (-item[1], item[0]))
    return fused[:k]


async def hydrate(
    session: AsyncSession, collection: str, ranked: Sequence[tuple[int, float, MatchType]]
) -> list[SearchHit]:
    """The entities of ``ranked`` in ONE query, in rank order (ids without a row are dropped)."""
    if not ranked:
        return []
    entity = ENTITIES[collection]
    rows = entity_rows(entity)
    statement = sa.select(*rows.columns).where(entity.id.in_([rid for rid, _, _ in ranked]))
    with translate_errors(f"reading {entity.__tablename__}"):
        result = await session.execute(statement)
        # Built detached: the loaded state outlives the read-only transaction's rollback.
        found = {entity.id: entity for entity in map(rows.build, result)}
    return [
        SearchHit(entity=found[rid], score=score, match_type=kind)
        for rid, score, kind in ranked
        if rid in found
    ]


# -- keyword search, per dialect ---------------------------------------------------------------


async def keyword_search(
    session: AsyncSession,
    collection: str,
    text: str,
    k: int,
    filters: Mapping[str, Any] | None = None,
    embedding_model: str | None = None,
) -> Ranked:
    """The ``k`` best (id, rank) by the dialect's full-text search, best first."""
    where = sql_filter(collection, filters, embedding_model)
    dialect = session.get_bind().dialect.name
    build = _KEYWORD.get(dialect)
    if build is None:
        raise InvalidInputError(f"no keyword search for {dialect}")
    statement = build(collection, text, where)
    if statement is None:
        return []
    table = collection_table(collection)
    with translate_errors(f"keyword search on {table}"):
        rows = (await session.execute(statement.limit(k))).all()
    return [(int(row[0]), float(row[1])) for row in rows]


def _postgresql(collection: str, text: str, where: Any) -> Any:
    words = search_words(text)
    if not words:
        return None
    # The words hold letters and digits only: plainto_tsquery ANDs them, reading no operator.
    return _postgresql_ranking(collection, " ".join(words), where)


def _postgresql_ranking(collection: str, text: Any, where: Any) -> Any:
    table = ENTITIES[collection].__table__
    # In FROM, the query is parsed once, not again for every matching row's rank.
    parsed = sa.func.plainto_tsquery(sa.literal_column("'simple'::regconfig"), text)
    parsed_once = parsed.alias("query")
    query: Any = parsed_once.column
    # The expression of the words index (migration 0008), so the index serves the match.
    document: Any = sa.literal_column(postgresql_words(SEARCHED[collection]))
    rank = sa.func.ts_rank_cd(document, query, type_=sa.Float)
    return (
        sa.select(table.c.id, rank.label("rank"))
        .select_from(table.join(parsed_once, sa.true()))
        .where(document.op("@@")(query), where)
        .order_by(rank.desc(), table.c.id)
    )


def _postgresql_bound(collection: str, where: Any) -> Any:
    """The PostgreSQL keyword ranking, its text the bound parameter ``t`` (built once)."""
    return _postgresql_ranking(collection, sa.bindparam("t", type_=sa.Text), where)


def fts5_query(text: str) -> str | None:
    """The search words of ``text``, each quoted (so FTS5 reads no operators), ANDed."""
    return " AND ".join(f'"{word}"' for word in search_words(text)) or None


def _sqlite(collection: str, text: str, where: Any) -> Any:
    query = fts5_query(text)
    if query is None:
        return None
    table = ENTITIES[collection].__table__
    fts_name = f"{table.name}_fts"
    fts = sa.table(fts_name, sa.column("rowid"))
    bm25 = sa.func.bm25(sa.literal_column(fts_name), type_=sa.Float)
    return (
        sa.select(table.c.id, (-bm25).label("rank"))
        .select_from(fts.join(table, table.c.id == fts.c.rowid))
        .where(sa.literal_column(fts_name).op("MATCH")(query), where)
        .order_by(bm25, table.c.id)
    )


def _mysql(collection: str, text: str, where: Any) -> Any:
    words = search_words(text)
    if not words:
        return None
    table = ENTITIES[collection].__table__
    document: Any = sa.literal_column("content_search_vector")
    # Boolean mode, every word required; natural language mode would match any of them.
    required = " ".join(f"+{word}" for word in words)
    relevance = mysql.match(document, against=required).in_boolean_mode()
    return (
        sa.select(table.c.id, relevance.label("rank"))
        .where(relevance > 0, where)
        .order_by(relevance.desc(), table.c.id)
    )


_KEYWORD: dict[str, Callable[[str, str, Any], Any]] = {
    "postgresql": _postgresql,
    "sqlite": _sqlite,
    "mysql": _mysql,
    "mariadb": _mysql,
}
