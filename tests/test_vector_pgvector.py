"""PgVectorIndex: the contract, plus Archon's columns, HNSW indexes and per-query tuning."""

from __future__ import annotations

import asyncio
import secrets
from functools import partial

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.bootstrap import DataLayer, bootstrap
from app.config import Settings, VectorBackend
from app.domain import CrawledPage
from app.errors import InvalidInputError, NotFoundError, UnsupportedFeatureError
from app.search import fuse, keyword_search
from app.vector import VectorRecord
from app.vector.factory import AutoVectorIndex, detect_vector_backend
from app.vector.sql.pgvector import PgVectorIndex, ef_search, hnsw_index_ddl
from tests.support import LayerFactory, Sql
from tests.vector_contract import (
    COLLECTION,
    DIMENSION,
    ContractHarness,
    VectorIndexContract,
    chunk_fields,
    records,
)
from tests.vector_fixtures import add_chunks, clustered

pytestmark = pytest.mark.backends("pgvector")


@pytest.fixture
async def pg_layer(make_layer: LayerFactory) -> DataLayer:
    return await make_layer(vector_database="pgvector")


class TestPgVectorContract(VectorIndexContract):
    @pytest.fixture
    async def harness(self, pg_layer: DataLayer) -> ContractHarness:
        assert isinstance(pg_layer.vector_index, PgVectorIndex)
        return ContractHarness(pg_layer.vector_index, partial(add_chunks, pg_layer.engine), True)


async def _index_scans(sql: Sql, index: str) -> int:
    await sql.scalar("SELECT pg_stat_force_next_flush()")
    value = await sql.scalar(
        "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = :name", name=index
    )
    return int(value or 0)


async def test_vectors_live_in_archons_columns_written_in_the_unit_of_work(
    pg_layer: DataLayer,
) -> None:
    sql = Sql(pg_layer)
    ids = await add_chunks(pg_layer.engine, COLLECTION, [chunk_fields(i) for i in range(2)])
    vectors = clustered(2, 768, seed=8)

    async with pg_layer.uow() as uow:
        await uow.vectors.upsert(COLLECTION, records(ids, vectors, [{}, {}]))
    assert (
        await sql.scalar(
            "SELECT count(*) FROM archon_crawled_pages WHERE embedding_768 IS NOT NULL"
        )
        == 0
    )

    async with pg_layer.uow() as uow:
        await uow.vectors.upsert(
            COLLECTION, records(ids, vectors, [{"embedding_model": "m-768"}] * 2)
        )
        await uow.commit()
    rows = await sql.all(
        "SELECT embedding_768::text AS v, embedding_dimension, embedding_model "
        "FROM archon_crawled_pages WHERE id = :i",
        i=ids[0],
    )
    stored = [float(x) for x in rows[0].v.strip("[]").split(",")]
    assert stored == pytest.approx(vectors[0].tolist(), rel=1e-6)
    assert (rows[0].embedding_dimension, rows[0].embedding_model) == (768, "m-768")


async def test_a_vector_for_a_missing_row_is_refused(pg_layer: DataLayer) -> None:
    with pytest.raises(NotFoundError):
        await pg_layer.vector_index.upsert(
            COLLECTION, [VectorRecord(424242, clustered(1, DIMENSION)[0].tolist())]
        )


async def test_every_archon_column_has_a_cosine_hnsw_index(pg_layer: DataLayer) -> None:
    rows = await Sql(pg_layer).all(
        "SELECT tablename, indexdef FROM pg_indexes WHERE indexname LIKE '%hnsw'"
    )
    defs = {(row.tablename, row.indexdef) for row in rows}
    for table in ("archon_crawled_pages", "archon_code_examples"):
        for dim in (384, 768, 1024, 1536):
            assert any(t == table and f"(embedding_{dim} vector_cosine_ops)" in d for t, d in defs)
        assert any(
            t == table and "halfvec(3072)) halfvec_cosine_ops" in d and "hnsw" in d for t, d in defs
        )


