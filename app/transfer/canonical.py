"""Canonical values and per-table checksums that two different backends can agree on.

A row's canonical form is JSON with sorted keys: datetimes in UTC ISO 8601 with microseconds,
UUIDs in their hyphenated lower-case form, enums by value, JSON documents with sorted keys (and
``-0.0`` as ``0.0``: PostgreSQL's jsonb has no negative zero), vectors as the hex of their
little-endian float32 bytes, and only the embedding columns that hold a vector (a target may
have more, empty, columns than its source). A table's checksum is SHA-256 over its rows'
digests in the order of their canonical primary keys, so it does not depend on how each
database collates its keys.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from app.transfer.read import Row, batches
from app.transfer.tables import TableSpec

_F32 = np.dtype("<f4")


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data that compares equal across backends."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return 0.0 if value == 0 else value
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=_F32).tobytes().hex()
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, Decimal):
        return str(value.normalize())
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def row_bytes(spec: TableSpec, row: Row) -> bytes:
    """The canonical encoding of one row of ``spec``'s table."""
    data = {name: canonical(row.get(name)) for name in spec.columns}
    for column in spec.vectors.values():
        if row.get(column) is not None:
            data[column] = canonical(row[column])
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def key_text(value: Any) -> str:
    """A primary key's canonical text, for ordering rows the same way on every backend."""
    found = canonical(value)
    return f"{found:020d}" if isinstance(found, int) else str(found)


async def table_checksum(engine: AsyncEngine, spec: TableSpec, batch_size: int) -> tuple[int, str]:
    """(rows, SHA-256 hex) of ``spec``'s table in ``engine``'s database, read in batches."""
    digests: list[tuple[str, bytes]] = []
    async for rows in batches(engine, spec, batch_size):
        for row in rows:
            digest = hashlib.sha256(row_bytes(spec, row)).digest()
            digests.append((key_text(row[spec.pk.name]), digest))
    digests.sort()
    total = hashlib.sha256()
    for _, digest in digests:
        total.update(digest)
    return len(digests), total.hexdigest()
