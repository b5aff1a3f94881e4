"""Vectors that cannot drift: what a database's life does to an external store (real Chroma).

The rows are the system of record; Chroma holds a copy named by the database's identity. These
tests delete and reuse, delete the database, downgrade it, remove the store, switch the index,
change a vector behind the store's back, and check the store against the rows with plain SQL.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.bootstrap import DataLayer, bootstrap
from app.config import Settings
from app.domain import CrawledPage, Source
from app.errors import InvalidInputError, NotFoundError
from app.vector.port import VectorRecord
from tests.support import Backend, LayerFactory, execute, fetch_all, fetch_scalar
from tests.vector_fixtures import clustered

COLLECTION = "crawled_pages"
VECTORS = clustered(60, 384, centres=6, seed=5)


@pytest.fixture
async def chroma_layer(make_layer: LayerFactory, tmp_path: Path) -> DataLayer:
    return await make_layer(vector_database="chroma", chroma_path=str(tmp_path / "store"))


def pages(source_id: str, n: int, *, start: int = 0) -> list[tuple[CrawledPage, np.ndarray]]:
    return [
        (
            CrawledPage(url=f"https://{source_id}.test/{i}", chunk_number=0,
                        content=f"{source_id} page {i}", source_id=source_id),
            VECTORS[(start + i) % len(VECTORS)],
        )
        for i in range(n)
    ]  # fmt: skip


def own_layer(url: str, store: str) -> DataLayer:
    """A layer on a database file of the test's own (not the session's shared one)."""
    settings = Settings(
        _env_file=None, database_url=url, vector_database="chroma", chroma_path=store
    )
    return bootstrap(settings)


async def ingest(layer: DataLayer, source_id: str, n: int, *, start: int = 0) -> list[int]:
    items = pages(source_id, n, start=start)
    await layer.ingest(Source(source_id=source_id, title=source_id), items)
    return [int(chunk.id) for chunk, _ in items if chunk.id is not None]


async def store_ids(layer: DataLayer) -> set[str]:
    feed = await layer.vector_feed()
    assert feed is not None
    found: set[str] = set()
    for dimension in await feed.store.dimensions(COLLECTION):
        found.update(await feed.store.stored_ids(COLLECTION, dimension))
    return found


async def row_vector_ids(layer: DataLayer) -> set[str]:
    rows = await fetch_all(
        layer, "SELECT id FROM archon_crawled_pages WHERE embedding_384 IS NOT NULL"
    )
    return {str(row.id) for row in rows}


async def assert_level(layer: DataLayer) -> None:
    """The store holds exactly the rows' vectors, id by id (and reconcile agrees)."""
    assert await store_ids(layer) == await row_vector_ids(layer)
    checks = await layer.reconcile_vectors()
    assert all(check.level for check in checks), checks


async def test_a_deleted_rows_vector_never_answers_for_a_new_row(chroma_layer: DataLayer) -> None:
    old = await ingest(chroma_layer, "src-old", 20)
    async with chroma_layer.uow() as uow:
        assert await uow.sources.delete_with_content("src-old") > 0
        await uow.commit()
    await assert_level(chroma_layer)

    # New rows, without vectors: with reused ids the old vectors would answer for them.
    async with chroma_layer.uow() as uow:
        await uow.sources.add(Source(source_id="src-new", title="new"))
        fresh = await uow.pages.add_many(
            CrawledPage(url=f"https://new.test/{i}", chunk_number=0, content="unrelated",
                        source_id="src-new")
            for i in range(25)
        )  # fmt: skip
        await uow.commit()
    assert min(int(p.id or 0) for p in fresh) > max(old)  # ids are never handed out again
    for position in range(20):
        hits = await chroma_layer.search(COLLECTION, vector=list(VECTORS[position]), k=5)
        assert hits == []


async def test_deleting_a_source_reaches_the_store_through_the_cascade(
    chroma_layer: DataLayer,
) -> None:
    keep = await ingest(chroma_layer, "src-keep", 6)
    await ingest(chroma_layer, "src-gone", 9, start=10)
    async with chroma_layer.uow() as uow:
        assert await uow.sources.delete("src-gone")  # the database cascades to the pages
        await uow.commit()

    assert await store_ids(chroma_layer) == {str(i) for i in keep}
    await assert_level(chroma_layer)


