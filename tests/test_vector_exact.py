"""ExactVectorIndex: the contract on every backend, plus its storage and its cache's freshness."""

from __future__ import annotations

import asyncio
import secrets
import sys
import textwrap
from functools import partial

import numpy as np
import pytest

from app.bootstrap import DataLayer
from app.config import Settings, VectorBackend, sqlite_file
from app.errors import InvalidInputError, NotFoundError, UnsupportedFeatureError
from app.vector import VectorRecord
from app.vector.factory import AutoVectorIndex, detect_vector_backend
from app.vector.sql.exact import ExactVectorIndex
from tests.support import Backend, LayerFactory, Sql
from tests.vector_contract import (
    COLLECTION,
    DIMENSION,
    ContractHarness,
    VectorIndexContract,
    chunk_fields,
    records,
)
from tests.vector_fixtures import add_chunks, clustered


class TestExactContract(VectorIndexContract):
    @pytest.fixture
    async def harness(self, make_layer: LayerFactory) -> ContractHarness:
        layer = await make_layer(vector_database="exact")
        assert isinstance(layer.vector_index, ExactVectorIndex)
        return ContractHarness(layer.vector_index, partial(add_chunks, layer.engine), False)

    # 20,000 rows take a while on a server; one backend shows the exact search is exact.
    @pytest.mark.slow
    @pytest.mark.backends("sqlite")
    async def test_recall_at_10_on_20000_clustered_vectors(self, harness: ContractHarness) -> None:
        await super().test_recall_at_10_on_20000_clustered_vectors(harness)


# ``layer`` (conftest) is a DataLayer with the exact index on the backend's database.


async def _rows(layer, n: int = 4) -> list[int]:
    return await add_chunks(layer.engine, COLLECTION, [chunk_fields(i) for i in range(n)])


# On pgvector the columns are vector(n), written by PgVectorIndex (its own suite and the contract).
@pytest.mark.backends("sqlite", "postgres", "mariadb")
async def test_vectors_are_little_endian_float32_blobs_written_in_the_unit_of_work(
    backend: Backend, layer: DataLayer, sql: Sql
) -> None:
    ids = await _rows(layer, 2)
    vectors = clustered(2, DIMENSION, seed=1)

    async with layer.uow() as uow:
        await uow.vectors.upsert(COLLECTION, records(ids, vectors, [{}, {}]))
        # left without commit: rolled back
    with_vector = "SELECT count(*) FROM archon_crawled_pages WHERE embedding_384 IS NOT NULL"
    assert await sql.scalar(with_vector) == 0

    async with layer.uow() as uow:
        await uow.vectors.upsert(COLLECTION, records(ids, vectors, [{}, {}]))
        await uow.commit()
    (row,) = await sql.all(
        "SELECT embedding_384, embedding_dimension FROM archon_crawled_pages WHERE id = :i",
        i=ids[0],
    )
    assert bytes(row.embedding_384) == vectors[0].astype("<f4").tobytes()
    assert row.embedding_dimension == DIMENSION


async def test_a_vector_for_a_missing_row_is_refused(layer: DataLayer) -> None:
    vector = clustered(1, DIMENSION)[0].tolist()
    with pytest.raises(NotFoundError, match="987654"):
        await layer.vector_index.upsert(COLLECTION, [VectorRecord(987654, vector)])


async def test_writing_a_vector_clears_the_rows_other_length(layer: DataLayer, sql: Sql) -> None:
    (rid,) = await _rows(layer, 1)
    index = layer.vector_index
    await index.upsert(COLLECTION, [VectorRecord(rid, clustered(1, 768)[0].tolist())])
    await index.upsert(COLLECTION, [VectorRecord(rid, clustered(1, 384)[0].tolist())])

    assert await index.count(COLLECTION) == 1
    assert (
        await sql.scalar(
            "SELECT count(*) FROM archon_crawled_pages WHERE embedding_768 IS NOT NULL"
        )
        == 0
    )


async def test_another_layers_writes_are_seen_at_once(make_layer: LayerFactory) -> None:
    reader = await make_layer(vector_database="exact")
    writer = await make_layer(vector_database="exact")
    ids = await _rows(reader, 3)
    vectors = clustered(3, DIMENSION, centres=3, seed=2)
    await writer.vector_index.upsert(COLLECTION, records(ids[:2], vectors[:2], [{}, {}]))
    assert len(await reader.vector_index.query(COLLECTION, vectors[2].tolist(), k=5)) == 2

    await writer.vector_index.upsert(COLLECTION, records(ids[2:], vectors[2:], [{}]))
    hits = await reader.vector_index.query(COLLECTION, vectors[2].tolist(), k=5)
    assert [h.id for h in hits][0] == ids[2] and len(hits) == 3

    await writer.vector_index.delete(COLLECTION, [ids[2]])
    hits = await reader.vector_index.query(COLLECTION, vectors[2].tolist(), k=5)
    assert ids[2] not in [h.id for h in hits]


