"""The filter language refuses malformed filters with a message naming what is wrong."""

from __future__ import annotations

import math

import pytest

from app.errors import InvalidInputError
from app.filters import And, Comparison, Not, Or, fields_of, parse_filters
from app.vector.port import check_vector, collection_table

FIELDS = {"status", "url", "metadata", "chunk_number"}


def parse(filters):
    return parse_filters(filters, FIELDS, json_fields={"metadata"})


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (["status"], "must be a mapping"),
        ({1: "x"}, "keys must be strings"),
        ({"not": ["x"]}, "'not' takes one filter mapping"),
        ({"status": {}}, "names no operator"),
        ({"or": []}, "non-empty list"),
        ({"and": "status"}, "non-empty list"),
        ({"or": ["status"]}, "takes filter mappings"),
        ({"owner": "me"}, "unknown filter field 'owner'"),
        ({"url.host": "x"}, "'url' is not a JSON field"),
        ({"metadata.a b": "x"}, "invalid JSON path"),
        ({"status": {"between": [1, 2]}}, "unknown filter operator 'between'"),
        ({"url": {"is_null": "yes"}}, "takes true or false"),
        ({"status": {"in": "todo"}}, "takes a list"),
        ({"url": {"like": 5}}, "takes a string pattern"),
        ({"metadata": {"contains": {1, 2}}}, "takes JSON"),
        ({"chunk_number": {"gt": [1]}}, "takes a scalar value"),
        ({"chunk_number": {"gt": math.nan}}, "finite number"),
        ({"url": "a\x00b"}, "NUL byte"),
        ({"status": {"in": ["todo", {"x": 1}]}}, "takes a scalar value"),
    ],
)
def test_malformed_filters_are_refused(filters, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse(filters)


def test_a_backend_may_refuse_an_operator_it_lacks() -> None:
    with pytest.raises(InvalidInputError, match="not supported by this backend"):
        parse_filters({"url": {"ilike": "%x%"}}, FIELDS, operators={"eq", "in"})


def test_open_field_sets_take_plain_identifiers_only() -> None:
    assert parse_filters({"anything": 1}, None) == Comparison("anything", (), "eq", 1)
    with pytest.raises(InvalidInputError, match="invalid filter field"):
        parse_filters({"1bad": 1}, None)


def test_the_tree_and_the_fields_it_mentions() -> None:
    node = parse(
        {
            "status": {"in": ["todo", "doing"]},
            "or": [{"metadata.kind": "guide"}, {"not": {"url": None}}],
            "and": [{}, {"chunk_number": {"gte": 0, "lt": 10}}],
        }
    )
    assert isinstance(node, And)
    status, either, both = node.items
    assert status == Comparison("status", (), "in", ("todo", "doing"))
    assert isinstance(either, Or) and isinstance(either.items[1], Not)
    assert either.items[0].key == "metadata.kind"
    assert isinstance(both, And) and len(both.items) == 1
    assert fields_of(node) == {"status", "metadata", "url", "chunk_number"}
    assert parse(None) is None and parse({}) is None and fields_of(None) == set()


@pytest.mark.parametrize(
    ("vector", "expected", "message"),
    [
        ([], None, "empty vector"),
        ([0.1, 0.2], 3, "expected 3, received 2"),
        ([0.1, math.inf], None, "NaN or infinity"),
        ([0.0, 0.0], None, "all-zero"),
    ],
)
def test_vectors_no_index_can_store_are_refused(vector, expected, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_vector(vector, expected=expected)


def test_an_all_zero_vector_is_fine_without_cosine() -> None:
    check_vector([0.0, 0.0], metric="l2")


def test_unknown_collections_are_refused() -> None:
    assert collection_table("code_examples") == "archon_code_examples"
    with pytest.raises(InvalidInputError, match="unknown collection"):
        collection_table("pages")
