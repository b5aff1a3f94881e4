"""``layer.ingest`` on every backend: one Unit of Work stores a source, its chunks and vectors."""

from __future__ import annotations

import numpy as np
import pytest

from app.bootstrap import DataLayer
from app.domain import CodeExample, CrawledPage, Source
from app.errors import ConflictError, InvalidInputError
from app.testing.factories import CodeExampleFactory, CrawledPageFactory, SourceFactory
from app.vector import VectorRecord
from tests.support import Sql
from tests.vector_fixtures import clustered, vector_layer

__all__ = ["vector_layer"]  # the fixture, imported to be found


def _pages(source: Source, urls: dict[str, int], **fields: object) -> list[CrawledPage]:
    return [
        CrawledPageFactory.build(source=source, url=url, chunk_number=n, **fields)
        for url, count in urls.items()
        for n in range(count)
    ]


def _items(chunks: list, dimension: int = 384, seed: int = 0) -> list:  # type: ignore[type-arg]
    vectors = clustered(len(chunks), dimension, centres=len(chunks), seed=seed)
    return [(chunk, vector.tolist()) for chunk, vector in zip(chunks, vectors, strict=True)]


async def test_ingest_stores_the_source_chunks_and_vectors(vector_layer: DataLayer) -> None:
    sql = Sql(vector_layer)
    source = SourceFactory.build()
    items = _items(_pages(source, {"https://d.example.com/a": 4, "https://d.example.com/b": 3}))
    progress: list[tuple[int, int]] = []

    report = await vector_layer.ingest(
        source,
        items,
        embedding_model="mini-lm",
        batch_size=3,
        on_progress=lambda done, total: progress.append((done, total)),
    )

    assert (report.written, report.vectors, report.replaced, report.urls) == (7, 7, 0, 2)
    assert (report.collection, report.dimension, report.embedding_model) == (
        "crawled_pages",
        384,
        "mini-lm",
    )
    assert progress == [(3, 7), (6, 7), (7, 7)]
    assert (
        await sql.scalar(
            "SELECT count(*) FROM archon_sources WHERE source_id = :s", s=source.source_id
        )
        == 1
    )
    rows = await sql.all(
        "SELECT embedding_model, embedding_dimension, embedding_384 IS NOT NULL AS has_vector "
        "FROM archon_crawled_pages WHERE source_id = :s",
        s=source.source_id,
    )
    assert len(rows) == 7
    assert {(r.embedding_model, r.embedding_dimension, bool(r.has_vector)) for r in rows} == {
        ("mini-lm", 384, True)
    }


async def test_ingesting_again_replaces_the_chunks_of_those_urls(vector_layer: DataLayer) -> None:
    sql = Sql(vector_layer)
    source = SourceFactory.build(title="First title")
    first = _items(_pages(source, {"https://d.example.com/a": 3, "https://d.example.com/b": 2}))
    await vector_layer.ingest(source, first)
    gone_vector = first[2][1]  # chunk 2 of /a, which the new crawl no longer has

    source.title = "Second title"
    again = _items(_pages(source, {"https://d.example.com/a": 2}), seed=1)
    report = await vector_layer.ingest(source, again)

    assert (report.replaced, report.written) == (3, 2)
    rows = await sql.all("SELECT url, count(*) AS n FROM archon_crawled_pages GROUP BY url")
    counts = {row.url: row.n for row in rows}
    assert counts == {"https://d.example.com/a": 2, "https://d.example.com/b": 2}
    assert await vector_layer.vector_index.count("crawled_pages") == 4
    assert (
        await sql.scalar(
            "SELECT title FROM archon_sources WHERE source_id = :s", s=source.source_id
        )
        == "Second title"
    )
    hits = await vector_layer.search("crawled_pages", vector=gone_vector, k=10)
    assert len(hits) == 4
    assert all(hit.score < 0.999 for hit in hits)  # the replaced chunk's vector went with it


async def test_code_examples_go_to_their_collection(vector_layer: DataLayer) -> None:
    source = SourceFactory.build()
    chunks = [
        CodeExampleFactory.build(source=source, url="https://d.example.com/code", chunk_number=n)
        for n in range(3)
    ]
    items = _items(chunks, dimension=768)

    report = await vector_layer.ingest(source, items)

    assert report.collection == "code_examples"
    hits = await vector_layer.search("code_examples", vector=items[1][1], k=1)
    assert isinstance(hits[0].entity, CodeExample)
    assert hits[0].entity.id == chunks[1].id
    assert await vector_layer.vector_index.count("crawled_pages") == 0


async def test_a_failure_part_way_leaves_nothing_behind(vector_layer: DataLayer) -> None:
    sql = Sql(vector_layer)
    source = SourceFactory.build()
    chunks = _pages(source, {"https://d.example.com/a": 3})
    duplicate = CrawledPageFactory.build(
        source=source, url="https://d.example.com/a", chunk_number=0
    )

    with pytest.raises(ConflictError):
        await vector_layer.ingest(source, _items([*chunks, duplicate]), batch_size=3)

    assert await sql.scalar("SELECT count(*) FROM archon_sources") == 0
    assert await sql.scalar("SELECT count(*) FROM archon_crawled_pages") == 0


