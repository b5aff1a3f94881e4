"""ChromaVectorIndex: the vector contract, embedded and over HTTP, plus what is Chroma's own."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.errors import BackendUnavailableError, InvalidInputError
from app.filter_eval import evaluate
from app.filters import parse_filters
from app.vector.chroma import ChromaVectorIndex
from app.vector.chroma.metadata import OPAQUE_PREFIX, PRESENT_PREFIX, restores, translator
from app.vector.external.filters import normal_form
from app.vector.external.records import JSON_KEY, KEYS_KEY, flatten, to_json, unflatten
from app.vector.port import VectorRecord
from tests.chroma_server import ChromaServer
from tests.vector_contract import (
    COLLECTION,
    FILTERS,
    ContractHarness,
    VectorIndexContract,
    chunk_fields,
    records,
)
from tests.vector_fixtures import clustered


@pytest.fixture(scope="module")
def chroma_server() -> Iterator[ChromaServer]:
    server = ChromaServer()
    server.start()
    yield server
    server.close()


def _wipe(url: str) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    host, port = url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(
        host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False)
    )
    for collection in client.list_collections():
        client.delete_collection(collection.name)


def _embedded(tmp_path: Path) -> ChromaVectorIndex:
    return ChromaVectorIndex(Settings(_env_file=None, chroma_path=str(tmp_path / "chroma")))


@pytest.fixture(params=["embedded", "http"])
async def chroma_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ChromaVectorIndex]:
    if request.param == "embedded":
        index = _embedded(tmp_path)
    else:
        server: ChromaServer = request.getfixturevalue("chroma_server")
        _wipe(server.url)
        index = ChromaVectorIndex(Settings(_env_file=None, chroma_url=server.url))
    yield index
    await index.aclose()


class TestChromaContract(VectorIndexContract):
    @pytest.fixture
    def harness(self, chroma_index: ChromaVectorIndex) -> ContractHarness:
        counter = itertools.count(1)

        async def add_rows(collection: str, rows: Any) -> list[Any]:
            return [next(counter) for _ in rows]

        return ContractHarness(chroma_index, add_rows, approximate=True)


def _vectors(n: int, dimension: int = 384, seed: int = 0) -> np.ndarray:
    return clustered(n, dimension, centres=max(1, n // 10), seed=seed)


async def test_batches_are_split_under_chromas_maximum(tmp_path: Path) -> None:
    index = _embedded(tmp_path)
    limit = await asyncio.to_thread(lambda: index.store.batch_size)
    n = limit + 500
    await index.ensure_collection(COLLECTION, 8)
    vectors = np.random.default_rng(0).normal(size=(n, 8))
    batch = [VectorRecord(i, v.tolist(), {"i": i}) for i, v in enumerate(vectors)]

    assert await index.upsert(COLLECTION, batch) == n
    assert await index.count(COLLECTION) == n
    assert await index.delete(COLLECTION, list(range(n))) == n


class Kind(Enum):
    GUIDE = "guide"


async def test_metadata_comes_back_as_stored_and_ids_keep_their_type(tmp_path: Path) -> None:
    index = _embedded(tmp_path)
    page = uuid.uuid4()
    metadata = {
        "source_id": "s",
        "metadata": {"kind": Kind.GUIDE, "page": page, "tags": [], "mixed": [1, "a"], "x": None},
    }
    vectors = _vectors(2)
    await index.upsert(
        COLLECTION,
        [VectorRecord(7, vectors[0].tolist(), metadata), VectorRecord("b", vectors[1].tolist())],
    )

    (hit,) = await index.query(COLLECTION, vectors[0].tolist(), k=1)
    assert hit.id == 7
    assert hit.metadata == {
        "source_id": "s",
        "metadata": {"kind": "guide", "page": str(page), "tags": [], "mixed": [1, "a"], "x": None},
    }
    (other,) = await index.query(COLLECTION, vectors[1].tolist(), k=1)
    assert other.id == "b"
    assert await index.count(COLLECTION, {"metadata": {"contains": {"mixed": ["a"]}}}) == 1
    assert await index.count(COLLECTION, {"metadata.tags": {"contains": []}}) == 1
    assert await index.count(COLLECTION, {"metadata.x": {"is_null": True}}) == 2


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("l2", lambda a, b: -float(np.linalg.norm(a - b))), ("inner_product", lambda a, b: a @ b)],
)
async def test_other_metrics_score_higher_is_better(
    tmp_path: Path, metric: str, expected: Any
) -> None:
    index = _embedded(tmp_path)
    await index.ensure_collection(COLLECTION, 16, metric)  # type: ignore[arg-type]
    vectors = np.random.default_rng(1).normal(size=(20, 16))
    await index.upsert(COLLECTION, [VectorRecord(i, v.tolist()) for i, v in enumerate(vectors)])
    query = np.random.default_rng(2).normal(size=16)

    hits = await index.query(COLLECTION, query.tolist(), k=5)

    want = sorted(range(20), key=lambda i: -expected(vectors[i], query))[:5]
    assert [h.id for h in hits] == want
    for hit in hits:
        assert hit.score == pytest.approx(expected(vectors[hit.id], query), rel=1e-3, abs=1e-3)


async def test_a_collection_keeps_its_metric(tmp_path: Path) -> None:
    index = _embedded(tmp_path)
    await index.ensure_collection(COLLECTION, 16, "l2")
    await index.ensure_collection(COLLECTION, 16, "l2")

    with pytest.raises(InvalidInputError, match="metric"):
        await index.ensure_collection(COLLECTION, 16, "cosine")
    assert await index.dimensions(COLLECTION) == {16: "l2"}


async def test_an_unknown_dimension_names_the_command_that_adds_it(tmp_path: Path) -> None:
    index = _embedded(tmp_path)

    with pytest.raises(InvalidInputError, match="vectors add-dimension 100"):
        await index.upsert(COLLECTION, [VectorRecord(1, [0.1] * 100)])
    await index.ensure_collection(COLLECTION, 100)
    assert await index.upsert(COLLECTION, [VectorRecord(1, [0.1] * 100)]) == 1


async def test_a_record_embedded_at_another_length_moves(tmp_path: Path) -> None:
    index = _embedded(tmp_path)
    await index.upsert(COLLECTION, [VectorRecord(1, _vectors(1, 384)[0].tolist())])
    wide = _vectors(1, 768)[0]

    await index.upsert(COLLECTION, [VectorRecord(1, wide.tolist())])

    assert await index.count(COLLECTION) == 1
    assert [h.id for h in await index.query(COLLECTION, wide.tolist(), k=3)] == [1]


async def test_an_unknown_collection_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown collection"):
        await _embedded(tmp_path).count("nope")


def test_ne_and_not_in_require_the_key_as_sql_does() -> None:
    where = translator().translate(normal_form(parse_filters({"n": {"ne": 3}})))  # type: ignore[arg-type]
    assert where == {"$and": [{"n": {"$ne": 3}}, {PRESENT_PREFIX + "n": {"$eq": True}}]}
    lists = translator(flags=False).translate(normal_form(parse_filters({"n": {"ne": 3}})))  # type: ignore[arg-type]
    assert lists == {"$and": [{"n": {"$ne": 3}}, {KEYS_KEY: {"$contains": "n"}}]}
    negated = translator().translate(normal_form(parse_filters({"not": {"n": {"gt": 3}}})))  # type: ignore[arg-type]
    assert negated == {"n": {"$lte": 3}}
    mixed = translator().translate(normal_form(parse_filters({"n": {"in": ["a", 1, True]}})))  # type: ignore[arg-type]
    assert mixed == {"$or": [{"n": {"$in": ["a"]}}, {"n": {"$in": [True]}}, {"n": {"$in": [1.0]}}]}


async def test_calls_run_off_the_event_loop(tmp_path: Path) -> None:
    index = _embedded(tmp_path)
    vectors = _vectors(3000, seed=3)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(tick())
    try:
        await index.upsert(COLLECTION, records(range(3000), vectors, [chunk_fields(0)] * 3000))
    finally:
        ticker.cancel()
    assert ticks > 5


async def test_a_stopped_server_is_backend_unavailable(tmp_path: Path) -> None:
    server = ChromaServer()
    server.start()
    index = ChromaVectorIndex(Settings(_env_file=None, chroma_url=server.url))
    try:
        await index.upsert(COLLECTION, [VectorRecord(1, _vectors(1)[0].tolist())])
        server.stop()
        with pytest.raises(BackendUnavailableError, match="Chroma at http://127.0.0.1"):
            await index.count(COLLECTION)
        server.start()
        assert await index.count(COLLECTION) == 1
    finally:
        await index.aclose()
        server.close()


def _stored(tmp_path: Path, dimension: int = 384) -> dict[str, dict[str, Any]]:
    """What Chroma holds per id, read with Chroma's own client."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    got = client.get_collection(f"archon_{COLLECTION}_{dimension}").get(include=["metadatas"])
    return dict(zip(got["ids"], got["metadatas"], strict=True))


