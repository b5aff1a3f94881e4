"""bulk_insert: rows and the columns the model does not map (embeddings) in one write, ids set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import make_transient_to_detached

from app.bootstrap import DataLayer
from app.domain import CrawledPage, Source
from app.errors import ConflictError, InvalidInputError, UnsupportedFeatureError, translate_errors
from app.repositories import bulk_insert
from app.repositories.bulk_insert import insert_with_columns
from app.repositories.validation import columns_of
from app.vector.sql.common import pgvector_extension, register_pgvector
from app.vector.sql.exact import encode_blob
from tests.support import LayerFactory, Sql

DIMENSION = 384
COLUMN = f"embedding_{DIMENSION}"


@pytest.fixture
async def bulk_layer(make_layer: LayerFactory, backend: Any) -> DataLayer:
    return await make_layer(vector_database="pgvector" if backend.has_pgvector else "exact")


def _chunks(count: int, source: str = "s1", start: int = 0) -> list[CrawledPage]:
    return [
        CrawledPage(
            url=f"https://example.com/{source}/{i // 4}",
            chunk_number=i % 4,
            content=f"chunk {i}",
            metadata_={"n": i},
            source_id=source,
            embedding_dimension=DIMENSION,
        )
        for i in range(start, start + count)
    ]


def _vectors(count: int) -> np.ndarray:
    rng = np.random.default_rng(count)
    matrix = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def _column_values(session: Any, vectors: np.ndarray) -> list[Any]:
    """Vectors as the embedding column takes them: pgvector's codec, or float32 blobs."""
    found = await pgvector_extension(session)
    if found is None:
        return [encode_blob(v) for v in vectors]
    await register_pgvector(session, found[0])
    return list(vectors)


async def _insert(layer: DataLayer, chunks: list[CrawledPage], vectors: np.ndarray) -> None:
    async with layer.uow() as uow:
        await uow.sources.upsert_many([Source(source_id=chunks[0].source_id)], on=["source_id"])
        uow.pages._validator.many(chunks)
        values = await _column_values(uow.session, vectors)
        with translate_errors("adding chunks"):
            async with uow.session.begin_nested():
                await insert_with_columns(
                    uow.session, columns_of(CrawledPage), chunks, {COLUMN: values}
                )
        for chunk in chunks:
            make_transient_to_detached(chunk)
            uow.session.add(chunk)
        assert await uow.pages.get(chunks[0].id) is chunks[0]
        await uow.commit()


@pytest.mark.parametrize("count", [3, 100])  # a multi-row INSERT; COPY on PostgreSQL
async def test_rows_and_vectors_are_written_at_once_with_ids_in_order(
    bulk_layer: DataLayer, sql: Sql, count: int
) -> None:
    chunks, vectors = _chunks(count), _vectors(count)

    await _insert(bulk_layer, chunks, vectors)

    ids = [chunk.id for chunk in chunks]
    assert None not in ids and ids == sorted(ids)
    rows = await sql.all(
        f"SELECT id, chunk_number, content FROM archon_crawled_pages "
        f"WHERE {COLUMN} IS NOT NULL ORDER BY id"
    )
    assert [(r.id, r.content) for r in rows] == [(c.id, c.content) for c in chunks]


async def test_the_stored_vector_is_the_one_given(bulk_layer: DataLayer, sql: Sql) -> None:
    chunks, vectors = _chunks(70), _vectors(70)
    await _insert(bulk_layer, chunks, vectors)

    hits = await bulk_layer.vector_index.query("crawled_pages", vectors[5].tolist(), k=1)

    assert [hit.id for hit in hits] == [chunks[5].id]


async def test_given_ids_are_kept(bulk_layer: DataLayer, sql: Sql) -> None:
    chunks = _chunks(2)
    chunks[0].id, chunks[1].id = 1001, 1002

    await _insert(bulk_layer, chunks, _vectors(2))

    assert await sql.scalar("SELECT count(*) FROM archon_crawled_pages WHERE id > 1000") == 2


@pytest.mark.backends("pgvector", "postgres")
async def test_copy_mixes_given_and_drawn_ids_across_its_slices(
    bulk_layer: DataLayer, sql: Sql
) -> None:
    chunks, vectors = _chunks(150), _vectors(150)  # COPY's records are made 64 at a time
    given = {10: 10_010, 64: 10_064, 149: 10_149}
    for index, key in given.items():
        chunks[index].id = key

    await _insert(bulk_layer, chunks, vectors)

    assert all(chunks[i].id == key for i, key in given.items())
    drawn = [c.id for i, c in enumerate(chunks) if i not in given]
    assert None not in drawn and drawn == sorted(drawn) and len(set(drawn)) == 147
    rows = await sql.all("SELECT id, content FROM archon_crawled_pages ORDER BY id")
    assert sorted((r.id, r.content) for r in rows) == sorted((c.id, c.content) for c in chunks)


