"""The reference semantics of the filter language, in Python (SQL's three-valued logic).

Used by the exact vector index on metadata held in memory and by the tests, which check every
backend's answer against this one. A missing field or JSON key is NULL: every comparison with NULL
is unknown, so ``ne`` and ``not_in`` do not match it, as in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any
from uuid import UUID

from app.filters import And, Comparison, Node, Not, Or


def evaluate(node: Node | None, record: Mapping[str, Any]) -> bool:
    """Whether ``record`` (field name -> value, JSON fields as dicts) matches the filter."""
    return node is None or _eval(node, record) is True


def _eval(node: Node, record: Mapping[str, Any]) -> bool | None:
    if isinstance(node, Comparison):
        return _compare(node, _lookup(record, node.field, node.path))
    if isinstance(node, Not):
        inner = _eval(node.item, record)
        return None if inner is None else not inner
    results = [_eval(item, record) for item in node.items]
    if isinstance(node, And):
        if False in results:
            return False
        return None if None in results else True
    assert isinstance(node, Or)
    if True in results:
        return True
    return None if None in results else False


def _lookup(record: Mapping[str, Any], field: str, path: tuple[str, ...]) -> Any:
    value = record.get(field)
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _norm(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool | int | float | str):
        return value
    return value


def _compare(node: Comparison, actual: Any) -> bool | None:
    op, expected = node.op, node.value
    if op == "is_null":
        return (actual is None) is expected
    if op == "eq" and expected is None:
        return actual is None
    if op == "ne" and expected is None:
        return actual is not None
    if actual is None:
        return None
    if op == "contains":
        return json_contains(actual, expected)
    actual = _norm(actual)
    if op in ("in", "not_in"):
        found = any(_equal(actual, _norm(item)) for item in expected)
        return found if op == "in" else not found
    expected = _norm(expected)
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op in ("like", "ilike"):
        if not isinstance(actual, str):
            return None
        return _like_regex(expected, op == "ilike").fullmatch(actual) is not None
    try:
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        return bool(actual <= expected)
    except TypeError:
        return None


def _equal(actual: Any, expected: Any) -> bool:
    # JSON has no separate bool type in every backend; keep True distinct from 1 as SQL JSON does.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return bool(actual == expected)


def json_contains(container: Any, contained: Any, *, top: bool = True) -> bool:
    """PostgreSQL ``@>``: objects by subset, arrays by membership, scalars by equality.

    As in PostgreSQL, an array contains a bare scalar only at the top level:
    ``["a"] @> "a"`` holds, ``{"k": ["a"]} @> {"k": "a"}`` does not.
    """
    if isinstance(contained, Mapping):
        return isinstance(container, Mapping) and all(
            key in container and json_contains(container[key], value, top=False)
            for key, value in contained.items()
        )
    if isinstance(contained, list):
        return isinstance(container, list) and all(
            any(json_contains(item, want, top=False) for item in container) for want in contained
        )
    if isinstance(container, list):
        return top and any(
            not isinstance(item, list | Mapping) and _equal(item, contained) for item in container
        )
    return _equal(container, contained)


@lru_cache(maxsize=256)
def _like_regex(pattern: str, insensitive: bool) -> re.Pattern[str]:
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if insensitive else 0))