async def test_reingesting_a_url_replaces_its_vectors_in_the_store(
    chroma_layer: DataLayer,
) -> None:
    first = await ingest(chroma_layer, "src-a", 8)
    second = await ingest(chroma_layer, "src-a", 8, start=30)  # same URLs, new chunks

    assert not set(first) & set(second)
    assert await store_ids(chroma_layer) == {str(i) for i in second}
    hits = await chroma_layer.search(COLLECTION, vector=list(VECTORS[30]), k=1)
    assert hits[0].entity.id == second[0] and hits[0].score == pytest.approx(1.0, abs=1e-4)


async def test_a_vector_changed_behind_the_store_is_never_attributed_and_reconcile_fixes_it(
    chroma_layer: DataLayer, backend: Backend
) -> None:
    ids = await ingest(chroma_layer, "src-a", 12)
    # Behind the store's back: row ids[0] gets another vector, row ids[1] loses its vector.
    other = VECTORS[40].astype("<f4")
    if backend.has_pgvector:
        value: object = "[" + ",".join(map(str, other.tolist())) + "]"
        cast = "CAST(CAST(:v AS TEXT) AS vector)"
        await execute(chroma_layer, f"UPDATE archon_crawled_pages SET embedding_384 = {cast} "
                      "WHERE id = :id", v=value, id=ids[0])  # fmt: skip
    else:
        await execute(chroma_layer, "UPDATE archon_crawled_pages SET embedding_384 = :v "
                      "WHERE id = :id", v=other.tobytes(), id=ids[0])  # fmt: skip
    await execute(chroma_layer, "UPDATE archon_crawled_pages SET embedding_384 = NULL "
                  "WHERE id = :id", id=ids[1])  # fmt: skip

    for position in (0, 1):
        hits = await chroma_layer.search(COLLECTION, vector=list(VECTORS[position]), k=5)
        assert ids[position] not in [hit.entity.id for hit in hits]
        assert len(hits) == 5  # more candidates were fetched for the dropped one
    feed = await chroma_layer.vector_feed()
    assert feed is not None and feed.dropped_hits >= 2

    (check, _) = await chroma_layer.reconcile_vectors()
    assert (check.orphans, check.stale, check.missing) == (1, 1, 0)
    await chroma_layer.reconcile_vectors(apply=True)
    await assert_level(chroma_layer)
    hits = await chroma_layer.search(COLLECTION, vector=list(VECTORS[40]), k=1)
    assert hits[0].entity.id == ids[0]


@pytest.mark.backends("sqlite")
async def test_a_removed_store_folder_is_rebuilt_from_the_rows(
    chroma_layer: DataLayer, tmp_path: Path
) -> None:
    ids = await ingest(chroma_layer, "src-a", 40)
    await chroma_layer.vector_index.aclose()
    shutil.rmtree(tmp_path / "store")

    # The store is gone, the rows are not: search answers from them (and says what to run).
    hits = await chroma_layer.search(COLLECTION, vector=list(VECTORS[0]), k=3)
    assert len(hits) == 3 and hits[0].entity.id == ids[0]
    (check, _) = await chroma_layer.reconcile_vectors()
    assert check.missing == 40 and check.rows == 40

    reports = await chroma_layer.rebuild_vectors()
    assert reports[0].records == 40
    await assert_level(chroma_layer)
    for position, row_id in enumerate(ids):  # every vector's nearest neighbour is itself
        (hit,) = await chroma_layer.search(COLLECTION, vector=list(VECTORS[position]), k=1)
        assert hit.entity.id == row_id


@pytest.mark.backends("sqlite")
async def test_a_recreated_database_never_reads_the_old_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archon.db'}"
    store = str(tmp_path / "store")
    first = own_layer(url, store)
    await first.migrate()
    await ingest(first, "src-a", 30)
    await first.aclose()
    (tmp_path / "archon.db").unlink()  # the database goes; its store folder stays

    second = own_layer(url, store)
    await second.migrate()
    ids = await ingest(second, "src-b", 12, start=30)

    for k in (1, 5, 10):
        hits = await second.search(COLLECTION, vector=list(VECTORS[30]), k=k)
        assert len(hits) == k and {h.entity.id for h in hits} <= set(ids)
    await assert_level(second)
    feed = await second.vector_feed()
    assert feed is not None and await feed.store.foreign()  # the old life's, never read
    await second.aclose()