@pytest.mark.parametrize("count", [2, 80])
async def test_a_duplicate_is_a_conflict_and_leaves_the_unit_of_work_usable(
    bulk_layer: DataLayer, sql: Sql, count: int
) -> None:
    await _insert(bulk_layer, _chunks(1), _vectors(1))
    chunks = _chunks(count)  # the first has the stored chunk's (url, chunk_number)

    async with bulk_layer.uow() as uow:
        values = await _column_values(uow.session, _vectors(count))
        with pytest.raises(ConflictError), translate_errors("adding chunks"):
            async with uow.session.begin_nested():
                await insert_with_columns(
                    uow.session, columns_of(CrawledPage), chunks, {COLUMN: values}
                )
        assert await uow.pages.count() == 1
        await uow.commit()

    assert await sql.scalar("SELECT count(*) FROM archon_crawled_pages") == 1


@pytest.mark.backends("mariadb", "sqlite", "postgres")
async def test_blob_columns_keep_every_byte_value(bulk_layer: DataLayer, sql: Sql) -> None:
    # Every byte value, quotes, backslash, NUL and ^Z included, at both ends of a blob: MariaDB
    # receives blobs as hex text decoded by UNHEX, not as escaped bytes.
    every = bytes(range(256)) * 6  # 384 float32s' worth
    blobs = [every, every[::-1], None]
    chunks = _chunks(3)
    async with bulk_layer.uow() as uow:
        await uow.sources.upsert_many([Source(source_id="s1")], on=["source_id"])
        sent = _statements(bulk_layer)
        async with uow.session.begin_nested():
            await insert_with_columns(uow.session, columns_of(CrawledPage), chunks, {COLUMN: blobs})
        await uow.commit()

    rows = await sql.all(f"SELECT {COLUMN} AS stored FROM archon_crawled_pages ORDER BY id")
    assert [None if r.stored is None else bytes(r.stored) for r in rows] == blobs
    if bulk_layer.dialect_name in ("mysql", "mariadb"):
        insert = next(s for s in sent if s.lstrip().upper().startswith("INSERT"))
        assert "unhex(" in insert.lower()


async def test_extra_values_are_checked_before_any_sql(bulk_layer: DataLayer) -> None:
    columns = columns_of(CrawledPage)
    async with bulk_layer.uow() as uow:
        with pytest.raises(InvalidInputError, match="2 values"):
            await insert_with_columns(uow.session, columns, _chunks(3), {COLUMN: [b"", b""]})
        with pytest.raises(InvalidInputError, match="column of the model"):
            await insert_with_columns(uow.session, columns, _chunks(1), {"content": ["x"]})
        assert await insert_with_columns(uow.session, columns, [], {}) == []


async def test_without_returning_the_caller_is_told_to_insert_then_update(
    bulk_layer: DataLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_insert, "returns_ids", lambda dialect: False)
    monkeypatch.setattr(bulk_insert, "can_copy", lambda dialect: False)

    async with bulk_layer.uow() as uow:
        assert not bulk_insert.can_insert_with_columns(uow.session.bind.dialect)
        with pytest.raises(UnsupportedFeatureError, match="RETURNING"):
            await insert_with_columns(uow.session, columns_of(CrawledPage), _chunks(1), {})


def _statements(layer: DataLayer) -> list[str]:
    """The SQL statements sent through ``layer``'s engine from now on."""
    import sqlalchemy as sa

    sent: list[str] = []
    sa.event.listen(
        layer.engine.sync_engine, "before_cursor_execute", lambda *args: sent.append(args[2])
    )
    return sent


async def test_add_many_sends_one_insert_per_batch_with_ids_in_input_order(
    bulk_layer: DataLayer, sql: Sql
) -> None:
    chunks = _chunks(300)
    async with bulk_layer.uow() as uow:
        await uow.sources.upsert_many([Source(source_id="s1")], on=["source_id"])
        sent = _statements(bulk_layer)
        await uow.pages.add_many(chunks)
        await uow.commit()

    inserts = [s for s in sent if s.lstrip().upper().startswith("INSERT")]
    assert 1 <= len(inserts) <= 2  # not one per row (SQLite used to send 300)
    rows = await sql.all("SELECT id, content FROM archon_crawled_pages ORDER BY id")
    assert [(r.id, r.content) for r in rows] == [(c.id, c.content) for c in chunks]


def test_mysql_statements_are_bounded_by_bytes_as_well_as_parameters() -> None:
    from app.repositories.batching import STATEMENT_BYTES, batches, value_bytes

    rows = [{"content": "x" * 100_000, "n": i} for i in range(200)]
    chunks = list(batches(rows, 2, lambda row: value_bytes(row.values())))

    assert sum(len(chunk) for chunk in chunks) == 200 and len(chunks) > 1
    assert all(sum(value_bytes(r.values()) for r in c) <= STATEMENT_BYTES for c in chunks)
    assert [len(c) for c in batches(rows, 2)] == [200]  # elsewhere: parameters and rows only
