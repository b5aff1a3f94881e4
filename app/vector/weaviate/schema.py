"""Weaviate's schema for Archon's vectors: property names and types, records as properties, filters.

Metadata keys become properties named ``m_<key>`` with every character outside ``[A-Za-z0-9]``
escaped (``_`` -> ``__``, ``.`` -> ``_d``, others ``_x<hex>_``), so names are valid GraphQL and
distinct keys never share a property. A property's type is set by the first value written to it
(text with field tokenization, number, boolean, or an array of one of those); a later value of
another type is stored only in the record's JSON and listed as opaque.

Weaviate types properties per collection, so unlike Chroma a comparison must know the property's
type: a text property compared with a number is simply false (as in the reference semantics), an
array property is never ``equal`` to a scalar, and ``contains`` on an array uses ``contains_any``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from app.vector.external.filters import Translator
from app.vector.external.records import FlatMetadata, Scalar, to_json
from app.vector.port import VectorRecord

KEYS_PROPERTY = "archon_keys"
OPAQUE_PROPERTY = "archon_opaque"
JSON_PROPERTY = "archon_json"
ID_PROPERTY = "archon_id"
DOCUMENT_PROPERTY = "document"
NIL_UUID = "00000000-0000-0000-0000-000000000000"
_PLAIN = re.compile(r"[A-Za-z0-9]")
_MAX_NAME = 230

# Our type names -> Weaviate's DataType values (strings, so this module imports no SDK to load).
SCALAR_TYPES = {"text": str, "number": float, "boolean": bool}
ARRAY_TYPES = {"text[]": "text", "number[]": "number", "boolean[]": "boolean"}


def property_name(key: str) -> str:
    """The Weaviate property holding metadata ``key`` (reversible escape; hashed when too long)."""
    escaped = "".join(
        c if _PLAIN.match(c) else "__" if c == "_" else "_d" if c == "." else f"_x{ord(c):x}_"
        for c in key
    )
    name = f"m_{escaped}"
    if len(name) > _MAX_NAME:
        name = "m_h" + hashlib.sha256(key.encode()).hexdigest()[:40]
    return name


def value_type(value: Any) -> str | None:
    """The Weaviate type a flat metadata value needs (``None``: not representable)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and value:
        inner = {value_type(v) for v in value}
        if len(inner) == 1 and (kind := inner.pop()) is not None:
            return f"{kind}[]"
    return None


BASE_PROPERTIES = {
    ID_PROPERTY: "text",
    KEYS_PROPERTY: "text[]",
    OPAQUE_PROPERTY: "text[]",
    JSON_PROPERTY: "text",
    DOCUMENT_PROPERTY: "text",
}


def new_properties(flats: list[FlatMetadata], types: Mapping[str, str]) -> dict[str, str]:
    """Properties these records need that the collection lacks, typed by their first value."""
    needed: dict[str, str] = {}
    for flat in flats:
        for key, value in flat.values.items():
            name, kind = property_name(key), value_type(value)
            if kind is not None and name not in types and name not in needed:
                needed[name] = kind
    return needed


def record_properties(
    record: VectorRecord, flat: FlatMetadata, types: Mapping[str, str]
) -> dict[str, Any]:
    """A record as Weaviate properties; a value of another type than its property is opaque."""
    props: dict[str, Any] = {
        ID_PROPERTY: json.dumps(record.id),
        JSON_PROPERTY: to_json(record.metadata),
        KEYS_PROPERTY: flat.present,
        DOCUMENT_PROPERTY: record.document or "",
    }
    opaque = list(flat.opaque)
    for key, value in flat.values.items():
        name, kind = property_name(key), value_type(value)
        if kind is None or types.get(name) != kind:
            opaque.append(key)
        elif kind == "number":
            props[name] = float(value)  # type: ignore[arg-type]
        elif kind == "number[]":
            props[name] = [float(v) for v in value]  # type: ignore[union-attr]
        else:
            props[name] = value
    props[OPAQUE_PROPERTY] = opaque
    return props


def fits(kind: str | None, value: Scalar) -> bool:
    """Whether a scalar operand can be compared with a property of type ``kind``."""
    if kind not in SCALAR_TYPES:
        return False
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, SCALAR_TYPES[kind])


def operand(value: Scalar) -> Scalar:
    """Numbers as floats: every numeric property is a Weaviate ``number``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class WeaviateDialect:
    """``weaviate.classes.query.Filter`` objects for ``Translator``, knowing the property types."""

    def __init__(self, types: Mapping[str, str]) -> None:
        from weaviate.classes.query import Filter

        self.Filter = Filter
        self.types = types  # property name -> Weaviate type

    def _property(self, key: str) -> tuple[Any, str | None]:
        name = property_name(key)
        return self.Filter.by_property(name), self.types.get(name)

    def compare(self, key: str, op: str, value: Scalar) -> Any:
        prop, kind = self._property(key)
        if not fits(kind, value) or (op not in ("eq", "ne") and kind != "number"):
            # Not comparable: "ne" is then true for a present key (Translator adds presence).
            return self.always(op == "ne")
        method = {
            "eq": prop.equal, "ne": prop.not_equal, "gt": prop.greater_than,
            "gte": prop.greater_or_equal, "lt": prop.less_than, "lte": prop.less_or_equal,
        }[op]  # fmt: skip
        return method(operand(value))

    def one_of(self, key: str, values: list[Scalar], negate: bool) -> Any:
        prop, kind = self._property(key)
        if not fits(kind, values[0]):
            return self.always(negate)
        items = [operand(v) for v in values]
        return prop.contains_none(items) if negate else prop.contains_any(items)

    def has_key(self, key: str, present: bool) -> Any:
        keys = self.Filter.by_property(KEYS_PROPERTY)
        return keys.contains_any([key]) if present else keys.contains_none([key])

    def array_contains(self, key: str, value: Scalar) -> Any:
        prop, kind = self._property(key)
        if not fits(ARRAY_TYPES.get(kind or ""), value):
            return self.always(False)
        return prop.contains_any([operand(value)])

    def all_of(self, items: list[Any]) -> Any:
        return self.Filter.all_of(items) if items else self.always(True)

    def any_of(self, items: list[Any]) -> Any:
        return self.Filter.any_of(items) if items else self.always(False)

    def always(self, value: bool) -> Any:
        # No object has the nil UUID: ids are UUID5s of the row ids.
        by_id = self.Filter.by_id()
        return by_id.not_equal(NIL_UUID) if value else by_id.equal(NIL_UUID)


def translator(types: Mapping[str, str]) -> Translator[Any]:
    """A fresh translator to Weaviate filters for a collection with these property types."""
    return Translator(WeaviateDialect(types))