@pytest.mark.parametrize("dimension", [384, 3072])
async def test_queries_use_the_hnsw_index_and_set_their_tuning(
    pg_layer: DataLayer, dimension: int
) -> None:
    sql = Sql(pg_layer)
    ids = await add_chunks(pg_layer.engine, COLLECTION, [chunk_fields(i) for i in range(50)])
    vectors = clustered(50, dimension, seed=dimension)
    await pg_layer.vector_index.upsert(COLLECTION, records(ids, vectors, [{}] * 50))
    index = f"idx_archon_crawled_pages_embedding_{dimension}_hnsw"
    before = await _index_scans(sql, index)

    async def show() -> dict[str, str]:
        names = ("hnsw.ef_search", "hnsw.iterative_scan")
        return {n: (await uow.session.execute(sa.text(f"SHOW {n}"))).scalar() for n in names}

    async with pg_layer.uow() as uow:
        await uow.session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        hits = await uow.vectors.query(COLLECTION, vectors[3].tolist(), k=5)
        # Unfiltered, the connection's own ef_search (given at start-up) is the query's.
        unfiltered = await show()
        filtered = await uow.vectors.query(
            COLLECTION, vectors[3].tolist(), k=5, filters={"metadata.kind": {"ne": "none"}}
        )
        # Filtered, iterative scans are set too, inside the query's own statement.
        after_filtered = await show()
        await uow.commit()

    assert hits[0].id == ids[3] and len(hits) == 5 and filtered[0].id == ids[3]
    assert unfiltered == {"hnsw.ef_search": str(ef_search(5)), "hnsw.iterative_scan": "off"}
    assert after_filtered == {
        "hnsw.ef_search": str(ef_search(5)),
        "hnsw.iterative_scan": "relaxed_order",
    }
    for _ in range(20):
        if await _index_scans(sql, index) > before:
            break
        await asyncio.sleep(0.1)
    assert await _index_scans(sql, index) > before


async def test_a_selective_filter_through_the_index_still_returns_k_rows(
    pg_layer: DataLayer,
) -> None:
    n = 2000
    fields = [
        {**chunk_fields(i), "metadata": {"kind": "rare" if i % 100 == 0 else "common"}}
        for i in range(n)
    ]
    ids = await add_chunks(pg_layer.engine, COLLECTION, fields)
    vectors = clustered(n, DIMENSION, centres=40, seed=12)
    await pg_layer.vector_index.upsert(COLLECTION, records(ids, vectors, fields))
    rare = {ids[i] for i in range(0, n, 100)}

    async with pg_layer.uow() as uow:
        # Force the HNSW scan: without iterative scans it would stop after ef_search rows,
        # of which about 1 in 100 is rare.
        await uow.session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        hits = await uow.vectors.query(
            COLLECTION, vectors[1].tolist(), k=10, filters={"metadata.kind": "rare"}
        )

    assert len(hits) == 10
    assert {hit.id for hit in hits} <= rare


@pytest.mark.parametrize("dimension", [100, 2500, 4500])
async def test_a_new_length_gets_a_column_and_where_possible_an_index(
    pg_layer: DataLayer, dimension: int
) -> None:
    sql = Sql(pg_layer)
    await pg_layer.vector_index.ensure_collection("code_examples", dimension)
    kind = await sql.scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'archon_code_examples'::regclass AND attname = :c",
        c=f"embedding_{dimension}",
    )
    assert kind == f"vector({dimension})"
    indexdef = await sql.scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = :n",
        n=f"idx_archon_code_examples_embedding_{dimension}_hnsw",
    )
    if dimension <= 2000:
        assert "vector_cosine_ops" in indexdef
    elif dimension <= 4000:
        assert "halfvec_cosine_ops" in indexdef
    else:
        assert indexdef is None and hnsw_index_ddl("t", dimension) is None