async def test_bad_input_is_refused_before_anything_is_written(vector_layer: DataLayer) -> None:
    sql = Sql(vector_layer)
    source = SourceFactory.build()
    pages = _pages(source, {"https://d.example.com/a": 2})
    nan = [float("nan")] * 384
    stranger = CrawledPageFactory.build(url="https://d.example.com/x", chunk_number=0)
    code = CodeExampleFactory.build(source=source)

    cases = [
        [(pages[0], nan)],
        [(pages[0], [0.0] * 384)],
        [(pages[0], [1.0] * 384), (pages[1], [1.0] * 768)],
        [(stranger, [1.0] * 384)],
        [(pages[0], [1.0] * 384), (code, [1.0] * 384)],
    ]
    for items in cases:
        with pytest.raises(InvalidInputError):
            await vector_layer.ingest(source, items)
    assert await sql.scalar("SELECT count(*) FROM archon_sources") == 0


async def test_chunks_without_vectors_are_stored_for_keyword_search(
    vector_layer: DataLayer,
) -> None:
    source = SourceFactory.build()
    page = CrawledPageFactory.build(
        source=source, content="Idempotency keys make retries safe", chunk_number=0
    )

    report = await vector_layer.ingest(source, [(page, None)])

    assert (report.written, report.vectors, report.dimension) == (1, 0, None)
    hits = await vector_layer.search("crawled_pages", text="idempotency")
    assert [hit.entity.id for hit in hits] == [page.id]
    assert hits[0].entity.embedding_dimension is None


@pytest.mark.parametrize("dimension", [384, 768, 1024, 1536, 3072, 100])
async def test_any_embedding_length_works_end_to_end(
    vector_layer: DataLayer, dimension: int
) -> None:
    source = SourceFactory.build()
    pages = _pages(source, {f"https://d.example.com/{dimension}": 3})
    for n, page in enumerate(pages):
        page.content = f"chunk number {n}" + (f" about dimension{dimension}" if n == 2 else "")
    items = _items(pages, dimension=dimension, seed=dimension)

    await vector_layer.ingest(source, items, embedding_model=f"model-{dimension}")

    query = np.asarray(items[2][1])
    hits = await vector_layer.search(
        "crawled_pages",
        vector=query.tolist(),
        text=f"dimension{dimension}",
        k=3,
        embedding_model=f"model-{dimension}",
    )
    assert hits[0].entity.id == pages[2].id
    assert hits[0].match_type == "hybrid"
    assert hits[0].entity.embedding_dimension == dimension
    vector_only = await vector_layer.search("crawled_pages", vector=query.tolist(), k=1)
    assert vector_only[0].score == pytest.approx(1.0, abs=2e-3)


async def test_each_row_is_written_once_streamed_from_an_iterable(
    vector_layer: DataLayer,
) -> None:
    import sqlalchemy as sa

    sql = Sql(vector_layer)
    source = SourceFactory.build()
    pages = _pages(source, {"https://d.example.com/a": 5, "https://d.example.com/b": 4})
    items = _items(pages)
    await vector_layer.ingest(source, items[:3])  # stored rows, replaced below
    sent: list[str] = []
    sa.event.listen(
        vector_layer.engine.sync_engine,
        "before_cursor_execute",
        lambda *args: sent.append(args[2]),
    )
    fresh = _pages(source, {"https://d.example.com/a": 5, "https://d.example.com/b": 4})
    again = _items(fresh, seed=3)

    report = await vector_layer.ingest(source, iter(again), batch_size=4)

    assert (report.written, report.vectors, report.replaced, report.urls) == (9, 9, 3, 2)
    updates = [s for s in sent if "UPDATE archon_crawled_pages" in s]
    assert updates == []  # vectors travel in the rows' own write, never a second one
    ids = [page.id for page in fresh]
    assert None not in ids and len(set(ids)) == 9
    rows = await sql.all(
        "SELECT id, url, chunk_number FROM archon_crawled_pages WHERE embedding_384 IS NOT NULL"
    )
    assert {(r.id, r.url, r.chunk_number) for r in rows} == {
        (p.id, p.url, p.chunk_number) for p in fresh
    }
    hits = await vector_layer.search("crawled_pages", vector=again[6][1], k=1)
    assert hits[0].entity.id == fresh[6].id


async def test_vector_upserts_are_one_statement_per_batch(vector_layer: DataLayer) -> None:
    import sqlalchemy as sa

    source = SourceFactory.build()
    pages = _pages(source, {"https://d.example.com/u": 120})
    async with vector_layer.uow() as uow:
        await uow.sources.add(source)
        await uow.pages.add_many(pages)
        await uow.commit()
    await vector_layer.vector_index.ensure_collection("crawled_pages", 384)
    vectors = clustered(120, 384, centres=120, seed=9)
    records = [
        VectorRecord(id=p.id, vector=v.tolist(), metadata={"embedding_model": "m"})
        for p, v in zip(pages, vectors, strict=True)
    ]
    sent: list[str] = []
    sa.event.listen(
        vector_layer.engine.sync_engine,
        "before_cursor_execute",
        lambda *args: sent.append(args[2]),
    )
    async with vector_layer.uow() as uow:
        assert await uow.vectors.upsert("crawled_pages", records) == 120
        await uow.commit()

    assert len([s for s in sent if s.lstrip().upper().startswith("UPDATE ARCHON_CRAWLED")]) == 1
    hits = await vector_layer.vector_index.query("crawled_pages", vectors[42].tolist(), k=1)
    assert hits[0].id == pages[42].id and hits[0].metadata["embedding_model"] == "m"


