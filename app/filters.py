"""The filter language shared by repositories and vector indexes: parsed and validated here.

``{"field": value}`` is equality; ``{"field": {"op": value}}`` uses an operator from ``OPERATORS``;
``"metadata.knowledge_type"`` reaches into a JSON column; ``{"and": [...]}``, ``{"or": [...]}`` and
``{"not": {...}}`` combine. Parsing produces a small tree that each backend compiles (SQL, Chroma
``where``, Weaviate ``Filter``) and that ``evaluate`` runs in Python; nothing reaches SQL unchecked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from app.errors import InvalidInputError
from app.text import check_text

OPERATORS = frozenset(
    {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "like", "ilike", "is_null", "contains"}
)
_SCALAR = (str, int, float, bool, UUID, datetime, Enum)
# \Z, not $: "$" also matches before a final newline, which PostgreSQL would then trim.
_PATH_PART = re.compile(r"\A[A-Za-z_][A-Za-z0-9_\-]*\Z")


@dataclass(frozen=True)
class Comparison:
    """``field[.path...] op value``; ``path`` is empty for a plain column."""

    field: str
    path: tuple[str, ...]
    op: str
    value: Any

    @property
    def key(self) -> str:
        return ".".join((self.field, *self.path))


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Comparison | And | Or | Not


def parse_filters(
    filters: Mapping[str, Any] | None,
    fields: Collection[str] | None = None,
    json_fields: Collection[str] = (),
    operators: Collection[str] = OPERATORS,
) -> Node | None:
    """Validate ``filters`` and return its tree (``None`` when empty).

    ``fields`` are the allowed top-level names (``None`` allows any plain identifier, for vector
    metadata); dotted paths are allowed only under ``json_fields``. Raises ``InvalidInputError``
    naming the offending field or operator.
    """
    if filters is None:
        return None
    if not isinstance(filters, Mapping):
        raise InvalidInputError(f"filters must be a mapping, got {type(filters).__name__}")
    parser = _Parser(fields, frozenset(json_fields), frozenset(operators))
    return parser.mapping(filters)


MAX_FILTER_DEPTH = 32  # and/or/not nested deeper than this is refused (a filter, not a program)


class _Parser:
    def __init__(
        self, fields: Collection[str] | None, json_fields: frozenset[str], ops: frozenset[str]
    ) -> None:
        self.fields = None if fields is None else frozenset(fields)
        self.json_fields = json_fields
        self.ops = ops
        self.depth = 0

    def mapping(self, filters: Mapping[str, Any]) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_FILTER_DEPTH:
                raise InvalidInputError(
                    f"filters nest and/or/not more than {MAX_FILTER_DEPTH} deep"
                )
            nodes = [node for key, value in filters.items() for node in self.entry(key, value)]
        finally:
            self.depth -= 1
        if not nodes:
            return None
        return nodes[0] if len(nodes) == 1 else And(tuple(nodes))

    def entry(self, key: Any, value: Any) -> list[Node]:
        if not isinstance(key, str):
            raise InvalidInputError(f"filter keys must be strings, got {key!r}")
        if key in ("and", "or"):
            return [self.combine(key, value)]
        if key == "not":
            if not isinstance(value, Mapping):
                raise InvalidInputError("'not' takes one filter mapping")
            inner = self.mapping(value)
            return [] if inner is None else [Not(inner)]
        field, path = self.field(key)
        if isinstance(value, Mapping):
            if not value:
                raise InvalidInputError(f"filter on {key!r} names no operator")
            return [self.comparison(field, path, op, operand) for op, operand in value.items()]
        return [self.comparison(field, path, "eq", value)]

    def combine(self, key: str, value: Any) -> Node:
        if not isinstance(value, list | tuple) or not value:
            raise InvalidInputError(f"{key!r} takes a non-empty list of filter mappings")
        items = []
        for item in value:
            if not isinstance(item, Mapping):
                raise InvalidInputError(f"{key!r} takes filter mappings, got {item!r}")
            node = self.mapping(item)
            if node is not None:
                items.append(node)
        return And(tuple(items)) if key == "and" else Or(tuple(items))

    def field(self, key: str) -> tuple[str, tuple[str, ...]]:
        field, *path = key.split(".")
        if self.fields is not None and field not in self.fields:
            raise InvalidInputError(
                f"unknown filter field {field!r}; allowed: {', '.join(sorted(self.fields))}"
            )
        if self.fields is None and not _PATH_PART.match(field):
            raise InvalidInputError(f"invalid filter field {key!r}")
        if path:
            if self.fields is not None and field not in self.json_fields:
                raise InvalidInputError(f"{field!r} is not a JSON field; {key!r} has no path")
            if not all(_PATH_PART.match(part) for part in path):
                raise InvalidInputError(f"invalid JSON path in filter field {key!r}")
        return field, tuple(path)

    def comparison(self, field: str, path: tuple[str, ...], op: Any, value: Any) -> Comparison:
        name = ".".join((field, *path))
        if op not in OPERATORS:
            raise InvalidInputError(
                f"unknown filter operator {op!r} on {name!r}; "
                f"allowed: {', '.join(sorted(OPERATORS))}"
            )
        if op not in self.ops:
            raise InvalidInputError(
                f"operator {op!r} (on {name!r}) is not supported by this backend"
            )
        _check_operand(name, op, value)
        if op in ("in", "not_in"):
            value = tuple(value)
        return Comparison(field, path, op, value)


def _check_operand(name: str, op: str, value: Any) -> None:
    if op == "is_null":
        if not isinstance(value, bool):
            raise InvalidInputError(f"'is_null' on {name!r} takes true or false")
    elif op in ("in", "not_in"):
        if not isinstance(value, list | tuple | set | frozenset):
            raise InvalidInputError(f"{op!r} on {name!r} takes a list")
        for item in value:
            _check_scalar(name, op, item)
    elif op in ("like", "ilike"):
        if not isinstance(value, str):
            raise InvalidInputError(f"{op!r} on {name!r} takes a string pattern")
        check_text(f"{op!r} pattern for {name!r}", value)
    elif op == "contains":
        if not isinstance(value, dict | list | str | int | float | bool):
            raise InvalidInputError(f"'contains' on {name!r} takes JSON (object, list or scalar)")
        _check_json_operand(name, value)
    else:
        _check_scalar(name, op, value, allow_none=op in ("eq", "ne"))


def _check_json_operand(name: str, value: Any) -> None:
    """JSON every backend can compare: finite numbers, valid text, not absurdly deep."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        check_text(f"'contains' value for {name!r}", text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInputError(f"'contains' on {name!r} takes plain JSON: {exc}") from None


def _check_scalar(name: str, op: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, _SCALAR):
        raise InvalidInputError(
            f"{op!r} on {name!r} takes a scalar value, got {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{op!r} on {name!r} takes a finite number")
    if isinstance(value, str):
        check_text(f"filter value for {name!r}", value)


def fields_of(node: Node | None) -> set[str]:
    """Every top-level field a filter tree mentions."""
    if node is None:
        return set()
    if isinstance(node, Comparison):
        return {node.field}
    if isinstance(node, Not):
        return fields_of(node.item)
    return set().union(*(fields_of(item) for item in node.items))
