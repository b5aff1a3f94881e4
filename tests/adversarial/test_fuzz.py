"""Hypothesis fuzz of the public entry points on every backend: filters, writes, vectors and search
text. Each answer is a correct result, ``InvalidInputError`` or another ``DataLayerError``; any
other exception fails the test (and hypothesis shrinks it), and a filter's rows must be exactly
those the reference evaluator ``app.filter_eval`` selects.

``TEST_FUZZ_EXAMPLES`` examples per entry point and backend (25 in ``make test``; ``make
test-adversarial`` runs 2,000). With ``-s`` the outcome table is printed at the end.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bootstrap import DataLayer
from app.domain import CrawledPage, Project, Source
from app.errors import DataLayerError, InvalidInputError
from app.filter_eval import evaluate
from app.filters import parse_filters
from app.repositories.validation import columns_of
from app.vector import VectorRecord
from tests.support import Backend

EXAMPLES = int(os.environ.get("TEST_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OUTCOMES: Counter[tuple[str, str, str]] = Counter()
FIELDS = ["source_id", "url", "chunk_number", "content", "id", "created_at", "metadata",
          "metadata.kind", "metadata.n", "metadata.tags", "metadata.a.b", "nope",
          "metadata.kind\n", "metadata.", "metadata..x"]  # fmt: skip
OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "like", "ilike", "is_null",
       "contains", "between"]  # fmt: skip
# Text of every kind, lone surrogates and NUL included.
texts = st.text(st.characters(codec=None), max_size=12) | st.sampled_from(
    ["doc", "Doc", "%", "_", "a%b", "'; DROP TABLE archon_projects; --", "\x00", "\ud800"]
)
scalars = (
    texts
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
anything = st.builds(
    lambda field, op, value: {field: {op: value}} if op else {field: value},
    st.sampled_from(FIELDS), st.sampled_from([None, *OPS]), json_values,
)  # fmt: skip
small_ints = st.integers(min_value=-3, max_value=6)
# Filters that mostly make sense, so that correct results are compared, not only refusals.
typed = st.one_of(
    st.builds(lambda v: {"source_id": v}, st.sampled_from(["fuzz", "other"]) | texts),
    st.builds(lambda op, v: {"chunk_number": {op: v}},
              st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), small_ints),
    st.builds(lambda v: {"chunk_number": {"in": v}}, st.lists(small_ints, max_size=3)),
    st.builds(lambda op, v: {"metadata.kind": {op: v}},
              st.sampled_from(["eq", "ne", "like", "ilike", "in", "not_in"]),
              st.sampled_from(["doc", "Doc", "d%", "%"]) | st.lists(texts, max_size=2)),
    st.builds(lambda op, v: {"metadata.n": {op: v}},
              st.sampled_from(["gt", "gte", "lt", "lte", "eq", "ne"]),
              small_ints | st.floats(-5, 5) | st.just(2**53 + 1)),
    st.builds(lambda v: {"metadata.kind": {"is_null": v}}, st.booleans()),
    st.builds(lambda v: {"metadata.tags": {"contains": v}},
              st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)),
    st.builds(lambda v: {"url": {"like": v}}, st.sampled_from(["%fuzz%", "%/1", "_"]) | texts),
)  # fmt: skip
comparisons = typed | anything
filters = st.recursive(
    comparisons,
    lambda inner: st.builds(lambda items: {"and": items}, st.lists(inner, max_size=3))
    | st.builds(lambda items: {"or": items}, st.lists(inner, max_size=3))
    | st.builds(lambda item: {"not": item}, inner),
    max_leaves=5,
)
vectors = st.one_of(
    st.lists(st.floats(-1, 1, width=32), min_size=384, max_size=384),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=384,
             max_size=384),
    st.lists(scalars, min_size=0, max_size=4),
    st.just([0.0] * 384), st.none(), texts,
)  # fmt: skip
SEED = [
    {"kind": "doc", "n": 1, "tags": ["a", "b"]},
    {"kind": "Doc", "n": 2.5, "a": {"b": None}},
    {"kind": None, "tags": []},
    {},
    {"n": 2**53 + 1, "kind": "%"},
]


@pytest.fixture(scope="module", autouse=True)
def outcome_table() -> Iterator[None]:
    yield
    print("\nfuzz outcomes (backend, entry point, outcome: count)")
    for (backend, entry, outcome), count in sorted(OUTCOMES.items()):
        print(f"  {backend:<9} {entry:<12} {outcome:<18} {count}")


async def _seeded(layer: DataLayer) -> list[dict[str, Any]]:
    """The pages every filter runs over, as the reference evaluator sees them."""
    async with layer.uow() as uow:
        if await uow.sources.get("fuzz") is None:
            await uow.sources.add(Source(source_id="fuzz", title="fuzz"))
            await uow.pages.add_many(
                CrawledPage(url=f"https://fuzz.test/{i}", chunk_number=i, content=f"doc {i}",
                            source_id="fuzz", metadata_=metadata)
                for i, metadata in enumerate(SEED)
            )  # fmt: skip
            await uow.commit()
    async with layer.uow(read_only=True) as uow:
        pages = await uow.pages.list(order_by=["id"])
    columns = columns_of(CrawledPage)
    records = []
    for page in pages:
        record = {}
        for name, attr in columns.attr_of.items():
            record[name] = record[attr] = getattr(page, attr)
        records.append(record)
    return records


def _outcome(backend: Backend, entry: str, exc: BaseException | None) -> None:
    if exc is None:
        kind = "correct result"
    elif isinstance(exc, InvalidInputError):
        kind = "InvalidInputError"
    elif isinstance(exc, DataLayerError):
        kind = type(exc).__name__
    else:
        raise AssertionError(f"{entry} raised an untyped {type(exc).__name__}: {exc}") from exc
    OUTCOMES[(backend.name, entry, kind)] += 1


@FUZZ
@given(filters=filters)
async def test_fuzzed_filters(layer: DataLayer, backend: Backend, filters: Any) -> None:
    records = await _seeded(layer)
    columns = columns_of(CrawledPage)
    try:
        async with layer.uow(read_only=True) as uow:
            got = [page.id for page in await uow.pages.list(filters, order_by=["id"])]
    except Exception as exc:
        _outcome(backend, "filter", exc)
        return
    node = parse_filters(filters, columns.by_name, columns.json)
    expected = [record["id"] for record in records if evaluate(node, record)]
    assert got == expected, filters
    _outcome(backend, "filter", None)


@FUZZ
@given(title=texts, docs=st.lists(json_values, max_size=3), description=texts | st.none())
async def test_fuzzed_writes(
    layer: DataLayer, backend: Backend, title: Any, docs: Any, description: Any
) -> None:
    try:
        async with layer.uow() as uow:  # never committed: the rows stay as they were
            project = await uow.projects.add(
                Project(title=title, docs=docs, description=description)
            )
            await uow.flush()
            stored = await uow.projects.get(project.id)
            assert stored is not None and stored.title == title
    except Exception as exc:
        _outcome(backend, "write", exc)
        return
    _outcome(backend, "write", None)


@FUZZ
@given(vector=vectors)
async def test_fuzzed_vectors(layer: DataLayer, backend: Backend, vector: Any) -> None:
    await _seeded(layer)
    try:
        async with layer.uow() as uow:
            (page,) = await uow.pages.list({"chunk_number": 0}, limit=1)
            await uow.vectors.upsert("crawled_pages", [VectorRecord(page.id, vector)])
        hits = await layer.search("crawled_pages", vector=vector, k=3, mode="vector")
    except Exception as exc:
        _outcome(backend, "vector", exc)
        return
    assert all(math.isfinite(hit.score) for hit in hits)
    _outcome(backend, "vector", None)


@FUZZ
@given(text=texts)
async def test_fuzzed_search_text(layer: DataLayer, backend: Backend, text: Any) -> None:
    await _seeded(layer)
    try:
        hits = await layer.search("crawled_pages", text=text, k=5, mode="keyword")
    except Exception as exc:
        _outcome(backend, "search text", exc)
        return
    assert all(hit.entity.source_id == "fuzz" for hit in hits)
    _outcome(backend, "search text", None)
