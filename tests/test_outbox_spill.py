"""A Unit of Work that writes more records than it keeps in memory for the after-commit apply:
its outbox batches are drained from the rows after the commit, and the store ends level."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bootstrap import DataLayer
from app.testing.factories import CrawledPageFactory, SourceFactory
from app.vector.outbox import view
from tests.support import LayerFactory, fetch_scalar
from tests.vector_fixtures import clustered

COLLECTION = "crawled_pages"


@pytest.fixture
async def chroma_layer(make_layer: LayerFactory, tmp_path: Path) -> DataLayer:
    return await make_layer(vector_database="chroma", chroma_path=str(tmp_path / "chroma"))


def items(source: object, urls: int, per_url: int, seed: int) -> list:  # type: ignore[type-arg]
    pages = [
        CrawledPageFactory.build(source=source, url=f"https://spill.test/{u}", chunk_number=n)
        for u in range(urls)
        for n in range(per_url)
    ]
    vectors = clustered(len(pages), 384, centres=len(pages), seed=seed)
    return [(page, vector.tolist()) for page, vector in zip(pages, vectors, strict=True)]


async def test_a_large_unit_of_work_is_applied_from_the_rows(
    chroma_layer: DataLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view, "MEMORY_RECORDS", 10)
    source = SourceFactory.build()
    index = chroma_layer.vector_index

    await chroma_layer.ingest(source, items(source, 8, 5, seed=1), batch_size=8)

    assert await index.count(COLLECTION) == 40
    assert await fetch_scalar(chroma_layer, "SELECT count(*) FROM archon_vector_outbox") == 0

    # Again, fewer chunks per URL: the replaced rows' records go, the new ones arrive.
    again = items(source, 8, 3, seed=2)
    await chroma_layer.ingest(source, again, batch_size=8)

    assert await index.count(COLLECTION) == 24
    assert await fetch_scalar(chroma_layer, "SELECT count(*) FROM archon_vector_outbox") == 0
    page, vector = again[5]
    (hit,) = await index.query(COLLECTION, vector, k=1)
    assert hit.id == page.id
