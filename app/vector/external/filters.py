"""Exact filter translation for the external stores (Chroma, Weaviate).

``Translator`` turns a filter of the language in ``app.filters`` into a store's own filter with
exactly the reference semantics (``app.filter_eval``, SQL's three-valued logic), or raises
``NotNative`` when it cannot (``like``/``ilike``, ranges on text or dates, containment of empty or
nested values, negated containment). ``plan_filter`` then falls back: the store pre-filters by the
translatable part of a top-level ``and`` and the adapter evaluates the whole filter in Python over
the candidates' stored JSON, searching among the matching ids only. Results are exact either way;
no part of a filter is ever ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, Protocol, TypeVar

from app.filters import And, Comparison, Node, Not, Or
from app.vector.external.records import Scalar, is_number, plain_value

W = TypeVar("W")


class NotNative(Exception):
    """The store cannot express this filter exactly; evaluate it in Python instead."""


@dataclass(frozen=True)
class Leaf:
    comparison: Comparison
    negated: bool


@dataclass(frozen=True)
class AllOf:
    items: tuple[Normal, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Normal, ...]


Normal = Leaf | AllOf | AnyOf


def normal_form(node: Node, negated: bool = False) -> Normal:
    """Push every ``not`` down to the comparisons (De Morgan holds in three-valued logic)."""
    if isinstance(node, Comparison):
        return Leaf(node, negated)
    if isinstance(node, Not):
        return normal_form(node.item, not negated)
    items = tuple(normal_form(item, negated) for item in node.items)
    conjunction = isinstance(node, And) != negated
    assert isinstance(node, And | Or)
    return AllOf(items) if conjunction else AnyOf(items)


_NEGATED = {
    **{"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in"},
    **{"gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"},
}


class Dialect(Protocol[W]):
    """A store's filter primitives; ``Translator`` builds exact filters from them.

    ``all_of([])`` is true and ``any_of([])`` false; a single item is returned unwrapped.
    """

    def compare(self, key: str, op: str, value: Scalar) -> W: ...
    def one_of(self, key: str, values: list[Scalar], negate: bool) -> W: ...
    def has_key(self, key: str, present: bool) -> W: ...
    def array_contains(self, key: str, value: Scalar) -> W: ...
    def all_of(self, items: list[W]) -> W: ...
    def any_of(self, items: list[W]) -> W: ...
    def always(self, value: bool) -> W: ...


class Translator(Generic[W]):
    """Translates a filter to a store's filter, or raises ``NotNative`` (see module doc)."""

    def __init__(self, dialect: Dialect[W]) -> None:
        self.dialect = dialect
        self.contains_keys: set[str] = set()  # to check against opaque keys before trusting
        self.keys: set[str] = set()  # every key the filter reads

    def translate(self, node: Normal) -> W:
        if isinstance(node, AllOf):
            return self.dialect.all_of([self.translate(item) for item in node.items])
        if isinstance(node, AnyOf):
            return self.dialect.any_of([self.translate(item) for item in node.items])
        return self.leaf(node.comparison, node.negated)

    def leaf(self, cmp: Comparison, negated: bool) -> W:
        d, key, op, value = self.dialect, cmp.key, cmp.op, cmp.value
        self.keys.add(key)
        if op in ("eq", "ne") and value is None:
            op, value = "is_null", op == "eq"
        if negated:
            if op not in _NEGATED and op != "is_null":
                raise NotNative(f"negated {op!r}")
            op, value = (op, not value) if op == "is_null" else (_NEGATED[op], value)
        if op == "is_null":
            return d.has_key(key, present=not value)
        if op == "eq":
            return d.compare(key, "eq", native_scalar(value))
        if op == "ne":
            return d.all_of([d.compare(key, "ne", native_scalar(value)), d.has_key(key, True)])
        if op in ("gt", "gte", "lt", "lte"):
            if not is_number(value):
                raise NotNative("range comparison on a non-number")
            return d.compare(key, op, value)
        if op in ("in", "not_in"):
            return self._membership(key, list(value), op == "not_in")
        if op == "contains":
            return self.contains(key, value)
        raise NotNative(op)

    def _membership(self, key: str, values: list[Any], negate: bool) -> W:
        d = self.dialect
        groups = scalar_groups(values)
        if negate:
            return d.all_of([*(d.one_of(key, g, True) for g in groups), d.has_key(key, True)])
        return d.any_of([d.one_of(key, g, False) for g in groups]) if groups else d.always(False)

    def contains(self, key: str, value: Any) -> W:
        """``@>``: objects key by key, arrays element by element, scalars equal or in an array."""
        d = self.dialect
        self.contains_keys.add(key)
        self.keys.add(key)
        if isinstance(value, Mapping):
            if not value:
                raise NotNative("containment of an empty object")
            return d.all_of([self.contains(f"{key}.{k}", v) for k, v in value.items()])
        if isinstance(value, list):
            if not value or any(isinstance(v, list | Mapping) for v in value):
                raise NotNative("containment of an empty or nested array")
            return d.all_of([d.array_contains(key, native_scalar(v)) for v in value])
        scalar = native_scalar(value)
        return d.any_of([d.compare(key, "eq", scalar), d.array_contains(key, scalar)])


def native_scalar(value: Any) -> Scalar:
    """A filter operand as the store holds it; dates are not comparable natively."""
    value = plain_value(value) if not isinstance(value, datetime | date) else value
    if isinstance(value, bool | int | float | str):
        return value
    raise NotNative(f"operand of type {type(value).__name__}")


def scalar_groups(values: Sequence[Any]) -> list[list[Scalar]]:
    """``in`` operands split by type (stores want one type per list; numbers as floats)."""
    texts: list[Scalar] = []
    flags: list[Scalar] = []
    numbers: list[Scalar] = []
    for raw in values:
        value = native_scalar(raw)
        if isinstance(value, bool):
            flags.append(value)
        elif isinstance(value, str):
            texts.append(value)
        else:
            numbers.append(float(value))
    return [group for group in (texts, flags, numbers) if group]


def with_model(node: Node | None, embedding_model: str | None) -> Node | None:
    """``node`` restricted to vectors made by ``embedding_model`` (a metadata field)."""
    if embedding_model is None:
        return node
    model = Comparison("embedding_model", (), "eq", embedding_model)
    return model if node is None else And((node, model))


@dataclass
class FilterPlan(Generic[W]):
    """How to run a filter: natively (``exact`` False) or pre-filtered then evaluated in Python."""

    native: W | None
    exact: bool
    contains_keys: set[str]
    keys: set[str] = field(default_factory=set)


def plan_filter(
    node: Node | None, make: Callable[[], Translator[W]], *, force_exact: bool = False
) -> FilterPlan[W]:
    """The native filter when it is exact, else a native pre-filter and ``exact=True``.

    The pre-filter is the translatable part of a top-level ``and``, leaving out containment
    (which an opaque value could satisfy): it selects a superset of the matches.
    """
    if node is None:
        return FilterPlan(None, False, set())
    normal = normal_form(node)
    if not force_exact:
        whole = make()
        try:
            translated = whole.translate(normal)
            return FilterPlan(translated, False, whole.contains_keys, whole.keys)
        except NotNative:
            pass
    parts: list[W] = []
    for item in normal.items if isinstance(normal, AllOf) else (normal,):
        translator = make()
        try:
            translated = translator.translate(item)
        except NotNative:
            continue
        if not translator.contains_keys:
            parts.append(translated)
    prefilter = make().dialect.all_of(parts) if parts else None
    return FilterPlan(prefilter, True, set())
