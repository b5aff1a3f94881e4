"""The vector port's arguments, checked alike by every adapter before anything is read or written.

Each adapter (exact, pgvector, Chroma, Weaviate, the outbox view of an external store) calls
these first, so a wrong kind of argument is ``InvalidInputError`` naming it on every backend,
never a ``TypeError`` or ``AttributeError`` from deep inside one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.errors import InvalidInputError
from app.vector.port import RecordId, VectorRecord

MAX_K = 1000


def check_records(records: Any) -> Sequence[VectorRecord]:
    """``records``: a sequence of ``VectorRecord`` whose metadata is a mapping."""
    if isinstance(records, VectorRecord):
        raise InvalidInputError("records is a sequence of VectorRecord: pass [record], not record")
    if not isinstance(records, Sequence) or isinstance(records, str | bytes):
        raise InvalidInputError(
            f"records must be a sequence of VectorRecord, got {type(records).__name__}"
        )
    for n, record in enumerate(records):
        if not isinstance(record, VectorRecord):
            raise InvalidInputError(
                f"records[{n}] must be a VectorRecord, got {type(record).__name__}"
            )
        if not isinstance(record.metadata, Mapping):
            raise InvalidInputError(
                f"records[{n}].metadata must be a mapping, got {type(record.metadata).__name__}"
            )
        if record.document is not None and not isinstance(record.document, str):
            raise InvalidInputError(
                f"records[{n}].document must be a string or None, "
                f"got {type(record.document).__name__}"
            )
        check_id(record.id, f"records[{n}].id")
    return records


def check_ids(ids: Any) -> Sequence[RecordId]:
    """``ids``: a sequence of record ids (row ids: integers or their text)."""
    if not isinstance(ids, Sequence) or isinstance(ids, str | bytes):
        raise InvalidInputError(f"ids must be a sequence of record ids, got {type(ids).__name__}")
    for n, record_id in enumerate(ids):
        check_id(record_id, f"ids[{n}]")
    return ids


def check_id(record_id: Any, name: str) -> None:
    if isinstance(record_id, bool) or not isinstance(record_id, int | str):
        raise InvalidInputError(
            f"{name} must be a record id (an integer or a string), got {record_id!r}"
        )


def check_k(k: Any) -> int:
    """``k``: how many hits, an integer in 1..``MAX_K``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be an integer in 1..{MAX_K}, got {k!r}")
    return k