async def test_presence_is_scalar_flags_and_the_json_copy_only_kept_when_needed(
    tmp_path: Path,
) -> None:
    index = _embedded(tmp_path)
    plain = {"source_id": "s", "chunk_number": 2, "metadata": {"tags": ["a"], "score": 0.5}}
    lossy = {
        "source_id": "s",
        "metadata": {"none": None, "empty": {}, "mixed": [1, 2.5], "odd": [1, "a"]},
        "dotted.key": 1,
    }
    vectors = _vectors(2)
    await index.upsert(
        COLLECTION,
        [VectorRecord(1, vectors[0].tolist(), plain), VectorRecord(2, vectors[1].tolist(), lossy)],
    )

    stored = _stored(tmp_path)
    assert JSON_KEY not in stored["1"]
    assert stored["1"][PRESENT_PREFIX + "metadata.tags"] is True
    assert stored["1"]["metadata.tags"] == ["a"]
    assert JSON_KEY in stored["2"]
    assert stored["2"][OPAQUE_PREFIX + "metadata.odd"] is True
    lists = {k for m in stored.values() for k, v in m.items() if isinstance(v, list)}
    assert lists == {"metadata.tags", "metadata.mixed"}  # values only: no key list
    hits = {hit.id: hit.metadata for hit in await index.query(COLLECTION, vectors[0].tolist())}
    assert hits == {1: plain, 2: json.loads(json.dumps(lossy))}


