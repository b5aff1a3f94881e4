"""The contract every ``VectorIndex`` adapter passes: one class of tests, one harness per adapter.

To run it against an adapter, subclass ``VectorIndexContract`` in a test module and provide a
``harness`` fixture returning a ``ContractHarness``:

- ``index``: the adapter, unbound (each call's writes are visible to the next call);
- ``add_rows(collection, rows)``: makes the rows the vectors belong to and returns their ids
  (SQL-backed adapters store a vector in its row; external stores may just number them);
- ``approximate``: whether the adapter's search is approximate (exact ones must match numpy).

A record's metadata holds the fields filters address: ``source_id``, ``url``, ``chunk_number``,
``embedding_model`` and the JSON ``metadata`` (reached as ``metadata.<key>``). Every answer is
checked against numpy brute force over the records ``app.filter_eval.evaluate`` selects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInputError
from app.filter_eval import evaluate
from app.filters import OPERATORS, parse_filters
from app.vector import VectorHit, VectorIndex, VectorRecord
from tests.vector_fixtures import brute_force, clustered

AddRows = Callable[[str, Sequence[Mapping[str, Any]]], Awaitable[list[Any]]]
COLLECTION = "crawled_pages"
DIMENSION = 384
ARCHON_DIMENSIONS = (384, 768, 1024, 1536, 3072)
RECALL_VECTORS = 20_000
RECALL_QUERIES = 50


@dataclass
class ContractHarness:
    index: VectorIndex
    add_rows: AddRows
    approximate: bool


@dataclass
class Dataset:
    ids: list[Any]
    fields: list[dict[str, Any]]
    vectors: np.ndarray

    def matching(self, filters: Mapping[str, Any] | None, model: str | None = None) -> list[int]:
        node = parse_filters(filters)
        return [
            i
            for i, fields in enumerate(self.fields)
            if evaluate(node, fields) and (model is None or fields["embedding_model"] == model)
        ]

    def expected(self, query: np.ndarray, k: int, positions: list[int]) -> list[Any]:
        by_id = {self.ids[p]: p for p in positions}
        keys = list(by_id)
        order = brute_force(self.vectors[[by_id[i] for i in keys]], range(len(keys)), query, k)
        return [str(keys[i]) for i in order]


def chunk_fields(i: int) -> dict[str, Any]:
    """Row fields with every kind of value a filter meets: text, numbers, lists, NULL, absent."""
    metadata: dict[str, Any] = {
        "kind": ["doc", "code", "faq", "Doc"][i % 4],
        "n": i % 10,
        "score": i / 10,
        "tags": [["red"], ["blue"], ["red", "green"], []][i % 4],
        "flag": i % 2 == 0,
    }
    if i % 5 == 0:
        del metadata["n"]
    if i % 9 == 0:
        metadata["kind"] = None
    return {
        "source_id": ["src-a", "src-b", "src-c"][i % 3],
        "url": f"https://docs.example.com/{['guide', 'api', 'blog'][i % 3]}/{i}",
        "chunk_number": i % 7,
        "embedding_model": "model-b" if i % 4 == 0 else "model-a",
        "metadata": metadata,
    }


def records(ids: Sequence[Any], vectors: np.ndarray, fields: Sequence[Mapping[str, Any]]) -> list:
    return [
        VectorRecord(id=i, vector=v.tolist(), metadata=dict(f))
        for i, v, f in zip(ids, vectors, fields, strict=True)
    ]


FILTERS: list[dict[str, Any]] = [
    {"source_id": "src-a"},
    {"source_id": {"eq": "src-b"}},
    {"source_id": {"ne": "src-b"}},
    {"chunk_number": {"gt": 3}},
    {"chunk_number": {"gte": 3}},
    {"chunk_number": {"lt": 2}},
    {"chunk_number": {"lte": 2}},
    {"source_id": {"in": ["src-a", "src-c"]}},
    {"source_id": {"not_in": ["src-a"]}},
    {"url": {"like": "%/api/%"}},
    {"url": {"ilike": "%/API/%"}},
    {"metadata.kind": "doc"},
    {"metadata.kind": {"ne": "doc"}},
    {"metadata.kind": {"in": ["doc", "faq"]}},
    {"metadata.kind": {"not_in": ["doc"]}},
    {"metadata.kind": {"like": "d%"}},
    {"metadata.kind": {"ilike": "d%"}},
    {"metadata.n": {"gte": 5}},
    {"metadata.n": {"lt": 3}},
    {"metadata.score": {"gt": 2.5}},
    {"metadata.score": {"lte": 1.0}},
    {"metadata.n": {"is_null": True}},
    {"metadata.kind": {"is_null": False}},
    {"metadata.flag": True},
    {"metadata": {"contains": {"tags": ["red"]}}},
    {"metadata": {"contains": {"kind": "faq"}}},
    {"embedding_model": "model-b"},
    {"or": [{"source_id": "src-a"}, {"metadata.n": {"gt": 7}}]},
    {"and": [{"source_id": {"ne": "src-c"}}, {"metadata.flag": False}]},
    {"not": {"metadata.kind": "doc"}},
    {"source_id": "src-a", "metadata.n": {"lte": 4}},
]


def _ids(hits: Sequence[VectorHit]) -> list[str]:
    return [str(hit.id) for hit in hits]


class VectorIndexContract:
    """Subclass and provide the ``harness`` fixture; every test here then runs on the adapter."""

    @pytest.fixture
    async def dataset(self, harness: ContractHarness) -> Dataset:
        n = 90
        fields = [chunk_fields(i) for i in range(n)]
        ids = await harness.add_rows(COLLECTION, fields)
        vectors = clustered(n, DIMENSION, centres=12, seed=7)
        await harness.index.ensure_collection(COLLECTION, DIMENSION)
        await harness.index.upsert(COLLECTION, records(ids, vectors, fields))
        return Dataset(ids, fields, vectors)

    def assert_same(self, harness: ContractHarness, got: list[Any], want: list[Any]) -> None:
        if harness.approximate:
            assert len(got) == len(want)
            assert len(set(got) & set(want)) >= 0.9 * len(want)
        else:
            assert got == want

    async def test_capabilities_describe_the_adapter(self, harness: ContractHarness) -> None:
        caps = harness.index.capabilities
        assert "cosine" in caps.metrics
        assert caps.filter_operators <= OPERATORS
        assert caps.max_dimension >= 3072
        assert caps.approximate is harness.approximate

    async def test_upsert_is_idempotent_and_the_last_value_wins(
        self, harness: ContractHarness
    ) -> None:
        (rid,) = await harness.add_rows(COLLECTION, [chunk_fields(1)])
        first, second = clustered(2, DIMENSION, centres=2, seed=1)
        await harness.index.ensure_collection(COLLECTION, DIMENSION)
        await harness.index.upsert(COLLECTION, records([rid], first[None], [chunk_fields(1)]))
        await harness.index.upsert(COLLECTION, records([rid], second[None], [chunk_fields(1)]))

        assert await harness.index.count(COLLECTION) == 1
        (hit,) = await harness.index.query(COLLECTION, second.tolist(), k=5)
        assert str(hit.id) == str(rid)
        assert hit.score == pytest.approx(1.0, abs=1e-3)

    async def test_one_batch_with_the_same_id_twice_keeps_the_last(
        self, harness: ContractHarness
    ) -> None:
        (rid,) = await harness.add_rows(COLLECTION, [chunk_fields(2)])
        first, second = clustered(2, DIMENSION, centres=2, seed=2)
        await harness.index.ensure_collection(COLLECTION, DIMENSION)
        batch = records([rid, rid], np.stack([first, second]), [chunk_fields(2)] * 2)
        await harness.index.upsert(COLLECTION, batch)

        assert await harness.index.count(COLLECTION) == 1
        (hit,) = await harness.index.query(COLLECTION, second.tolist(), k=1)
        assert hit.score == pytest.approx(1.0, abs=1e-3)

    async def test_query_scores_are_cosine_similarity_best_first(
        self, harness: ContractHarness, dataset: Dataset
    ) -> None:
        query = clustered(1, DIMENSION, centres=12, seed=99)[0]
        hits = await harness.index.query(COLLECTION, query.tolist(), k=10)

        self.assert_same(harness, _ids(hits), dataset.expected(query, 10, dataset.matching(None)))
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        by_id = {str(i): v for i, v in zip(dataset.ids, dataset.vectors, strict=True)}
        for hit in hits:
            vector = by_id[str(hit.id)]
            cosine = vector @ query / (np.linalg.norm(vector) * np.linalg.norm(query))
            assert hit.score == pytest.approx(float(cosine), abs=1e-3)
        first = [str(i) for i in dataset.ids].index(str(hits[0].id))
        assert hits[0].metadata["source_id"] == dataset.fields[first]["source_id"]

    @pytest.mark.parametrize("filters", FILTERS, ids=[repr(f) for f in FILTERS])
    async def test_every_filter_matches_numpy_and_the_reference(
        self, harness: ContractHarness, dataset: Dataset, filters: dict[str, Any]
    ) -> None:
        query = clustered(1, DIMENSION, centres=12, seed=5)[0]
        positions = dataset.matching(filters)
        assert positions, "the dataset should match every filter somewhere"

        hits = await harness.index.query(COLLECTION, query.tolist(), k=10, filters=filters)

        self.assert_same(harness, _ids(hits), dataset.expected(query, 10, positions))
        allowed = {str(dataset.ids[p]) for p in positions}
        assert set(_ids(hits)) <= allowed
        assert await harness.index.count(COLLECTION, filters) == len(positions)

    async def test_embedding_model_restricts_the_search(
        self, harness: ContractHarness, dataset: Dataset
    ) -> None:
        query = clustered(1, DIMENSION, centres=12, seed=6)[0]
        positions = dataset.matching(None, model="model-b")

        hits = await harness.index.query(
            COLLECTION, query.tolist(), k=10, embedding_model="model-b"
        )

        self.assert_same(harness, _ids(hits), dataset.expected(query, 10, positions))

    async def test_a_filtered_query_returns_k_rows_when_k_rows_match(
        self, harness: ContractHarness
    ) -> None:
        n, rare = 3000, 40
        fields = [
            {**chunk_fields(i), "source_id": "rare" if i % (n // rare) == 0 else "common"}
            for i in range(n)
        ]
        ids = await harness.add_rows(COLLECTION, fields)
        vectors = clustered(n, DIMENSION, centres=50, seed=11)
        await harness.index.ensure_collection(COLLECTION, DIMENSION)
        await harness.index.upsert(COLLECTION, records(ids, vectors, fields))
        dataset = Dataset(ids, fields, vectors)
        query = vectors[1]

        hits = await harness.index.query(
            COLLECTION, query.tolist(), k=10, filters={"source_id": "rare"}
        )

        assert len(hits) == 10
        want = dataset.expected(query, 10, dataset.matching({"source_id": "rare"}))
        self.assert_same(harness, _ids(hits), want)

    async def test_delete_removes_vectors_and_reports_how_many_existed(
        self, harness: ContractHarness, dataset: Dataset
    ) -> None:
        gone = dataset.ids[:5]
        gone_keys = {str(i) for i in gone}

        assert await harness.index.delete(COLLECTION, [*gone, *gone[:2]]) == 5
        assert await harness.index.delete(COLLECTION, gone) == 0
        assert await harness.index.count(COLLECTION) == len(dataset.ids) - 5
        hits = await harness.index.query(COLLECTION, dataset.vectors[0].tolist(), k=20)
        assert not set(_ids(hits)) & gone_keys

    async def test_delete_where_removes_the_matching_vectors(
        self, harness: ContractHarness, dataset: Dataset
    ) -> None:
        filters = {"metadata.kind": {"in": ["doc", "Doc"]}}
        matching = dataset.matching(filters)

        assert await harness.index.delete_where(COLLECTION, filters) == len(matching)
        assert await harness.index.count(COLLECTION, filters) == 0
        assert await harness.index.count(COLLECTION) == len(dataset.ids) - len(matching)

    async def test_a_vector_of_another_length_is_refused_naming_both_lengths(
        self, harness: ContractHarness, dataset: Dataset
    ) -> None:
        wrong = [0.5] * (DIMENSION - 1)

        with pytest.raises(InvalidInputError) as query_error:
            await harness.index.query(COLLECTION, wrong, k=3)
        with pytest.raises(InvalidInputError) as upsert_error:
            await harness.index.upsert(COLLECTION, [VectorRecord(dataset.ids[0], wrong, {})])
        for error in (query_error, upsert_error):
            assert str(DIMENSION) in str(error.value)
            assert str(DIMENSION - 1) in str(error.value)

    @pytest.mark.parametrize(
        "bad", [[float("nan")] + [1.0] * 383, [float("inf")] + [1.0] * 383, [0.0] * 384]
    )
    async def test_nan_infinity_and_zero_vectors_are_refused(
        self, harness: ContractHarness, dataset: Dataset, bad: list[float]
    ) -> None:
        with pytest.raises(InvalidInputError):
            await harness.index.upsert(COLLECTION, [VectorRecord(dataset.ids[0], bad, {})])
        with pytest.raises(InvalidInputError):
            await harness.index.query(COLLECTION, bad, k=3)
        assert await harness.index.count(COLLECTION) == len(dataset.ids)

    @pytest.mark.parametrize("dimension", [*ARCHON_DIMENSIONS, 100])
    async def test_any_dimension_round_trips(
        self, harness: ContractHarness, dimension: int
    ) -> None:
        fields = [chunk_fields(i) for i in range(6)]
        ids = await harness.add_rows(COLLECTION, fields)
        vectors = clustered(6, dimension, centres=3, seed=dimension)
        await harness.index.ensure_collection(COLLECTION, dimension)
        await harness.index.upsert(COLLECTION, records(ids, vectors, fields))

        for i in (0, 5):
            hits = await harness.index.query(COLLECTION, vectors[i].tolist(), k=3)
            assert str(hits[0].id) == str(ids[i])
            assert hits[0].score == pytest.approx(1.0, abs=2e-3)
        assert len(hits) == 3

    @pytest.mark.slow
    async def test_recall_at_10_on_20000_clustered_vectors(self, harness: ContractHarness) -> None:
        fields = [
            {"source_id": "recall", "url": f"https://recall.example.com/{i}", "chunk_number": 0}
            for i in range(RECALL_VECTORS)
        ]
        ids = await harness.add_rows(COLLECTION, fields)
        # Queries come from the same clusters as the data, as real queries do.
        drawn = clustered(RECALL_VECTORS + RECALL_QUERIES, DIMENSION, centres=400, seed=3)
        vectors, queries = drawn[:RECALL_VECTORS], drawn[RECALL_VECTORS:]
        await harness.index.ensure_collection(COLLECTION, DIMENSION)
        for start in range(0, RECALL_VECTORS, 2000):
            end = start + 2000
            await harness.index.upsert(
                COLLECTION, records(ids[start:end], vectors[start:end], fields[start:end])
            )

        found = 0
        for query in queries:
            hits = await harness.index.query(COLLECTION, query.tolist(), k=10)
            truth = brute_force(vectors, range(RECALL_VECTORS), query, 10)
            found += len({str(hit.id) for hit in hits} & {str(ids[i]) for i in truth})
        recall = found / (10 * RECALL_QUERIES)

        if harness.approximate:
            assert recall >= 0.95
        else:
            assert recall == 1.0
