"""How many rows and parameters one statement may carry, per driver, and batching by them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy.engine import Dialect

# Bound parameters per statement stay below every driver's limit (asyncpg and SQLite: 32767).
MAX_PARAMETERS = 30_000
MAX_ROWS = 1_000
# MySQL's client inlines the values into the statement text, which must fit max_allowed_packet
# (16 MiB by default on MariaDB, 64 MiB on MySQL 8): stay well below.
STATEMENT_BYTES = 4 * 1024 * 1024

def value_bytes(values: Iterable[Any]) -> int:
    """About how many bytes ``values`` take inlined in MySQL statement text (escaping may
    double text and binary; every value costs quotes and a separator)."""
    size = 0
    for value in values:
        if isinstance(value, str | bytes | bytearray):
            size += 2 * len(value) + 4
        elif isinstance(value, dict | list):
            size += 2 * len(repr(value)) + 4
        else:
            size += 24
    return size


def batches(
    items: Sequence[Any], width: int, size_of: Callable[[Any], int] | None = None
) -> Iterator[Sequence[Any]]:
    """Slices of ``items`` within the row and parameter caps and, given ``size_of`` (MySQL),
    within ``STATEMENT_BYTES`` of statement text."""
    size = max(1, min(MAX_ROWS, MAX_PARAMETERS // max(width, 1)))
    if size_of is None:
        for start in range(0, len(items), size):
            yield items[start : start + size]
        return
    start, total = 0, 0
    for index, item in enumerate(items):
        cost = size_of(item)
        if index > start and (index - start >= size or total + cost > STATEMENT_BYTES):
            yield items[start:index]
            start, total = index, 0
        total += cost
    if start < len(items):
        yield items[start:]


def returns_ids(dialect: Dialect) -> bool:
    """Whether a multi-row INSERT can return generated ids in parameter order.

    MariaDB has INSERT ... RETURNING since 10.5; MySQL 8 has none, whatever SQLAlchemy's flags.
    """
    if dialect.name in ("mysql", "mariadb"):
        version = dialect.server_version_info or ()
        if not (getattr(dialect, "is_mariadb", False) and tuple(version) >= (10, 5)):
            return False
    return bool(dialect.insert_executemany_returning_sort_by_parameter_order)