async def test_a_user_without_ddl_rights_is_told_the_command(pg_layer: DataLayer) -> None:
    sql = Sql(pg_layer)
    role = f"archon_no_ddl_{secrets.token_hex(4)}"
    await sql.execute(f"CREATE ROLE {role} LOGIN")
    await sql.execute(f"GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
    url = make_url(pg_layer.engine.url.render_as_string(hide_password=False)).set(username=role)
    limited = bootstrap(
        Settings(
            _env_file=None,
            database_url=url.render_as_string(hide_password=False),
            vector_database="pgvector",
        )
    )
    try:
        with pytest.raises(UnsupportedFeatureError, match="archon-db vectors add-dimension 333"):
            await limited.vector_index.ensure_collection(COLLECTION, 333)
        with pytest.raises(InvalidInputError, match="add-dimension 333"):
            await limited.vector_index.query(COLLECTION, [1.0] * 333, k=1)
    finally:
        await limited.aclose()
        await sql.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        await sql.execute(f"DROP ROLE {role}")


async def test_works_through_a_transaction_pooler(make_pooled_layer: LayerFactory) -> None:
    layer = await make_pooled_layer(vector_database="pgvector")
    ids = await add_chunks(layer.engine, COLLECTION, [chunk_fields(i) for i in range(20)])
    vectors = clustered(20, DIMENSION, seed=13)

    async def one(i: int) -> int:
        async with layer.uow() as uow:
            await uow.vectors.upsert(COLLECTION, records([ids[i]], vectors[i : i + 1], [{}]))
            await uow.commit()
        (hit,) = await layer.vector_index.query(COLLECTION, vectors[i].tolist(), k=1)
        return int(hit.id)

    assert await asyncio.gather(*(one(i) for i in range(20))) == ids


async def test_detection_picks_pgvector_when_the_extension_is_there(
    pg_layer: DataLayer, caplog: pytest.LogCaptureFixture
) -> None:
    assert await detect_vector_backend(pg_layer.engine, pg_layer.settings) is VectorBackend.PGVECTOR
    settings = Settings(_env_file=None, database_url=str(pg_layer.engine.url))
    auto = AutoVectorIndex(settings, pg_layer.engine)
    with caplog.at_level("INFO", logger="app.vector.factory"):
        assert isinstance(await auto.resolve(), PgVectorIndex)
    assert "using pgvector" in caplog.text


def test_ef_search_grows_with_k_within_pgvectors_limit() -> None:
    assert ef_search(1) == 64
    assert ef_search(100) == 200
    assert ef_search(5000) == 1000


async def test_describe_tells_pgvectors_version_and_the_stored_vectors(
    pg_layer: DataLayer,
) -> None:
    ids = await add_chunks(pg_layer.engine, COLLECTION, [chunk_fields(i) for i in range(2)])
    await pg_layer.vector_index.upsert(COLLECTION, records(ids, clustered(2, 1024), [{}] * 2))

    described = await pg_layer.vector_index.describe()

    assert described["backend"] == "pgvector" and described["iterative scans"] is True
    assert described["pgvector"].startswith("0.8")
    assert described["vectors"]["crawled_pages"][1024] == 2


async def test_the_search_settings_govern_the_scan_in_the_querys_own_statement(
    pg_layer: DataLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await add_chunks(pg_layer.engine, COLLECTION, [chunk_fields(i) for i in range(50)])
    vectors = clustered(50, DIMENSION, seed=4)
    await pg_layer.vector_index.upsert(COLLECTION, records(ids, vectors, [{}] * 50))
    monkeypatch.setattr("app.vector.sql.pgvector.ef_search", lambda k: 1)
    monkeypatch.setattr("app.vector.sql.pgvector.ITERATIVE_SCANS", (999,))
    statements: list[str] = []
    sa.event.listen(
        pg_layer.engine.sync_engine,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )

    async with pg_layer.uow() as uow:
        await uow.session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        statements.clear()
        hits = await uow.vectors.query(COLLECTION, vectors[3].tolist(), k=5)
        rows = await uow.vectors.query_entities(COLLECTION, vectors[3].tolist(), k=5)

    # ef_search = 1 reached the HNSW scan: it stopped after one candidate.
    assert [hit.id for hit in hits] == [ids[3]]
    assert [entity.id for entity, _ in rows] == [ids[3]]
    assert len(statements) == 2 and all("set_config" in s for s in statements)


async def test_vector_search_is_one_statement_with_the_rows(pg_layer: DataLayer) -> None:
    ids = await add_chunks(pg_layer.engine, COLLECTION, [chunk_fields(i) for i in range(20)])
    vectors = clustered(20, DIMENSION, seed=5)
    await pg_layer.vector_index.upsert(COLLECTION, records(ids, vectors, [{}] * 20))
    statements: list[str] = []
    sa.event.listen(
        pg_layer.engine.sync_engine,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )

    hits = await pg_layer.search(COLLECTION, vector=vectors[7].tolist(), k=3, mode="vector")

    assert hits[0].entity.id == ids[7] and len(hits) == 3
    stored = await Sql(pg_layer).scalar(
        "SELECT content FROM archon_crawled_pages WHERE id = :i", i=ids[7]
    )
    assert hits[0].entity.content == stored
    assert hits[0].match_type == "vector" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert len(statements) == 1


async def test_hybrid_search_is_one_statement_giving_the_fused_lists(pg_layer: DataLayer) -> None:
    words = ["cache", "token", "retry", "cursor"]
    rows = [
        {**chunk_fields(i), "content": f"chunk {i} about {words[i % 4]} and {words[i % 3]}"}
        for i in range(40)
    ]
    ids = await add_chunks(pg_layer.engine, COLLECTION, rows)
    vectors = clustered(40, DIMENSION, seed=6)
    await pg_layer.vector_index.upsert(COLLECTION, records(ids, vectors, [{}] * 40))
    statements: list[str] = []
    for engine in (pg_layer.engine, *pg_layer.read_engines):
        sa.event.listen(
            engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2])
        )
    cases: list[tuple[int, str, dict | None]] = [
        (3, "cache", None),
        (8, "token retry", None),
        (12, "cursor", {"metadata": {"contains": {"flag": True}}}),
        (20, "nothing matches this", None),
    ]
    for position, text, filters in cases:
        query = vectors[position].tolist()
        statements.clear()

        hits = await pg_layer.search(
            COLLECTION, vector=query, text=text, k=8, filters=filters, mode="hybrid"
        )

        # One statement; search settings inside it only when filtered (iterative scans): the
        # connections start with the ef_search of a top-8 query.
        assert len(statements) == 1
        assert ("set_config" in statements[0]) == (filters is not None)
        # The plan run step by step: nearest rows, keyword list, fusion in Python.
        async with pg_layer.uow(read_only=True) as uow:
            nearest = await uow.vectors.query(COLLECTION, query, 8, filters)
            keyword = await keyword_search(uow.session, COLLECTION, text, 8, filters)
        by_vector = [(int(hit.id), hit.score) for hit in nearest]
        expected = fuse(by_vector, keyword, 8)
        assert [(h.entity.id, h.score, h.match_type) for h in hits] == expected
        stored = await Sql(pg_layer).scalar(
            "SELECT content FROM archon_crawled_pages WHERE id = :i", i=hits[0].entity.id
        )
        assert hits[0].entity.content == stored
    assert {hit.match_type for hit in hits} == {"vector"}


async def test_search_hits_are_detached_entities_with_every_column(pg_layer: DataLayer) -> None:
    ids = await add_chunks(pg_layer.engine, COLLECTION, [chunk_fields(i) for i in range(5)])
    vectors = clustered(5, DIMENSION, seed=9)
    await pg_layer.vector_index.upsert(COLLECTION, records(ids, vectors, [{}] * 5))

    for mode, text in (("vector", None), ("hybrid", "chunk")):
        hits = await pg_layer.search(
            COLLECTION,
            vector=vectors[2].tolist(),
            text=text,
            k=3,
            mode=mode,  # type: ignore[arg-type]
        )
        entity = hits[0].entity
        assert isinstance(entity, CrawledPage) and entity.id == ids[2]
        state = sa.inspect(entity)
        assert state.detached and state.identity == (ids[2],)
        async with pg_layer.uow(read_only=True) as uow:
            stored = await uow.pages.get(ids[2])
            assert stored.model_dump() == entity.model_dump()
            assert stored is not entity
