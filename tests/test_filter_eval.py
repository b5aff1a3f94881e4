"""Reference semantics of the filter language (pure logic: no database)."""

from __future__ import annotations

import pytest

from app.filter_eval import evaluate, json_contains
from app.filters import parse_filters


@pytest.mark.parametrize(
    ("container", "contained", "expected"),
    [
        (["a", "b"], "a", True),  # PostgreSQL's one exception: a top-level array holds a scalar
        ({"k": ["a"]}, {"k": "a"}, False),  # ... but not below the top level
        ([["docs"]], ["docs"], False),
        ({"k": ["a", "b"]}, {"k": ["a"]}, True),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True),
        ([{"x": 1, "y": 2}], [{"x": 1}], True),
        ([1, 2], [2, 2], True),
        ({"n": 1}, {"n": True}, False),  # JSON true is not 1
        ("a", "a", True),
    ],
)
def test_json_contains_follows_postgresql(container, contained, expected) -> None:
    assert json_contains(container, contained) is expected


def test_three_valued_logic_treats_missing_as_unknown() -> None:
    record = {"status": "todo", "metadata": {}}
    assert not evaluate(parse_filters({"metadata.kind": {"ne": "x"}}), record)
    assert not evaluate(parse_filters({"not": {"metadata.kind": "x"}}), record)
    assert evaluate(parse_filters({"metadata.kind": {"is_null": True}}), record)
    either = {"or": [{"metadata.kind": "x"}, {"status": "todo"}]}
    assert evaluate(parse_filters(either), record)


def test_like_patterns_escape_and_case() -> None:
    record = {"url": "https://Docs.example/50%_off"}
    assert evaluate(parse_filters({"url": {"like": "%Docs%"}}), record)
    assert not evaluate(parse_filters({"url": {"like": "%docs%"}}), record)
    assert evaluate(parse_filters({"url": {"ilike": "%docs%"}}), record)
    assert evaluate(parse_filters({"url": {"like": "%50\\%\\_off"}}), record)
    assert not evaluate(parse_filters({"url": {"like": "%50\\%\\_of"}}), record)