async def test_upserting_an_id_again_replaces_its_whole_metadata(tmp_path: Path) -> None:
    index = _embedded(tmp_path)
    first, second = _vectors(2)
    before = {"metadata": {"n": 5, "kind": "a"}, "gone": None}
    after = {"metadata": {"kind": "a"}}
    await index.upsert(COLLECTION, [VectorRecord(1, first.tolist(), before)])

    await index.upsert(COLLECTION, [VectorRecord(1, second.tolist(), after)])

    assert await index.count(COLLECTION, {"metadata.n": {"gte": 5}}) == 0
    assert await index.count(COLLECTION, {"metadata.n": {"is_null": True}}) == 1
    (hit,) = await index.query(COLLECTION, second.tolist(), k=1)
    assert hit.metadata == after
    assert hit.score == pytest.approx(1.0, abs=1e-3)
    assert {k for k in _stored(tmp_path)["1"] if "metadata.n" in k or k == JSON_KEY} == set()


async def test_a_batch_of_new_and_stored_ids_writes_every_one(tmp_path: Path) -> None:
    index = _embedded(tmp_path)
    old, new = _vectors(3, seed=4), _vectors(3, seed=5)
    await index.upsert(COLLECTION, records([1, 2], old[:2], [chunk_fields(1), chunk_fields(2)]))

    await index.upsert(COLLECTION, records([2, 3], new[1:], [chunk_fields(5), chunk_fields(6)]))

    assert await index.count(COLLECTION) == 3
    for rid, vector, fields in ((1, old[0], 1), (2, new[1], 5), (3, new[2], 6)):
        (hit,) = await index.query(COLLECTION, vector.tolist(), k=1)
        assert (hit.id, hit.metadata) == (rid, chunk_fields(fields))


async def test_collections_made_before_the_flags_keep_their_key_lists_exactly(
    tmp_path: Path,
) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    client.create_collection(  # as the layer made them: no archon_layout
        f"archon_{COLLECTION}_384",
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"archon_metric": "cosine", "archon_dimension": 384},
        embedding_function=None,
    )
    index = _embedded(tmp_path)
    fields = [chunk_fields(i) for i in range(60)]
    await index.upsert(COLLECTION, records(range(60), _vectors(60, seed=6), fields))

    stored = _stored(tmp_path)
    assert all(KEYS_KEY in m and JSON_KEY in m for m in stored.values())
    assert not any(k.startswith(PRESENT_PREFIX) for m in stored.values() for k in m)
    for filters in FILTERS:
        want = sum(evaluate(parse_filters(filters), f) for f in fields)
        assert await index.count(COLLECTION, filters) == want, filters


def test_the_json_copy_is_dropped_only_when_the_flat_values_give_it_back() -> None:
    assert unflatten({"a.b": 1, "c": [2.5]}) == {"a": {"b": 1}, "c": [2.5]}
    assert unflatten({"a": 1, "a.b": 2}) is None  # a value where an object would be
    for metadata, exact in [
        ({"a": {"b": 1}, "c": "x"}, True),
        ({"a.b": 1}, False),  # a dotted key reads back as an object
        ({"a": {}}, False),
        ({"a": None}, False),
        ({"a": [1, 2.5]}, False),  # the int is widened among floats
        ({"a": [1, "x"]}, False),  # opaque
    ]:
        assert restores(flatten(metadata), to_json(metadata)) is exact, metadata
