"""``layer.search`` on every backend: keyword per dialect, vector, hybrid fusion, hydration."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from app.bootstrap import DataLayer
from app.domain import CodeExample, CrawledPage
from app.errors import InvalidInputError
from app.search import RRF_K, fts5_query, fuse, hydrate, resolve_mode
from app.vector import VectorRecord
from tests.support import Sql
from tests.vector_fixtures import add_chunks, clustered, vector_layer

__all__ = ["vector_layer"]  # the fixture, imported to be found

DOCS = {
    "limits": "Rate limiting protects the service: each client sends a bounded number of requests",
    "auth": "Authentication uses bearer tokens; rotate bearer tokens regularly",
    "paging": "Pagination returns a cursor with every page of results",
    "errors": "Errors carry a code and a message; clients retry after throttling errors",
    "hooks": "Webhooks deliver events to your endpoint, with retries on failure",
}
NAMES = list(DOCS)
DIMENSION = 384


async def _corpus(layer: DataLayer, model: str = "model-a") -> dict[str, int]:
    rows = [
        {
            "url": f"https://docs.example.com/{name}",
            "content": content,
            "source_id": "docs" if i % 2 == 0 else "blog",
            "metadata": {"section": "api" if name in ("auth", "paging") else "guide"},
            "embedding_model": model,
        }
        for i, (name, content) in enumerate(DOCS.items())
    ]
    ids = await add_chunks(layer.engine, "crawled_pages", rows)
    vectors = clustered(len(rows), DIMENSION, centres=len(rows), seed=21)
    await layer.vector_index.upsert(
        "crawled_pages",
        [
            VectorRecord(rid, v.tolist(), {"embedding_model": model})
            for rid, v in zip(ids, vectors, strict=True)
        ],
    )
    by_name = dict(zip(NAMES, ids, strict=True))
    _VECTORS[id(layer)] = dict(zip(NAMES, vectors, strict=True))
    return by_name


_VECTORS: dict[int, dict[str, np.ndarray]] = {}


def _vector(layer: DataLayer, name: str) -> list[float]:
    return [float(x) for x in _VECTORS[id(layer)][name]]


def _names(hits: Any, ids: dict[str, int]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[hit.entity.id] for hit in hits]


async def test_keyword_search_ranks_the_chunk_with_the_words_first(vector_layer: DataLayer) -> None:
    ids = await _corpus(vector_layer)

    hits = await vector_layer.search("crawled_pages", text="bearer tokens", k=3)

    assert _names(hits, ids)[0] == "auth"
    assert all(hit.match_type == "keyword" for hit in hits)
    assert isinstance(hits[0].entity, CrawledPage)
    assert hits[0].entity.content == DOCS["auth"]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_keyword_search_ignores_case_and_applies_filters(vector_layer: DataLayer) -> None:
    ids = await _corpus(vector_layer)

    assert _names(await vector_layer.search("crawled_pages", text="WEBHOOKS"), ids) == ["hooks"]
    hits = await vector_layer.search("crawled_pages", text="retries", filters={"source_id": "docs"})
    assert _names(hits, ids) == ["hooks"]
    assert (
        await vector_layer.search(
            "crawled_pages", text="webhooks", filters={"metadata.section": "api"}
        )
        == []
    )


async def test_keyword_search_follows_updates_and_deletes(vector_layer: DataLayer) -> None:
    ids = await _corpus(vector_layer)
    sql = Sql(vector_layer)
    await sql.execute(
        "UPDATE archon_crawled_pages SET content = 'Quotas replaced everything here' WHERE id = :i",
        i=ids["paging"],
    )
    await sql.execute("DELETE FROM archon_crawled_pages WHERE id = :i", i=ids["hooks"])

    assert _names(await vector_layer.search("crawled_pages", text="quotas"), ids) == ["paging"]
    assert await vector_layer.search("crawled_pages", text="pagination cursor") == []
    assert await vector_layer.search("crawled_pages", text="webhooks") == []


async def test_vector_search_is_hydrated_in_rank_order(vector_layer: DataLayer) -> None:
    ids = await _corpus(vector_layer)

    hits = await vector_layer.search("crawled_pages", vector=_vector(vector_layer, "errors"), k=3)

    assert _names(hits, ids)[0] == "errors"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert all(hit.match_type == "vector" for hit in hits) and len(hits) == 3
    assert hits[0].entity.url == "https://docs.example.com/errors"


async def test_hybrid_fuses_by_reciprocal_rank(vector_layer: DataLayer) -> None:
    ids = await _corpus(vector_layer)

    hits = await vector_layer.search(
        "crawled_pages", vector=_vector(vector_layer, "auth"), text="bearer tokens", k=5
    )

    assert _names(hits, ids)[0] == "auth"
    assert hits[0].match_type == "hybrid"
    assert hits[0].score == pytest.approx(2 / (RRF_K + 1))
    assert {hit.match_type for hit in hits[1:]} == {"vector"}  # only "auth" has the words


async def test_search_restricts_to_one_embedding_model(vector_layer: DataLayer) -> None:
    ids = await _corpus(vector_layer, model="model-a")
    other = await add_chunks(
        vector_layer.engine,
        "crawled_pages",
        [{"url": "https://docs.example.com/other", "content": "bearer", "source_id": "docs"}],
    )
    await vector_layer.vector_index.upsert(
        "crawled_pages",
        [VectorRecord(other[0], _vector(vector_layer, "auth"), {"embedding_model": "model-b"})],
    )

    hits = await vector_layer.search(
        "crawled_pages", vector=_vector(vector_layer, "auth"), k=10, embedding_model="model-a"
    )

    assert other[0] not in [hit.entity.id for hit in hits]
    assert _names(hits, ids)[0] == "auth"


async def test_code_examples_are_searched_by_content_and_summary(vector_layer: DataLayer) -> None:
    ids = await add_chunks(
        vector_layer.engine,
        "code_examples",
        [
            {
                "content": "def connect(): pass",
                "summary": "Opens a database session",
                "source_id": "c",
            },
            {"content": "def close(): pass", "summary": "Releases the pool", "source_id": "c"},
        ],
    )

    hits = await vector_layer.search("code_examples", text="database session")

    assert [hit.entity.id for hit in hits] == [ids[0]]
    assert isinstance(hits[0].entity, CodeExample)


async def test_hydration_is_one_query_in_rank_order(vector_layer: DataLayer) -> None:
    ids = await _corpus(vector_layer)
    ranked = [(ids["hooks"], 0.9, "vector"), (ids["auth"], 0.5, "keyword"), (99999, 0.1, "vector")]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    async with vector_layer.uow(read_only=True) as uow:
        sa.event.listen(uow.session.get_bind(), "before_cursor_execute", count)
        try:
            hits = await hydrate(uow.session, "crawled_pages", ranked)  # type: ignore[arg-type]
        finally:
            sa.event.remove(uow.session.get_bind(), "before_cursor_execute", count)

    assert len([s for s in statements if "archon_crawled_pages" in s]) == 1
    assert [hit.entity.id for hit in hits] == [ids["hooks"], ids["auth"]]  # missing id dropped
    assert hits[0].entity.content == DOCS["hooks"]  # loaded, usable after the transaction


async def test_bad_requests_are_refused_before_any_sql(vector_layer: DataLayer) -> None:
    with pytest.raises(InvalidInputError, match="vector, a text"):
        await vector_layer.search("crawled_pages")
    with pytest.raises(InvalidInputError, match="query text"):
        await vector_layer.search("crawled_pages", vector=[1.0] * DIMENSION, mode="keyword")
    with pytest.raises(InvalidInputError, match="unknown collection"):
        await vector_layer.search("pages", text="x")
    with pytest.raises(InvalidInputError, match="k must"):
        await vector_layer.search("crawled_pages", text="x", k=0)
    with pytest.raises(InvalidInputError, match="unknown filter field"):
        await vector_layer.search("crawled_pages", text="x", filters={"nope": 1})
    with pytest.raises(InvalidInputError, match="expected"):
        await vector_layer.search("crawled_pages", vector=[1.0] * 383)


def test_mode_auto_picks_by_what_is_given() -> None:
    assert resolve_mode("auto", [1.0], "words") == "hybrid"
    assert resolve_mode("auto", [1.0], None) == "vector"
    assert resolve_mode("auto", None, "words") == "keyword"
    assert resolve_mode("auto", [1.0], "   ") == "vector"


def test_fusion_counts_both_lists_and_breaks_ties_by_id() -> None:
    fused = fuse([(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)], k=3)
    assert fused == [
        (2, 1 / (RRF_K + 2) + 1 / (RRF_K + 1), "hybrid"),
        (1, 1 / (RRF_K + 1), "vector"),
        (3, 1 / (RRF_K + 2), "keyword"),
    ]


def test_fts5_queries_hold_no_operators_and_no_stop_words() -> None:
    assert fts5_query('the "rate" OR limit* NEAR(x)') == '"rate" AND "limit" AND "near"'
    assert fts5_query("the of and") is None
