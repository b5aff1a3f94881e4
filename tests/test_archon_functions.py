"""Archon's SQL functions (PostgreSQL + pgvector): signatures, and agreement with Archon's own.

Clients of Archon's old schema call ``match_archon_*``, ``hybrid_search_archon_*`` and Archon's
helpers directly; the migrations recreate them with Archon's signatures and result columns. The
vector searches answer what ``layer.search`` answers; every function answers what Archon's own
definition (``archon_sql/archon_functions.sql``, installed in a schema of its own for the test)
answers on the same data.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrations
from app.bootstrap import DataLayer
from app.domain import Source
from app.testing.factories import CodeExampleFactory, CrawledPageFactory
from tests.support import Backend, LayerFactory, execute, fetch_all, fetch_scalar
from tests.support import backends as servers
from tests.support.backends import asyncpg_connect_args
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
ARCHON = (Path(__file__).parent / "archon_sql" / "archon_functions.sql").read_text()
# Archon's searches as written: every row compared, no approximate index in the way.
EXACT = ("SET LOCAL enable_indexscan = off", "SET LOCAL enable_bitmapscan = off")


@pytest.fixture
async def pg_layer(make_layer: LayerFactory) -> DataLayer:
    return await make_layer(vector_database="pgvector")


async def _script(engine: AsyncEngine, script: str) -> None:
    url = make_url(engine.url.render_as_string(hide_password=False))
    conn = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        await conn.execute(script)
    finally:
        await conn.close()


@pytest.fixture
async def archon(pg_layer: DataLayer) -> AsyncIterator[DataLayer]:
    """``pg_layer`` with Archon's own definitions in the schema ``archon_ref``."""
    await _script(pg_layer.engine, "DROP SCHEMA IF EXISTS archon_ref CASCADE;" + ARCHON)
    try:
        yield pg_layer
    finally:
        await _script(pg_layer.engine, "DROP SCHEMA archon_ref CASCADE")


def _literal(vector: Any) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