async def test_a_row_deleted_by_plain_sql_is_never_returned(layer: DataLayer, sql: Sql) -> None:
    ids = await _rows(layer, 3)
    vectors = clustered(3, DIMENSION, centres=3, seed=3)
    index = layer.vector_index
    await index.upsert(COLLECTION, records(ids, vectors, [{}] * 3))
    assert (await index.query(COLLECTION, vectors[0].tolist(), k=1))[0].id == ids[0]

    await sql.execute("DELETE FROM archon_crawled_pages WHERE id = :i", i=ids[0])

    hits = await index.query(COLLECTION, vectors[0].tolist(), k=3)
    assert [h.id for h in hits] and ids[0] not in [h.id for h in hits]
    assert len(hits) == 2


async def test_a_rolled_back_write_never_reaches_other_queries(layer: DataLayer) -> None:
    ids = await _rows(layer, 2)
    vectors = clustered(2, DIMENSION, centres=2, seed=4)
    index = layer.vector_index
    await index.upsert(COLLECTION, records(ids[:1], vectors[:1], [{}]))

    async with layer.uow() as uow:
        await uow.vectors.upsert(COLLECTION, records(ids[1:], vectors[1:], [{}]))
        inside = await uow.vectors.query(COLLECTION, vectors[1].tolist(), k=2)
        assert [h.id for h in inside][0] == ids[1]  # the transaction sees its own write

    outside = await index.query(COLLECTION, vectors[1].tolist(), k=2)
    assert [h.id for h in outside] == [ids[0]]


