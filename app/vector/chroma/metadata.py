"""How Chroma holds a record's metadata, and the ``where`` clauses that address it.

Values are flattened as ``app.vector.external.records`` describes, with the record id in
``_archon_id``.
What makes filters exact is stored in one of two layouts, chosen per Chroma collection by its
``archon_layout`` metadata:

- ``flags`` (collections made by this version): every present key ``k`` gets a scalar flag
  ``_archon_has.k: true`` (opaque ones also ``_archon_opaque.k: true``), and ``_archon_json`` is
  stored only when the flat values do not give the metadata back exactly (a ``None``, an empty
  object, an opaque value, a dotted key, ints widened among floats...). Chroma stores an array
  value at several times the cost of a few scalars, which made the key lists below the largest
  part of an insert's cost.
- ``lists`` (collections made before): the key lists ``_archon_keys`` / ``_archon_opaque`` and
  ``_archon_json`` on every record.

Chroma matches a missing key with ``$ne``, so "absent" is ``{flag: {"$ne": true}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.vector.external.filters import Translator
from app.vector.external.records import (
    ID_KEY,
    JSON_KEY,
    KEYS_KEY,
    OPAQUE_KEY,
    RESERVED_PREFIX,
    FlatMetadata,
    Scalar,
    from_json,
    to_json,
    unflatten,
)
from app.vector.port import RecordId

Where = dict[str, Any]
LAYOUT_KEY = "archon_layout"
FLAGS_LAYOUT = "flags"
PRESENT_PREFIX = "_archon_has."
OPAQUE_PREFIX = "_archon_opaque."


def uses_flags(collection_metadata: Mapping[str, Any] | None) -> bool:
    """Whether a Chroma collection (by its own metadata) holds the ``flags`` layout."""
    return (collection_metadata or {}).get(LAYOUT_KEY) == FLAGS_LAYOUT


class ChromaDialect:
    """Chroma ``where`` clauses for ``Translator``, in either layout."""

    def __init__(self, flags: bool = True) -> None:
        self.flags = flags

    def compare(self, key: str, op: str, value: Scalar) -> Where:
        return {key: {f"${op}": value}}

    def one_of(self, key: str, values: list[Scalar], negate: bool) -> Where:
        return {key: {"$nin" if negate else "$in": values}}

    def has_key(self, key: str, present: bool) -> Where:
        if self.flags:
            return {PRESENT_PREFIX + key: {"$eq" if present else "$ne": True}}
        return {KEYS_KEY: {"$contains" if present else "$not_contains": key}}

    def array_contains(self, key: str, value: Scalar) -> Where:
        # Chroma's arrays are typed: an integral number may sit in an int or a float array.
        if isinstance(value, int | float) and not isinstance(value, bool) and value == int(value):
            return self.any_of(
                [{key: {"$contains": int(value)}}, {key: {"$contains": float(value)}}]
            )
        return {key: {"$contains": value}}

    def all_of(self, items: list[Where]) -> Where:
        return self._combine("$and", items, True)

    def any_of(self, items: list[Where]) -> Where:
        return self._combine("$or", items, False)

    def always(self, value: bool) -> Where:
        # No key is empty, so no record flags (or lists) the empty key.
        return self.has_key("", present=not value)

    def any_opaque(self, keys: list[str]) -> Where:
        """Records holding one of ``keys`` as a value Chroma cannot filter on."""
        if self.flags:
            return self.any_of([{OPAQUE_PREFIX + k: {"$eq": True}} for k in keys])
        return self.any_of([{OPAQUE_KEY: {"$contains": k}} for k in keys])

    def _combine(self, op: str, items: list[Where], empty: bool) -> Where:
        if not items:
            return self.always(empty)
        return items[0] if len(items) == 1 else {op: items}


def translator(flags: bool = True) -> Translator[Where]:
    """A fresh filter translator to Chroma ``where`` for the layout."""
    return Translator(ChromaDialect(flags))


def stored_metadata(
    id_: RecordId, flat: FlatMetadata, metadata_json: str, *, flags: bool
) -> dict[str, Any]:
    """A record's metadata as Chroma holds it in the layout: flat values, id, flags or lists."""
    stored: dict[str, Any] = dict(flat.values)
    stored[ID_KEY] = id_
    if not flags:
        stored[JSON_KEY] = metadata_json
        if flat.present:
            stored[KEYS_KEY] = flat.present
        if flat.opaque:
            stored[OPAQUE_KEY] = flat.opaque
        return stored
    if not restores(flat, metadata_json):
        stored[JSON_KEY] = metadata_json
    for key in flat.present:
        stored[PRESENT_PREFIX + key] = True
    for key in flat.opaque:
        stored[OPAQUE_PREFIX + key] = True
    return stored


def restores(flat: FlatMetadata, metadata_json: str) -> bool:
    """Whether ``unflatten`` of the flat values gives exactly the metadata ``to_json`` encoded."""
    rebuilt = unflatten(flat.values)
    return rebuilt is not None and to_json(rebuilt) == metadata_json


def metadata_of(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A record's metadata from what Chroma holds (the JSON copy when there is one)."""
    text = stored.get(JSON_KEY)
    if text is not None:
        return from_json(text)
    values = {k: v for k, v in stored.items() if not k.startswith(RESERVED_PREFIX)}
    return unflatten(values) or {}