async def _call(
    engine: AsyncEngine, function: str, *args: Any, settings: tuple[str, ...] = ()
) -> list[Any]:
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
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            for setting in settings:
                await conn.exec_driver_sql(setting)
            query = sa.text(f"SELECT * FROM {function}({', '.join(parts)})")
            return list((await conn.execute(query, params)).all())
        finally:
            await transaction.rollback()


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
                # Each row's word a different number of times: no two full-text ranks tie.
                content=f"about the {WORDS[i % len(WORDS)]} " * (1 + i // len(WORDS)) + str(i),
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
    helpers = await fetch_all(
        pg_layer.engine,
        "SELECT proname, pg_get_function_arguments(oid) AS args, "
        "pg_get_function_result(oid) AS result FROM pg_proc WHERE proname IN "
        "('detect_embedding_dimension', 'get_embedding_column_name', 'archive_task')",
    )
    assert {row.proname: (row.args, row.result) for row in helpers} == {
        "detect_embedding_dimension": ("embedding_vector vector", "integer"),
        "get_embedding_column_name": ("dimension integer", "text"),
        "archive_task": (
            "task_id_param uuid, archived_by_param text DEFAULT 'system'::text",
            "boolean",
        ),
    }


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


def _answers(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Each row as (id, match_type if any, similarity rounded): Archon's ties are unordered."""
    found = [(row.id, getattr(row, "match_type", None), round(row.similarity, 6)) for row in rows]
    return sorted(found, key=lambda answer: (-answer[2], answer[0]))


@pytest.mark.parametrize(
    ("collection", "dimension"),
    [("crawled_pages", 384), ("code_examples", 768), ("crawled_pages", 1536)],
)
async def test_every_search_function_answers_what_archons_own_answers(
    archon: DataLayer, collection: str, dimension: int
) -> None:
    vectors = await _ingest(archon, collection, dimension)
    seen: set[str] = set()
    cases = [
        ("cursor", {}, None),
        ("webhook token", {}, None),  # plainto_tsquery ANDs the words: no row has both
        ("throttle", {"knowledge_type": "technical"}, "src-a"),
        ("cache", {}, "src-b"),
    ]
    for n, (text, meta, source) in enumerate(cases):
        query = list(vectors[10 + n])
        if n == 3:  # far from every row: the keyword matches outrank the vector ones
            query = [-x for x in query]
        calls = [
            (f"match_archon_{collection}_multi", (query, dimension, 8, meta, source)),
            (f"hybrid_search_archon_{collection}_multi", (query, dimension, text, 8, meta, source)),
        ]
        if dimension == 1536:
            calls += [
                (f"match_archon_{collection}", (query, 8, meta, source)),
                (f"hybrid_search_archon_{collection}", (query, text, 8, meta, source)),
            ]
        for function, args in calls:
            ours = await _call(archon.engine, function, *args)
            theirs = await _call(archon.engine, f"archon_ref.{function}", *args, settings=EXACT)

            assert [row.id for row in ours] == [answer[0] for answer in _answers(ours)]
            assert _answers(ours) == _answers(theirs), (function, text)
            assert len(ours) == len(theirs) > 0
            seen.update(getattr(row, "match_type", "") for row in ours)
    assert seen >= {"vector", "keyword", "hybrid"}


async def test_the_hybrid_functions_are_not_the_layers_fusion(pg_layer: DataLayer) -> None:
    """Archon's order (similarity) is kept for its callers; ``layer.search`` fuses by rank."""
    vectors = await _ingest(pg_layer, "crawled_pages", 384)
    query = [-x for x in vectors[3]]

    rows = await _call(
        pg_layer.engine, "hybrid_search_archon_crawled_pages_multi", query, 384, "cache", 8
    )
    hits = await pg_layer.search("crawled_pages", vector=query, text="cache", k=8, mode="hybrid")

    similarities = [row.similarity for row in rows]
    assert similarities == sorted(similarities, reverse=True)
    assert [row.id for row in rows] != [hit.entity.id for hit in hits]


async def test_the_legacy_functions_search_the_1536_column(pg_layer: DataLayer) -> None:
    vectors = await _ingest(pg_layer, "crawled_pages", 1536)
    query = list(vectors[3])

    rows = await _call(pg_layer.engine, "match_archon_crawled_pages", query, 5)
    hybrid = await _call(pg_layer.engine, "hybrid_search_archon_crawled_pages", query, "cache", 5)
    hits = await pg_layer.search("crawled_pages", vector=query, k=5)

    assert [row.id for row in rows] == [hit.entity.id for hit in hits]
    assert rows[0].similarity == pytest.approx(1.0, abs=1e-5)
    # Archon's order: similarity descending, a full-text rank (which may pass 1) included.
    assert [row.similarity for row in hybrid] == sorted(
        (r.similarity for r in hybrid), reverse=True
    )
    assert (rows[0].id, rows[0].similarity) in {(row.id, row.similarity) for row in hybrid}


async def test_the_helpers_answer_what_archons_answer(archon: DataLayer) -> None:
    engine = archon.engine
    for length in (3, 384, 3072):
        vector = "[" + ",".join(["0.5"] * length) + "]"
        sql = "SELECT {}detect_embedding_dimension(CAST(:v AS vector))"
        ours = await fetch_scalar(engine, sql.format(""), v=vector)
        assert ours == await fetch_scalar(engine, sql.format("archon_ref."), v=vector) == length
    sql = "SELECT {}get_embedding_column_name(:d)"
    for dimension in (384, 768, 1024, 1536, 3072):
        ours = await fetch_scalar(engine, sql.format(""), d=dimension)
        theirs = await fetch_scalar(engine, sql.format("archon_ref."), d=dimension)
        assert ours == theirs == f"embedding_{dimension}"
    for prefix in ("", "archon_ref."):
        with pytest.raises(Exception, match="Unsupported embedding dimension: 999. Supported"):
            await fetch_scalar(engine, sql.format(prefix), d=999)
    # Beyond Archon: a length the layer added a column for has a name.
    await _ingest(archon, "crawled_pages", 100, n=4)
    assert await fetch_scalar(engine, sql.format(""), d=100) == "embedding_100"


async def _archive(engine: AsyncEngine, function: str, task: str) -> tuple[Any, list[Any]]:
    """``function(task, 'tester')`` in a transaction rolled back: its answer and the tasks."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            call = sa.text(f"SELECT {function}(CAST(:t AS uuid), 'tester')")
            answer = (await conn.execute(call, {"t": task})).scalar()
            rows = await conn.execute(
                sa.text(
                    "SELECT title, archived, archived_by, archived_at IS NOT NULL AS stamped "
                    "FROM archon_tasks ORDER BY title"
                )
            )
            return answer, [tuple(row) for row in rows]
        finally:
            await transaction.rollback()


PROJECT = "00000000-0000-0000-0000-00000000000a"


async def test_archive_task_answers_what_archons_answers(archon: DataLayer) -> None:
    statements = [
        f"INSERT INTO archon_projects (id, title) VALUES ('{PROJECT}', 'P')",
        "INSERT INTO archon_tasks (id, project_id, title) VALUES "
        "('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'a')",
        "INSERT INTO archon_tasks (project_id, parent_task_id, title) VALUES "
        "('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'b')",
        "INSERT INTO archon_tasks (project_id, parent_task_id, title, archived, archived_by) "
        "VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', "
        "'c', true, 'earlier')",
        "INSERT INTO archon_tasks (id, project_id, title, archived) VALUES "
        f"('00000000-0000-0000-0000-0000000000d1', '{PROJECT}', 'd', true)",
    ]
    for statement in statements:
        await execute(archon.engine, statement)
    tasks = {
        "with subtasks": "00000000-0000-0000-0000-0000000000a1",
        "archived already": "00000000-0000-0000-0000-0000000000d1",
        "absent": "00000000-0000-0000-0000-0000000000ff",
    }
    for case, task in tasks.items():
        ours = await _archive(archon.engine, "archive_task", task)
        theirs = await _archive(archon.engine, "archon_ref.archive_task", task)
        assert ours == theirs, case
        assert ours[0] is (case == "with subtasks")
    answer, rows = await _archive(archon.engine, "archive_task", tasks["with subtasks"])
    assert rows == [
        ("a", True, "tester", True),
        ("b", True, "tester", True),
        ("c", True, "earlier", False),
        ("d", True, None, False),
    ]


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