async def test_ingested_chunks_are_stored_entities_of_every_batch(vector_layer: DataLayer) -> None:
    import sqlalchemy as sa

    source = SourceFactory.build()
    pages = _pages(source, {"https://d.example.com/a": 4, "https://d.example.com/b": 3})

    await vector_layer.ingest(source, _items(pages), batch_size=3)  # the last batch: 1 chunk

    states = [sa.inspect(page) for page in pages]
    assert all(state.detached and not state.modified for state in states)
    assert [state.identity for state in states] == [(page.id,) for page in pages]
    async with vector_layer.uow() as uow:
        merged = await uow.session.merge(pages[-1], load=False)  # as loaded: no SQL, no write
        assert merged.content == pages[-1].content and not uow.session.dirty
        assert (await uow.pages.get(pages[-1].id)) is merged


async def test_a_chunk_given_to_a_session_meanwhile_is_left_to_it(vector_layer: DataLayer) -> None:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    source = SourceFactory.build()
    pages = _pages(source, {"https://d.example.com/a": 3})
    other = Session()

    report = await vector_layer.ingest(
        source, _items(pages), on_progress=lambda done, total: other.add(pages[-1])
    )

    assert report.written == 3 and pages[-1].id is not None
    assert sa.inspect(pages[-1]).pending and pages[-1] in other
    assert all(sa.inspect(page).detached for page in pages[:-1])
    other.expunge_all()


async def test_urls_of_another_source_are_refused_unless_moved(vector_layer: DataLayer) -> None:
    sql = Sql(vector_layer)
    first, second = SourceFactory.build(), SourceFactory.build()
    shared, new = "https://d.example.com/shared", "https://d.example.com/new"
    await vector_layer.ingest(first, _items(_pages(first, {shared: 2})))
    before = await sql.all("SELECT id, source_id FROM archon_crawled_pages ORDER BY id")

    # batch_size=1: the new URL's chunk is written before the shared URL is met.
    with pytest.raises(InvalidInputError, match=first.source_id) as refused:
        await vector_layer.ingest(second, _items(_pages(second, {new: 1, shared: 2})), batch_size=1)

    assert "move=True" in str(refused.value) and shared in str(refused.value)
    assert await sql.all("SELECT id, source_id FROM archon_crawled_pages ORDER BY id") == before
    count = "SELECT count(*) FROM archon_sources WHERE source_id = :s"
    assert await sql.scalar(count, s=second.source_id) == 0

    report = await vector_layer.ingest(
        second, _items(_pages(second, {new: 1, shared: 2}), seed=1), move=True
    )

    assert (report.replaced, report.written) == (2, 3)
    owners = await sql.all("SELECT DISTINCT source_id FROM archon_crawled_pages")
    assert [tuple(row) for row in owners] == [(second.source_id,)]


def _page() -> CrawledPage:
    return CrawledPage(url="https://shape.test/a", chunk_number=0, content="x", source_id="shape")


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("source", "items", "options", "named"),
    [(None, [(None, None)], {}, "Source"),
     ("shape", [(None, None)], {}, "Source"),
     (Source(source_id="shape"), None, {}, "items"),
     (Source(source_id="shape"), 5, {}, "items"),
     (Source(source_id="shape"), [_page], {}, "pairs"),
     (Source(source_id="shape"), ["ab"], {}, "pairs"),
     (Source(source_id="shape"), [("x", None)], {}, "CrawledPage or CodeExample"),
     (Source(source_id="shape"), [(_page, None)], {"batch_size": "abc"}, "batch_size"),
     (Source(source_id="shape"), [(_page, None)], {"batch_size": None}, "batch_size"),
     (Source(source_id="shape"), [(_page, None)], {"batch_size": 1.5}, "batch_size"),
     (Source(source_id="shape"), [(_page, None)], {"batch_size": 10**30}, "batch_size"),
     (Source(source_id="shape"), [(_page, None)], {"on_progress": 5}, "on_progress")],
)  # fmt: skip
async def test_arguments_of_the_wrong_shape_are_refused_by_name(
    layer: DataLayer, source: object, items: object, options: dict[str, object], named: str
) -> None:
    # They used to escape as TypeError, ValueError or AttributeError.
    if isinstance(items, list):  # a fresh chunk each run: _page stands for one
        items = [tuple(_page() if p is _page else p for p in item) if isinstance(item, tuple)
                 else (_page() if item is _page else item) for item in items]  # fmt: skip
    with pytest.raises(InvalidInputError, match=named):
        await layer.ingest(source, items, **options)  # type: ignore[arg-type]
