"""Whatever is passed as a vector, the answer is ``InvalidInputError`` before any SQL or store
call, on every backend and index: never a ``TypeError``, ``ValueError`` or driver error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.domain import CrawledPage, Source
from app.errors import InvalidInputError
from app.vector.port import VectorRecord
from tests.support import LayerFactory

GOOD = [0.1] * 384
MALFORMED: list[Any] = [
    ["x"] * 384,
    ["0.5"] * 384,  # numeric strings are not vectors
    [None] * 384,
    [[0.1, 0.2]] * 384,
    [True] * 384,
    [2**80] * 384,
    [0.1] * 383 + ["y"],
    None,
    "0.5",
    5,
    {"a": 1.0},
    [0.1] * 383 + [[0.2]],
]


@pytest.fixture(params=["exact", "chroma"])
async def index_layer(request: pytest.FixtureRequest, make_layer: LayerFactory, tmp_path: Path):
    if request.param == "chroma":
        return await make_layer(vector_database="chroma", chroma_path=str(tmp_path / "store"))
    return await make_layer(vector_database="exact")


@pytest.mark.parametrize("vector", MALFORMED, ids=range(len(MALFORMED)))
async def test_every_entry_point_refuses_a_malformed_vector(index_layer: Any, vector: Any) -> None:
    layer = index_layer
    async with layer.uow() as uow:
        await uow.sources.add(Source(source_id="src", title="s"))
        (page,) = await uow.pages.add_many(
            [CrawledPage(url="https://a.test/0", chunk_number=0, content="x", source_id="src")]
        )
        with pytest.raises(InvalidInputError):
            await uow.vectors.upsert("crawled_pages", [VectorRecord(page.id, vector)])
        await uow.vectors.upsert("crawled_pages", [VectorRecord(page.id, GOOD)])
        await uow.commit()
    with pytest.raises(InvalidInputError):
        await layer.search("crawled_pages", vector=vector, k=3, mode="vector")
    if vector is not None:  # to ingest, None means "this chunk has no vector"
        chunk = CrawledPage(url="https://a.test/1", chunk_number=0, content="y", source_id="src")
        with pytest.raises(InvalidInputError):
            await layer.ingest(Source(source_id="src", title="s"), [(chunk, vector)])
    hits = await layer.search("crawled_pages", vector=GOOD, k=3, mode="vector")
    assert [hit.entity.id for hit in hits] == [page.id]  # nothing half-written


WRONG_KINDS = [
    ("upsert", lambda v: v.upsert("crawled_pages", VectorRecord(1, GOOD)), "pass \\[record\\]"),
    ("upsert", lambda v: v.upsert("crawled_pages", [{"id": 1, "vector": GOOD}]), "records\\[0\\]"),
    ("upsert", lambda v: v.upsert("crawled_pages", "records"), "records"),
    ("upsert", lambda v: v.upsert("crawled_pages", [VectorRecord(1, GOOD, None)]),  # type: ignore[arg-type]
     "metadata"),
    ("upsert", lambda v: v.upsert("crawled_pages", [VectorRecord(None, GOOD)]),
     "records\\[0\\].id"),
    ("upsert", lambda v: v.upsert("crawled_pages", [VectorRecord(1, GOOD, {}, 5)]), "document"),
    ("query", lambda v: v.query("crawled_pages", GOOD, k="5"), "k must be"),
    ("query", lambda v: v.query("crawled_pages", GOOD, k=True), "k must be"),
    ("query", lambda v: v.query("crawled_pages", GOOD, k=10**6), "k must be"),
    ("delete", lambda v: v.delete("crawled_pages", None), "ids"),
    ("delete", lambda v: v.delete("crawled_pages", "123"), "ids"),
    ("delete", lambda v: v.delete("crawled_pages", [1.5]), "ids\\[0\\]"),
]  # fmt: skip


async def _refuses_every_wrong_kind(layer: Any) -> None:
    for _, call, named in WRONG_KINDS:
        async with layer.uow() as uow:
            with pytest.raises(InvalidInputError, match=named):
                await call(uow.vectors)
        with pytest.raises(InvalidInputError, match=named):
            await call(layer.vector_index)


async def test_arguments_of_the_wrong_kind_are_refused_by_name(index_layer: Any) -> None:
    """They used to escape as TypeError or AttributeError, differently per adapter."""
    await _refuses_every_wrong_kind(index_layer)


@pytest.mark.backends("pgvector")
async def test_pgvector_refuses_arguments_of_the_wrong_kind_by_name(
    make_layer: LayerFactory,
) -> None:
    await _refuses_every_wrong_kind(await make_layer(vector_database="pgvector"))
