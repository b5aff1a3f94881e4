"""What the external stores (Chroma, Weaviate) share: flat metadata and exact filter translation.

Stores that keep vectors outside SQL hold metadata as flat scalars, so a record's metadata is
stored three ways at once:

- flattened: ``{"metadata": {"kind": "doc"}}`` becomes ``"metadata.kind": "doc"``; scalars and
  homogeneous lists of scalars are stored natively, for the store's own filtering;
- ``_archon_keys``: every key (and every parent key) that is present, not null. Stores match a
  missing key with ``!=`` / ``not in``; SQL's three-valued logic does not, so ``ne`` and ``not_in``
  add "key present", and ``is_null`` becomes "key absent";
- ``_archon_json``: the metadata as JSON, returned with hits and used for exact evaluation.

Values a store cannot hold (empty or mixed lists, lists of objects) are "opaque": present, listed in
``_archon_opaque``, and only in the JSON. ``Translator`` turns a filter into the store's own filter
with exactly the reference semantics (``app.filter_eval``), or raises ``NotNative`` when it cannot
(``like``/``ilike``, ranges on text or dates, containment of empty or nested values, negated
containment, containment on an opaque key). The adapters then evaluate the filter exactly in Python
over the JSON of the candidates (the store pre-filters by the translatable part of a top-level
``and``) and search among the matching ids only, so results are always exact, never ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from app.errors import InvalidInputError
from app.filters import And, Comparison, Node, Not, Or

ARCHON_DIMENSIONS = (384, 768, 1024, 1536, 3072)
RESERVED_PREFIX = "_archon_"
ID_KEY = "_archon_id"
KEYS_KEY = "_archon_keys"
OPAQUE_KEY = "_archon_opaque"
JSON_KEY = "_archon_json"
W = TypeVar("W")
Scalar = str | int | float | bool


class NotNative(Exception):
    """The store cannot express this filter exactly; evaluate it in Python instead."""


@dataclass
class FlatMetadata:
    """A record's metadata as a store holds it (see the module docstring)."""

    values: dict[str, Scalar | list[Any]] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)


def flatten(metadata: Mapping[str, Any]) -> FlatMetadata:
    """Flatten nested mappings to dotted keys; reject keys the layer reserves."""
    flat = FlatMetadata()
    for key in metadata:
        if not isinstance(key, str) or not key or key.startswith(RESERVED_PREFIX):
            raise InvalidInputError(
                f"invalid metadata key {key!r}: keys are non-empty strings not starting with "
                f"{RESERVED_PREFIX!r}"
            )
    _flatten_into(flat, "", metadata)
    return flat


def _flatten_into(flat: FlatMetadata, prefix: str, mapping: Mapping[str, Any]) -> None:
    for raw_key, raw_value in mapping.items():
        key = f"{prefix}{raw_key}"
        value = _plain(raw_value)
        if value is None:
            continue
        flat.present.append(key)
        if isinstance(value, Mapping):
            _flatten_into(flat, f"{key}.", value)
        elif isinstance(value, list):
            stored = native_list(value)
            if stored is None:
                flat.opaque.append(key)
            else:
                flat.values[key] = stored
        elif isinstance(value, float) and not math.isfinite(value):
            flat.opaque.append(key)
        else:
            flat.values[key] = value


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def native_list(values: list[Any]) -> list[Any] | None:
    """A list a store can hold (non-empty, one scalar type; ints widened among floats)."""
    if not values:
        return None
    items = [_plain(v) for v in values]
    if all(isinstance(v, bool) for v in items):
        return items
    if all(isinstance(v, str) for v in items):
        return items
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return items
    if all(_is_number(v) for v in items) and all(math.isfinite(v) for v in items):
        return [float(v) for v in items]
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_json(metadata: Mapping[str, Any]) -> str:
    """The metadata as JSON (enums, UUIDs and dates as their plain values)."""
    try:
        return json.dumps(metadata, default=_json_default, allow_nan=False, sort_keys=True)
    except ValueError as exc:
        raise InvalidInputError(f"metadata is not valid JSON: {exc}") from exc


def _json_default(value: Any) -> Any:
    plain = _plain(value)
    if plain is value:
        raise TypeError(f"metadata value of type {type(value).__name__} is not JSON")
    return plain


def from_json(text: Any) -> dict[str, Any]:
    """The metadata stored by ``to_json`` (``{}`` when missing)."""
    return json.loads(text) if isinstance(text, str) and text else {}


# -- filters ---------------------------------------------------------------------------------


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
            if not _is_number(value):
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
    value = _plain(value) if not isinstance(value, datetime | date) else value
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
