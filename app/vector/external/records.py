"""What the external stores (Chroma, Weaviate) share: metadata as a flat-scalar store holds it.

Stores that keep vectors outside SQL hold metadata as flat scalars, so a record's metadata is
stored three ways at once:

- flattened: ``{"metadata": {"kind": "doc"}}`` becomes ``"metadata.kind": "doc"``; scalars and
  homogeneous lists of scalars are stored natively, for the store's own filtering;
- ``_archon_keys``: every key (and every parent key) that is present, not null. Stores match a
  missing key with ``!=`` / ``not in``; SQL's three-valued logic does not, so ``ne`` and ``not_in``
  add "key present", and ``is_null`` becomes "key absent";
- ``_archon_json``: the metadata as JSON, returned with hits and used for exact evaluation.

Values a store cannot hold (empty or mixed lists, lists of objects) are "opaque": present, listed in
``_archon_opaque``, and only in the JSON. Filters are translated in ``app.vector.external.filters``.
A store may hold the key lists and the JSON otherwise, as long as it answers the same: Chroma's
current layout (``app.vector.chroma.metadata``) has a flag per present key and rebuilds the JSON
with ``unflatten`` when that is exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import numpy as np

from app.errors import InvalidInputError
from app.vector.port import RecordId, VectorRecord, float32_matrix, vector_length

ARCHON_DIMENSIONS = (384, 768, 1024, 1536, 3072)
RESERVED_PREFIX = "_archon_"
ID_KEY = "_archon_id"
KEYS_KEY = "_archon_keys"
OPAQUE_KEY = "_archon_opaque"
JSON_KEY = "_archon_json"
Scalar = str | int | float | bool


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
        value = plain_value(raw_value)
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


def unflatten(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Dotted keys nested again (``flatten``'s values undone); ``None`` when two keys clash."""
    nested: dict[str, Any] = {}
    for key in sorted(values):  # a parent sorts before its children
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return None
        if leaf in node:
            return None
        node[leaf] = values[key]
    return nested


def plain_value(value: Any) -> Any:
    """Enums, UUIDs and dates as the plain values JSON and the stores hold."""
    if isinstance(value, Enum):
        return plain_value(value.value)
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
    items = [plain_value(v) for v in values]
    if all(isinstance(v, bool) for v in items):
        return items
    if all(isinstance(v, str) for v in items):
        return items
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return items
    if all(is_number(v) for v in items) and all(math.isfinite(v) for v in items):
        return [float(v) for v in items]
    return None


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_json(metadata: Mapping[str, Any]) -> str:
    """The metadata as JSON (enums, UUIDs and dates as their plain values)."""
    try:
        return json.dumps(metadata, default=_json_default, allow_nan=False, sort_keys=True)
    except ValueError as exc:
        raise InvalidInputError(f"metadata is not valid JSON: {exc}") from exc


def _json_default(value: Any) -> Any:
    plain = plain_value(value)
    if plain is value:
        raise TypeError(f"metadata value of type {type(value).__name__} is not JSON")
    return plain


def from_json(text: Any) -> dict[str, Any]:
    """The metadata stored by ``to_json`` (``{}`` when missing)."""
    return json.loads(text) if isinstance(text, str) and text else {}


@dataclass(frozen=True, slots=True)
class PreparedGroup:
    """Validated records of one dimension, each converted once: what a store and the outbox write.

    ``matrix`` holds the vectors as float32 rows; ``flat`` and ``metadata_json`` are ``flatten``
    and ``to_json`` of each record's metadata.
    """

    dimension: int
    ids: list[RecordId]
    matrix: np.ndarray
    flat: list[FlatMetadata]
    metadata_json: list[str]
    documents: list[str | None]

    def records(self) -> list[VectorRecord]:
        """The records again (vectors as float32 rows), for a store that takes only records."""
        return [
            VectorRecord(id_, self.matrix[i], from_json(self.metadata_json[i]), self.documents[i])
            for i, id_ in enumerate(self.ids)
        ]

    def take(self, positions: Sequence[int]) -> PreparedGroup:
        """The records at ``positions``, in that order."""
        if len(positions) == len(self.ids) and list(positions) == list(range(len(self.ids))):
            return self
        return PreparedGroup(
            self.dimension,
            [self.ids[i] for i in positions],
            self.matrix[list(positions)],
            [self.flat[i] for i in positions],
            [self.metadata_json[i] for i in positions],
            [self.documents[i] for i in positions],
        )


def merged(groups: Sequence[PreparedGroup]) -> list[PreparedGroup]:
    """Groups of the same dimension as one (a store takes one call per dimension)."""
    by_length: dict[int, list[PreparedGroup]] = {}
    for group in groups:
        by_length.setdefault(group.dimension, []).append(group)
    return [parts[0] if len(parts) == 1 else _concat(parts) for parts in by_length.values()]


def _concat(parts: list[PreparedGroup]) -> PreparedGroup:
    return PreparedGroup(
        parts[0].dimension,
        [id_ for part in parts for id_ in part.ids],
        np.concatenate([part.matrix for part in parts]),
        [flat for part in parts for flat in part.flat],
        [text for part in parts for text in part.metadata_json],
        [document for part in parts for document in part.documents],
    )


def by_dimension(records: Sequence[VectorRecord]) -> dict[int, list[VectorRecord]]:
    """Records grouped by vector length; of repeated ids the last one wins."""
    latest = {str(record.id): record for record in records}
    groups: dict[int, list[VectorRecord]] = {}
    for record in latest.values():
        groups.setdefault(vector_length(record.vector), []).append(record)
    return groups


def prepare_group(
    dimension: int, records: Sequence[VectorRecord], *, cosine: bool
) -> PreparedGroup:
    """Check and convert records of one length at once (vectors as one float32 matrix)."""
    for record in records:
        if str(record.id) == "":
            raise InvalidInputError("a vector record needs a non-empty id")
    return PreparedGroup(
        dimension,
        [record.id for record in records],
        checked_matrix([record.vector for record in records], dimension, cosine=cosine),
        [flatten(record.metadata) for record in records],
        [to_json(record.metadata) for record in records],
        [record.document for record in records],
    )


def checked_matrix(vectors: Sequence[Any], dimension: int, *, cosine: bool) -> np.ndarray:
    """Vectors of one length as a float32 matrix, refused if empty, non-finite or (cosine) zero."""
    if dimension == 0:
        raise InvalidInputError("empty vector")
    matrix = float32_matrix(vectors, dimension)
    if cosine and not matrix.any(axis=1).all():
        raise InvalidInputError("an all-zero vector has no direction: cosine is undefined")
    return matrix
