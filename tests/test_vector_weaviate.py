"""WeaviateVectorIndex: filter translation checked against weaviate-client's own ``Filter`` builders
(compared as the gRPC messages the client sends), the record mapping, and, when ``WEAVIATE_URL``
names a server, the vector contract and native hybrid search."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from weaviate.classes.query import Filter
from weaviate.collections.filters import _FilterToGRPC

from app.config import Settings
from app.errors import InvalidInputError
from app.filters import parse_filters
from app.vector.external.filters import normal_form, plan_filter
from app.vector.external.records import flatten
from app.vector.port import VectorRecord
from app.vector.weaviate import WeaviateVectorIndex
from app.vector.weaviate.schema import (
    BASE_PROPERTIES,
    KEYS_PROPERTY,
    NIL_UUID,
    OPAQUE_PROPERTY,
    new_properties,
    property_name,
    record_properties,
    translator,
)
from tests.vector_contract import COLLECTION, ContractHarness, VectorIndexContract
from tests.vector_fixtures import clustered

TYPES = {
    **BASE_PROPERTIES,
    property_name("source_id"): "text",
    property_name("chunk_number"): "number",
    property_name("metadata.kind"): "text",
    property_name("metadata.tags"): "text[]",
    property_name("metadata.flag"): "boolean",
}
SOURCE = Filter.by_property(property_name("source_id"))
CHUNK = Filter.by_property(property_name("chunk_number"))
TAGS = Filter.by_property(property_name("metadata.tags"))
KEYS = Filter.by_property(KEYS_PROPERTY)
FALSE = Filter.by_id().equal(NIL_UUID)


def translate(filters: dict[str, Any]) -> Any:
    node = parse_filters(filters)
    assert node is not None
    return translator(TYPES).translate(normal_form(node))


def same(got: Any, want: Any) -> bool:
    """Two filters are the same when the client would send the same gRPC message."""
    return bool(_FilterToGRPC.convert(got) == _FilterToGRPC.convert(want))


def test_property_names_are_valid_distinct_and_readable() -> None:
    names = {property_name(k) for k in ("a.b", "a_b", "a__b", "a-b", "metadata.kind")}
    assert len(names) == 5
    assert property_name("source_id") == "m_source__id"
    assert property_name("metadata.kind") == "m_metadata_dkind"
    assert all(name.replace("_", "").isalnum() for name in names)
    assert len(property_name("k" * 500)) <= 231


@pytest.mark.parametrize(
    ("filters", "want"),
    [
        ({"source_id": "a"}, SOURCE.equal("a")),
        ({"chunk_number": {"gt": 3}}, CHUNK.greater_than(3.0)),
        ({"chunk_number": {"lte": 2.5}}, CHUNK.less_or_equal(2.5)),
        ({"source_id": {"in": ["a", "b"]}}, SOURCE.contains_any(["a", "b"])),
        (
            {"source_id": {"ne": "a"}},
            Filter.all_of([SOURCE.not_equal("a"), KEYS.contains_any(["source_id"])]),
        ),
        (
            {"source_id": {"not_in": ["a"]}},
            Filter.all_of([SOURCE.contains_none(["a"]), KEYS.contains_any(["source_id"])]),
        ),
        ({"metadata.kind": {"is_null": True}}, KEYS.contains_none(["metadata.kind"])),
        ({"metadata.kind": None}, KEYS.contains_none(["metadata.kind"])),
        ({"metadata": {"contains": {"tags": ["red"]}}}, TAGS.contains_any(["red"])),
        ({"not": {"chunk_number": {"gt": 3}}}, CHUNK.less_or_equal(3.0)),
        (
            {"or": [{"source_id": "a"}, {"not": {"source_id": {"in": ["b"]}}}]},
            Filter.any_of(
                [
                    SOURCE.equal("a"),
                    Filter.all_of([SOURCE.contains_none(["b"]), KEYS.contains_any(["source_id"])]),
                ]
            ),
        ),
        # An array is never equal to a scalar; a text property never equals a number.
        ({"metadata.tags": "red"}, FALSE),
        ({"source_id": 3}, FALSE),
        ({"source_id": {"gt": 3}}, FALSE),
        ({"metadata.flag": True}, Filter.by_property(property_name("metadata.flag")).equal(True)),
    ],
    ids=repr,
)
def test_filters_translate_to_the_clients_own_builders(filters: dict[str, Any], want: Any) -> None:
    assert same(translate(filters), want)


def test_operators_weaviate_cannot_express_are_evaluated_exactly() -> None:
    for filters in ({"url": {"like": "%/api/%"}}, {"source_id": {"gt": "a"}}):
        plan = plan_filter(parse_filters(filters), lambda: translator(TYPES))
        assert plan.exact and plan.native is None
    mixed = {"source_id": "a", "url": {"ilike": "%X%"}}
    plan = plan_filter(parse_filters(mixed), lambda: translator(TYPES))
    assert plan.exact and same(plan.native, SOURCE.equal("a"))


def test_records_become_properties_typed_by_their_first_value() -> None:
    record = VectorRecord(
        5, [1.0, 0.0], {"n": 2, "tags": ["a"], "nested": {"ok": True}, "empty": []}, "text"
    )
    flat = flatten(record.metadata)
    types = dict(BASE_PROPERTIES)
    types.update(new_properties([flat], types))
    assert types[property_name("n")] == "number"
    assert types[property_name("nested.ok")] == "boolean"

    props = record_properties(record, flat, types)
    assert props[property_name("n")] == 2.0 and isinstance(props[property_name("n")], float)
    assert props["archon_id"] == "5" and props["document"] == "text"
    assert props[OPAQUE_PROPERTY] == ["empty"]
    assert set(props[KEYS_PROPERTY]) == {"n", "tags", "nested", "nested.ok", "empty"}

    clash = flatten({"n": "two"})  # the property is a number now: the text value is opaque
    assert record_properties(VectorRecord(6, [1.0, 0.0], {"n": "two"}), clash, types)[
        OPAQUE_PROPERTY
    ] == ["n"]


def test_weaviate_needs_a_url() -> None:
    with pytest.raises(InvalidInputError, match="WEAVIATE_URL"):
        WeaviateVectorIndex(Settings(_env_file=None))


def test_secrets_never_reach_an_error_message() -> None:
    from app.vector.weaviate.client import translate_error

    settings = Settings(
        _env_file=None, weaviate_url="http://localhost:8080", weaviate_api_key="s3cret-key"
    )
    error = translate_error(
        ConnectionError("refused; api_key=s3cret-key"),
        "querying",
        "http://localhost:8080",
        settings,
    )
    assert "s3cret" not in str(error)
    assert "WEAVIATE_URL" in str(error)


# -- against a server ---------------------------------------------------------------------------

WEAVIATE_URL = os.environ.get("WEAVIATE_URL")
needs_server = pytest.mark.skipif(
    not WEAVIATE_URL, reason="set WEAVIATE_URL to run the Weaviate integration tests"
)


@pytest.fixture
async def weaviate_index() -> AsyncIterator[WeaviateVectorIndex]:
    settings = Settings(
        _env_file=None,
        weaviate_url=WEAVIATE_URL,
        weaviate_api_key=os.environ.get("WEAVIATE_API_KEY"),
    )
    index = WeaviateVectorIndex(settings)
    client = await index.store.client()
    for name in await client.collections.list_all(simple=True):
        if name.startswith("Archon_"):
            await client.collections.delete(name)
    yield index
    await index.aclose()


@needs_server
class TestWeaviateContract(VectorIndexContract):
    @pytest.fixture
    def harness(self, weaviate_index: WeaviateVectorIndex) -> ContractHarness:
        counter = itertools.count(1)

        async def add_rows(collection: str, rows: Any) -> list[Any]:
            return [next(counter) for _ in rows]

        return ContractHarness(weaviate_index, add_rows, approximate=True)


@needs_server
async def test_native_hybrid_search_ranks_keyword_matches(
    weaviate_index: WeaviateVectorIndex,
) -> None:
    vectors = clustered(3, 384, centres=3, seed=1)
    texts = ["token bucket rate limiting", "btree index scans", "asyncio event loop"]
    await weaviate_index.upsert(
        COLLECTION,
        [
            VectorRecord(i, v.tolist(), {"source_id": "s", "n": i}, t)
            for i, (v, t) in enumerate(zip(vectors, texts, strict=True))
        ],
    )
    query = np.asarray(vectors[2]) + 0.01

    hits = await weaviate_index.hybrid(COLLECTION, "rate limiting", query.tolist(), k=3, alpha=0.2)

    assert hits[0].id == 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    filtered = await weaviate_index.hybrid(
        COLLECTION, "rate limiting", query.tolist(), k=3, filters={"n": {"gte": 1}}
    )
    assert {h.id for h in filtered} <= {1, 2}