@pytest.mark.backends("sqlite")
async def test_downgrade_base_drops_the_old_lifes_collections(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archon.db'}"
    chroma_layer = own_layer(url, str(tmp_path / "store"))
    await chroma_layer.migrate()
    await ingest(chroma_layer, "src-a", 10)
    feed = await chroma_layer.vector_feed()
    assert feed is not None
    old_namespace = feed.namespace

    await chroma_layer.downgrade("base")
    await chroma_layer.migrate()
    ids = await ingest(chroma_layer, "src-b", 10, start=20)

    assert feed.namespace != old_namespace
    assert await feed.store.foreign() == []  # the downgrade took its collections with it
    hits = await chroma_layer.search(COLLECTION, vector=list(VECTORS[20]), k=10)
    assert [h.entity.id for h in hits][0] == ids[0] and len(hits) == 10
    await assert_level(chroma_layer)
    await chroma_layer.aclose()


async def test_switching_exact_chroma_exact_is_consistent_after_rebuild(
    make_layer: LayerFactory, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    chroma = await make_layer(vector_database="chroma", chroma_path=store)
    ids = await ingest(chroma, "src-a", 10)

    exact = await make_layer(vector_database="exact")
    await exact.start()  # the database no longer feeds the store
    more = await ingest(exact, "src-b", 10, start=20)
    async with exact.uow() as uow:
        await uow.pages.delete(ids[0])
        await uow.commit()
    hits = await exact.search(COLLECTION, vector=list(VECTORS[20]), k=1, mode="vector")
    assert hits[0].entity.id == more[0]

    back = await make_layer(vector_database="chroma", chroma_path=store)
    (check, _) = await back.reconcile_vectors()
    assert not check.level  # the store missed what the exact index wrote
    await back.rebuild_vectors()
    await assert_level(back)
    for position, row_id in [(1, ids[1]), (20, more[0])]:
        (hit,) = await back.search(COLLECTION, vector=list(VECTORS[position]), k=1)
        assert hit.entity.id == row_id

    again = await make_layer(vector_database="exact")
    (hit,) = await again.search(COLLECTION, vector=list(VECTORS[1]), k=1, mode="vector")
    assert hit.entity.id == ids[1]


async def test_uow_vectors_upsert_derives_the_store_record_from_the_row(
    chroma_layer: DataLayer,
) -> None:
    async with chroma_layer.uow() as uow:
        await uow.sources.add(Source(source_id="src-a", title="a"))
        (page,) = await uow.pages.add_many([
            CrawledPage(url="https://a.test/x", chunk_number=3, content="the text",
                        source_id="src-a", metadata_={"kind": "doc"})
        ])  # fmt: skip
        assert page.id is not None
        # Metadata given with the vector is not kept apart from the row: filters see the row.
        record = VectorRecord(page.id, list(VECTORS[0]), {"source_id": "elsewhere"})
        await uow.vectors.upsert(COLLECTION, [record])
        await uow.commit()

    index = chroma_layer.vector_index
    (hit,) = await index.query(COLLECTION, list(VECTORS[0]), k=1, filters={"source_id": "src-a"})
    assert hit.metadata["url"] == "https://a.test/x" and hit.metadata["chunk_number"] == 3
    assert hit.metadata["metadata"] == {"kind": "doc"}
    hits = await chroma_layer.search(
        COLLECTION, vector=list(VECTORS[0]), k=1, filters={"metadata.kind": "doc"}
    )
    assert hits[0].entity.id == page.id


async def test_the_identity_is_made_with_the_schema(chroma_layer: DataLayer) -> None:
    identity = await fetch_scalar(
        chroma_layer, "SELECT identity FROM archon_database_identity WHERE id = 1"
    )
    assert len(str(identity)) == 36
    await ingest(chroma_layer, "src-a", 2)
    feed = await chroma_layer.vector_feed()
    assert feed is not None and feed.namespace is not None
    names = await feed.store.dimensions(COLLECTION)
    assert 384 in names
    assert feed.namespace[1:] == str(identity).replace("-", "")[:15]


async def test_a_changed_row_changes_its_store_record(chroma_layer: DataLayer) -> None:
    ids = await ingest(chroma_layer, "src-a", 6)
    async with chroma_layer.uow() as uow:
        await uow.sources.add(Source(source_id="src-b", title="b"))
        await uow.pages.update(ids[2], {"source_id": "src-b", "metadata_": {"tag": "new"}})
        await uow.commit()

    for filters in ({"source_id": "src-b"}, {"metadata.tag": "new"}):
        hits = await chroma_layer.search(COLLECTION, vector=list(VECTORS[2]), k=5, filters=filters)
        assert [hit.entity.id for hit in hits] == [ids[2]]
    others = await chroma_layer.search(
        COLLECTION, vector=list(VECTORS[2]), k=10, filters={"source_id": "src-a"}
    )
    assert len(others) == 5 and ids[2] not in {hit.entity.id for hit in others}
    await assert_level(chroma_layer)


async def test_reconcile_finds_a_record_whose_fields_differ_from_its_row(
    chroma_layer: DataLayer,
) -> None:
    ids = await ingest(chroma_layer, "src-a", 4)
    feed = await chroma_layer.vector_feed()
    assert feed is not None
    # Behind the layer's back, the store's copy of one row says another source.
    wrong = VectorRecord(ids[1], list(VECTORS[1]), {"source_id": "src-zzz", "url": "x"})
    await feed.store.upsert(COLLECTION, [wrong])

    (check, _) = await chroma_layer.reconcile_vectors()
    assert (check.stale, check.orphans, check.missing) == (1, 0, 0)
    (check, _) = await chroma_layer.reconcile_vectors(apply=True)
    assert check.repaired == 1
    await assert_level(chroma_layer)


async def test_filters_the_store_cannot_answer_are_answered_by_the_rows(
    chroma_layer: DataLayer,
) -> None:
    ids = await ingest(chroma_layer, "src-a", 10)
    exact_hits = await chroma_layer.search(
        COLLECTION, vector=list(VECTORS[0]), k=3, filters={"id": {"in": ids[4:8]}}
    )
    assert [h.entity.id for h in exact_hits][0] in ids[4:8] and len(exact_hits) == 3
    liked = await chroma_layer.search(
        COLLECTION, vector=list(VECTORS[3]), k=2, filters={"content": {"like": "%page 3"}}
    )
    assert [h.entity.id for h in liked] == [ids[3]]
    for bad in ({"nope": 1}, {"chunk_number": {"gt": "x"}}):
        with pytest.raises(InvalidInputError):
            await chroma_layer.search(COLLECTION, vector=list(VECTORS[0]), k=3, filters=bad)


async def test_bad_row_ids_are_refused_before_sql(chroma_layer: DataLayer) -> None:
    async with chroma_layer.uow() as uow:
        for bad in (2**63, 0, True, 1.5, "x"):
            with pytest.raises(InvalidInputError):
                await uow.vectors.upsert(COLLECTION, [VectorRecord(bad, list(VECTORS[0]))])
            with pytest.raises(InvalidInputError):
                await uow.vectors.delete(COLLECTION, [bad])


async def test_concurrent_writers_leave_the_store_level(
    make_layer: LayerFactory, tmp_path: Path
) -> None:
    layer = await make_layer(vector_database="chroma", chroma_path=str(tmp_path / "store"))
    await ingest(layer, "src-a", 3)

    async def reingest(worker: int) -> None:
        for step in range(8):
            await ingest(layer, "src-a", 3, start=(worker * 8 + step) % 50)

    async def delete() -> None:
        for _ in range(8):

            async def work(uow: Any) -> None:
                await uow.pages.delete_by_urls([f"https://src-a.test/{i}" for i in range(3)])

            await layer.run_in_transaction(work)

    async def reembed() -> None:
        for step in range(8):

            async def work(uow: Any, step: int = step) -> None:
                found = await uow.pages.list({"source_id": "src-a"})
                records = [VectorRecord(p.id, list(VECTORS[(step + 7) % 50])) for p in found]
                await uow.vectors.upsert(COLLECTION, records)

            try:
                await layer.run_in_transaction(work)
            except NotFoundError:
                pass  # a page went meanwhile: a concurrent delete won

    await asyncio.gather(reingest(0), reingest(1), delete(), reembed())
    await layer.start()  # what `vectors sync` does: any operation left pending is applied
    await assert_level(layer)
