"""Archon's SQL search functions (PostgreSQL + pgvector): signatures, and agreement with the layer.

Clients of Archon's old schema call ``match_archon_*`` and ``hybrid_search_archon_*`` directly;
the migration recreates them with Archon's signatures and result columns, and they must answer
what ``layer.search`` answers on the same data.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrations
from app.bootstrap import DataLayer
from app.domain import Source
from app.testing.factories import CodeExampleFactory, CrawledPageFactory
from tests.support import Backend, LayerFactory, fetch_all, fetch_scalar
from tests.support import backends as servers
from tests.vector_fixtures import clustered

pytestmark = pytest.mark.backends("pgvector")

PAGE_COLUMNS = (
    "id bigint, url character varying, chunk_number integer, content text, metadata jsonb, "
    "source_id text, similarity double precision"
)
CODE_COLUMNS = (
    "id bigint, url character varying, chunk_number integer, content text, summary text, "
    "metadata jsonb, source_id text, similarity double precision"
)
TAIL = (
    "match_count integer DEFAULT 10, filter jsonb DEFAULT '{}'::jsonb, "
    "source_filter text DEFAULT NULL::text"
)
SIGNATURES = {
    "match_archon_crawled_pages": (f"query_embedding vector, {TAIL}", f"TABLE({PAGE_COLUMNS})"),
    "match_archon_crawled_pages_multi": (
        f"query_embedding vector, embedding_dimension integer, {TAIL}",
        f"TABLE({PAGE_COLUMNS})",
    ),
    "match_archon_code_examples": (f"query_embedding vector, {TAIL}", f"TABLE({CODE_COLUMNS})"),
    "match_archon_code_examples_multi": (
        f"query_embedding vector, embedding_dimension integer, {TAIL}",
        f"TABLE({CODE_COLUMNS})",
    ),
    "hybrid_search_archon_crawled_pages": (
        f"query_embedding vector, query_text text, {TAIL}",
        f"TABLE({PAGE_COLUMNS}, match_type text)",
    ),
    "hybrid_search_archon_crawled_pages_multi": (
        f"query_embedding vector, embedding_dimension integer, query_text text, {TAIL}",
        f"TABLE({PAGE_COLUMNS}, match_type text)",
    ),
    "hybrid_search_archon_code_examples": (
        f"query_embedding vector, query_text text, {TAIL}",
        f"TABLE({CODE_COLUMNS}, match_type text)",
    ),
    "hybrid_search_archon_code_examples_multi": (
        f"query_embedding vector, embedding_dimension integer, query_text text, {TAIL}",
        f"TABLE({CODE_COLUMNS}, match_type text)",
    ),
}
WORDS = ("throttle", "cursor", "webhook", "token", "cache")


@pytest.fixture
async def pg_layer(make_layer: LayerFactory) -> DataLayer:
    return await make_layer(vector_database="pgvector")


def _literal(vector: Any) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


async def _call(engine: AsyncEngine, function: str, *args: Any) -> list[Any]:
    """``SELECT * FROM function(args)``; a vector argument goes as its text form."""
    params: dict[str, Any] = {}
    parts = []
    for i, arg in enumerate(args):
        params[f"a{i}"] = arg
        if isinstance(arg, list):
            params[f"a{i}"] = _literal(arg)
            parts.append(f"CAST(CAST(:a{i} AS text) AS vector)")
        elif isinstance(arg, dict):
            params[f"a{i}"] = json.dumps(arg)
            parts.append(f"CAST(:a{i} AS jsonb)")
        else:
            parts.append(f":a{i}")
    return await fetch_all(engine, f"SELECT * FROM {function}({', '.join(parts)})", **params)


async def _ingest(layer: DataLayer, collection: str, dimension: int, n: int = 60) -> list[Any]:
    """``n`` chunks over two sources, two knowledge types and a few words; their vectors."""
    vectors = clustered(n, dimension, centres=8, seed=dimension)
    factory = CrawledPageFactory if collection == "crawled_pages" else CodeExampleFactory
    for source_id in ("src-a", "src-b"):
        source = Source(source_id=source_id, title=source_id)
        items = []
        for i in range(n):
            if ("src-a", "src-b")[i % 2] != source_id:
                continue
            chunk = factory.build(
                source=source,
                url=f"https://{source_id}.example.com/{collection}/{i}",
                chunk_number=0,
                content=f"about the {WORDS[i % len(WORDS)]} number {i}",
                metadata_={"knowledge_type": "technical" if i % 3 else "business", "i": i},
            )
            items.append((chunk, vectors[i].tolist()))
        await layer.ingest(source, items, embedding_model="m")
    return list(vectors)


async def test_the_functions_have_archons_signatures(pg_layer: DataLayer) -> None:
    rows = await fetch_all(
        pg_layer.engine,
        "SELECT proname, pg_get_function_arguments(oid) AS args, "
        "pg_get_function_result(oid) AS result, proconfig FROM pg_proc "
        "WHERE proname LIKE 'match_archon_%' OR proname LIKE 'hybrid_search_archon_%'",
    )
    found = {row.proname: (row.args, row.result) for row in rows}
    assert found == SIGNATURES
    configs = {row.proname: row.proconfig or [] for row in rows if row.proname.endswith("_multi")}
    assert all("hnsw.iterative_scan=relaxed_order" in config for config in configs.values())


@pytest.mark.parametrize(
    ("collection", "dimension"),
    [("crawled_pages", 384), ("code_examples", 768), ("crawled_pages", 3072)],
)
async def test_match_functions_return_what_layer_search_returns(
    pg_layer: DataLayer, collection: str, dimension: int
) -> None:
    vectors = await _ingest(pg_layer, collection, dimension)
    function = f"match_archon_{collection}_multi"
    for i, (meta, source) in enumerate([({}, None), ({"knowledge_type": "technical"}, "src-b")]):
        query = vectors[5 + i]
        rows = await _call(pg_layer.engine, function, list(query), dimension, 7, meta, source)
        filters: dict[str, Any] = {"metadata": {"contains": meta}}
        if source:
            filters["source_id"] = source
        hits = await pg_layer.search(collection, vector=list(query), k=7, filters=filters)

        assert [row.id for row in rows] == [hit.entity.id for hit in hits]
        assert [row.similarity for row in rows] == pytest.approx([h.score for h in hits], abs=1e-6)
        assert len(rows) == 7


@pytest.mark.parametrize("collection", ["crawled_pages", "code_examples"])
async def test_hybrid_functions_return_what_layer_search_returns(
    pg_layer: DataLayer, collection: str
) -> None:
    vectors = await _ingest(pg_layer, collection, 384)
    function = f"hybrid_search_archon_{collection}_multi"
    seen: set[str] = set()
    cases = [
        ("cursor", {}, None),
        ("webhook token", {}, None),  # plainto_tsquery ANDs the words: no row has both
        ("throttle", {"knowledge_type": "technical"}, "src-a"),
    ]
    for n, (text, meta, source) in enumerate(cases):
        query = list(vectors[10 + n])
        rows = await _call(pg_layer.engine, function, query, 384, text, 8, meta, source)
        filters: dict[str, Any] = {"metadata": {"contains": meta}}
        if source:
            filters["source_id"] = source
        hits = await pg_layer.search(
            collection, vector=query, text=text, k=8, filters=filters, mode="hybrid"
        )

        assert [(row.id, row.match_type) for row in rows] == [
            (hit.entity.id, hit.match_type) for hit in hits
        ]
        seen.update(row.match_type for row in rows)
    assert seen == {"vector", "keyword", "hybrid"}


async def test_the_legacy_functions_search_the_1536_column(pg_layer: DataLayer) -> None:
    vectors = await _ingest(pg_layer, "crawled_pages", 1536)
    query = list(vectors[3])

    rows = await _call(pg_layer.engine, "match_archon_crawled_pages", query, 5)
    hybrid = await _call(pg_layer.engine, "hybrid_search_archon_crawled_pages", query, "cache", 5)
    hits = await pg_layer.search("crawled_pages", vector=query, k=5)
    fused = await pg_layer.search("crawled_pages", vector=query, text="cache", k=5)

    assert [row.id for row in rows] == [hit.entity.id for hit in hits]
    assert rows[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert [row.id for row in hybrid] == [hit.entity.id for hit in fused]


async def test_multi_functions_take_any_dimension_that_has_a_column(pg_layer: DataLayer) -> None:
    vectors = await _ingest(pg_layer, "crawled_pages", 100, n=12)
    query = list(vectors[0])

    rows = await _call(pg_layer.engine, "match_archon_crawled_pages_multi", query, 100, 3)
    assert rows[0].similarity == pytest.approx(1.0, abs=1e-5) and len(rows) == 3

    with pytest.raises(Exception, match="Unsupported embedding dimension: 101"):
        await _call(pg_layer.engine, "match_archon_crawled_pages_multi", query + [1.0], 101, 3)
    with pytest.raises(Exception, match="100 dimensions, embedding_dimension is 384"):
        await _call(pg_layer.engine, "match_archon_crawled_pages_multi", query, 384, 3)


async def test_downgrade_drops_what_the_revision_made(
    pgvector_server: str, pgvector_backend: Backend
) -> None:
    """On a database of its own (the session's must stay at head)."""
    from app.config import Settings
    from app.engines import create_engine_for

    async with servers.postgres_backend("pgvector", pgvector_server) as fresh:
        engine = create_engine_for(fresh.url, Settings(_env_file=None, database_url=fresh.url))
        try:
            await migrations.upgrade(engine, migrations.BASELINE_REVISION)
            # A database set up by Archon's scripts has ivfflat indexes on these columns.
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    "CREATE INDEX idx_archon_crawled_pages_embedding_384 ON archon_crawled_pages "
                    "USING ivfflat (embedding_384 vector_cosine_ops) WITH (lists = 100)"
                )
            await migrations.upgrade(engine, "0002_vector_search")
            assert await _objects(engine) == (8, 10, 0)

            await migrations.downgrade(engine, migrations.BASELINE_REVISION)
            assert await _objects(engine) == (0, 0, 0)
            assert await fetch_scalar(
                engine, "SELECT to_regclass('archon_vector_versions') IS NULL"
            )
        finally:
            await engine.dispose()


async def _objects(engine: AsyncEngine) -> tuple[int, int, int]:
    """(search functions, HNSW indexes, ivfflat indexes) in the database."""
    functions = await fetch_scalar(
        engine,
        "SELECT count(*) FROM pg_proc WHERE proname LIKE 'match_archon_%' "
        "OR proname LIKE 'hybrid_search_archon_%'",
    )
    hnsw = await fetch_scalar(
        engine, "SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'"
    )
    ivfflat = await fetch_scalar(
        engine, "SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING ivfflat%'"
    )
    return int(functions), int(hnsw), int(ivfflat)