@pytest.mark.backends("sqlite")
async def test_a_write_from_another_process_is_seen(layer: DataLayer, backend: Backend) -> None:
    ids = await _rows(layer, 2)
    vectors = clustered(2, DIMENSION, centres=2, seed=5)
    index = layer.vector_index
    await index.upsert(COLLECTION, records(ids[:1], vectors[:1], [{}]))
    assert len(await index.query(COLLECTION, vectors[1].tolist(), k=5)) == 1
    script = textwrap.dedent(
        f"""
        import asyncio
        from app.config import Settings
        from app.bootstrap import bootstrap
        from app.vector import VectorRecord

        async def main():
            layer = bootstrap(Settings(_env_file=None, database_url={backend.url!r},
                                       vector_database="exact"))
            await layer.vector_index.upsert(
                "crawled_pages", [VectorRecord({ids[1]}, {vectors[1].tolist()!r})])
            await layer.aclose()

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await process.wait() == 0

    hits = await index.query(COLLECTION, vectors[1].tolist(), k=5)
    assert [h.id for h in hits][0] == ids[1] and len(hits) == 2


@pytest.mark.backends("sqlite", "postgres", "mariadb")
async def test_a_new_length_gets_a_blob_column(
    backend: Backend, layer: DataLayer, sql: Sql
) -> None:
    await layer.vector_index.ensure_collection("code_examples", 100)
    await layer.vector_index.ensure_collection("code_examples", 100)  # idempotent

    types = {
        "sqlite": "SELECT type FROM pragma_table_info('archon_code_examples') "
        "WHERE name = 'embedding_100'",
        "mysql": "SELECT data_type FROM information_schema.columns WHERE table_schema = DATABASE() "
        "AND table_name = 'archon_code_examples' AND column_name = 'embedding_100'",
        "postgresql": "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'archon_code_examples'::regclass AND attname = 'embedding_100'",
    }
    found = str(await sql.scalar(types[backend.dialect])).lower()
    assert found in ("blob", "longblob", "bytea")


async def test_an_unknown_length_names_the_command_to_add_it(layer: DataLayer) -> None:
    (rid,) = await _rows(layer, 1)
    with pytest.raises(InvalidInputError, match="add-dimension 123"):
        await layer.vector_index.upsert(COLLECTION, [VectorRecord(rid, [1.0] * 123)])


@pytest.mark.backends("postgres")
async def test_a_user_without_ddl_rights_is_told_the_command(layer: DataLayer, sql: Sql) -> None:
    from sqlalchemy.engine import make_url

    from app.bootstrap import bootstrap

    role = f"archon_no_ddl_{secrets.token_hex(4)}"
    await sql.execute(f"DROP ROLE IF EXISTS {role}")
    await sql.execute(f"CREATE ROLE {role} LOGIN")
    await sql.execute(f"GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
    url = make_url(str(layer.engine.url.render_as_string(hide_password=False)))
    limited = bootstrap(
        Settings(
            _env_file=None,
            database_url=url.set(username=role).render_as_string(hide_password=False),
            vector_database="exact",
        )
    )
    try:
        with pytest.raises(UnsupportedFeatureError, match="archon-db vectors add-dimension 321"):
            await limited.vector_index.ensure_collection(COLLECTION, 321)
    finally:
        await limited.aclose()
        await sql.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        await sql.execute(f"DROP ROLE {role}")


# -- feature detection -------------------------------------------------------------------------


@pytest.mark.backends("sqlite", "postgres", "mariadb")
async def test_without_pgvector_detection_picks_chroma_or_exact(
    layer: DataLayer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = layer.settings.model_copy(update={"vector_database": None, "chroma_path": None})
    file_backed = sqlite_file(settings.database_url) is not None
    # A SQLite file gets an embedded Chroma beside it; a server database no implicit folder.
    expected = VectorBackend.CHROMA if file_backed else VectorBackend.EXACT
    assert await detect_vector_backend(layer.engine, settings) is expected
    with_path = settings.model_copy(update={"chroma_path": "/srv/chroma"})
    assert await detect_vector_backend(layer.engine, with_path) is VectorBackend.CHROMA

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chromadb" else real(name, *a)
    )
    auto = AutoVectorIndex(Settings(_env_file=None, database_url="sqlite://"), layer.engine)
    with caplog.at_level("INFO", logger="app.vector.factory"):
        chosen = await auto.resolve()
    assert isinstance(chosen, ExactVectorIndex)
    assert "using exact" in caplog.text
    assert auto.capabilities.name == "exact"


def test_an_unset_vector_database_defers_the_choice() -> None:
    from app.bootstrap import bootstrap

    layer = bootstrap(Settings(_env_file=None, database_url="sqlite+aiosqlite://"))
    assert isinstance(layer.vector_index, AutoVectorIndex)
    with pytest.raises(UnsupportedFeatureError, match="resolve"):
        _ = layer.vector_index.capabilities


def test_top_k_breaks_ties_by_id() -> None:
    from app.vector.sql.exact import top_k

    scores = np.array([0.5, 0.9, 0.5, 0.9], dtype=np.float32)
    ids = np.array([40, 30, 10, 20])
    assert [int(ids[i]) for i in top_k(scores, ids, 3)] == [20, 30, 10]


async def test_describe_counts_the_vectors_per_collection_and_length(layer: DataLayer) -> None:
    ids = await _rows(layer, 3)
    await layer.vector_index.upsert(COLLECTION, records(ids, clustered(3, 768), [{}] * 3))

    described = await layer.vector_index.describe()

    assert described["backend"] == "exact"
    assert described["vectors"]["crawled_pages"][768] == 3
    assert described["vectors"]["code_examples"][384] == 0
    assert {384, 768, 1024, 1536, 3072} <= set(await layer.vector_index.dimensions(COLLECTION))


@pytest.mark.backends("sqlite", "mariadb")
async def test_a_detected_index_serves_the_port_and_units_of_work(
    make_layer: LayerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chromadb" else real(name, *a)
    )
    layer = await make_layer(vector_database=None)
    auto = layer.vector_index
    assert isinstance(auto, AutoVectorIndex)
    ids = await _rows(layer, 3)
    vectors = clustered(3, DIMENSION, centres=3, seed=9)

    async with layer.uow() as uow:
        await uow.vectors.ensure_collection(COLLECTION, DIMENSION)
        assert await uow.vectors.upsert(COLLECTION, records(ids, vectors, [{}] * 3)) == 3
        assert uow.vectors.capabilities.name == "exact"
        await uow.commit()

    assert [h.id for h in await auto.query(COLLECTION, vectors[1].tolist(), k=1)] == [ids[1]]
    assert await auto.count(COLLECTION) == 3
    assert await auto.delete(COLLECTION, [ids[0]]) == 1
    assert await auto.delete_where(COLLECTION, {"id": ids[1]}) == 1
    await auto.upsert(COLLECTION, records(ids[:1], vectors[:1], [{}]))
    await auto.ensure_collection(COLLECTION, DIMENSION)
    assert (await auto.describe())["backend"] == "exact"  # beyond the port, once chosen
    await layer.migrate()  # may change what the database offers: detect again on next use
    assert await auto.count(COLLECTION) == 2


def test_pgvector_needs_postgresql() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.vector.factory import build_vector_index

    engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(UnsupportedFeatureError, match="needs PostgreSQL"):
        build_vector_index(VectorBackend.PGVECTOR, Settings(_env_file=None), engine)
