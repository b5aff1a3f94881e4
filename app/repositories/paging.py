"""Ordering and keyset pagination: ``order_by`` parsing, opaque cursors and the "after" clause.

Keyset paging remembers the last row's order values (plus its primary key) instead of an offset,
so rows inserted or deleted elsewhere while a caller pages through a table never make it repeat
or skip an existing row. NULLs sort last in both directions on every backend.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from app.errors import InvalidInputError
from app.repositories.validation import ModelColumns

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results; ``next_cursor`` is ``None`` on the last page."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class OrderKey:
    """One ORDER BY term: a column and its direction."""

    column: sa.Column[Any]
    attr: str
    descending: bool

    @property
    def nullable(self) -> bool:
        return bool(self.column.nullable) and not self.column.primary_key

    @property
    def sorted_by(self) -> ColumnElement[Any]:
        """What the rows are sorted on: the column, or an enum's place in its declaration.

        PostgreSQL's native enums sort in declaration order, the VARCHAR enums elsewhere
        alphabetically; ranking the members explicitly gives one order on every backend.
        """
        members = _enum_members(self.column)
        if not members:
            return self.column
        return sa.case({m: i for i, m in enumerate(members)}, value=self.column)

    def sort_value(self, value: Any) -> Any:
        """``value`` as ``sorted_by`` sees it (for the keyset comparison)."""
        members = _enum_members(self.column)
        if not members:
            return value
        wanted = value.value if isinstance(value, enum.Enum) else value
        labels = [str(m.value) for m in members]
        if str(wanted) not in labels:
            raise InvalidInputError(f"{self.attr} has no value {wanted!r}; use one of {labels}")
        return labels.index(str(wanted))


def _enum_members(column: sa.Column[Any]) -> list[enum.Enum]:
    enum_class = getattr(column.type, "enum_class", None)
    return list(enum_class) if enum_class is not None else []


def order_keys(columns: ModelColumns, order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse ``["name", "-created_at"]``; the primary key is appended as the last tie-breaker."""
    if order_by is not None and not isinstance(order_by, list | tuple):
        raise InvalidInputError(
            f"order_by takes a list of column names, e.g. ['-created_at'], got "
            f"{type(order_by).__name__}"
        )
    keys: list[OrderKey] = []
    for item in order_by or ():
        if not isinstance(item, str) or not item.lstrip("-"):
            raise InvalidInputError(f"order_by items are column names, got {item!r}")
        descending = item.startswith("-")
        column = columns.column(item[1:] if descending else item)
        if column.name in columns.json:
            raise InvalidInputError(f"cannot order by the JSON column {column.name!r}")
        if any(key.column is column for key in keys):
            raise InvalidInputError(f"order_by names {column.name!r} twice")
        keys.append(OrderKey(column, columns.attr_of[column.name], descending))
    if not any(key.column is columns.pk for key in keys):
        keys.append(OrderKey(columns.pk, columns.attr_of[columns.pk.name], False))
    return keys


def order_clauses(keys: Sequence[OrderKey]) -> list[ColumnElement[Any]]:
    """ORDER BY terms: NULLs last on every dialect (MySQL has no NULLS LAST)."""
    clauses: list[ColumnElement[Any]] = []
    for key in keys:
        if key.nullable:
            clauses.append(key.column.is_(None))
        clauses.append(key.sorted_by.desc() if key.descending else key.sorted_by.asc())
    return clauses


def after_clause(keys: Sequence[OrderKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after the row with ``values`` in this order (a row-value comparison
    expanded to OR/AND, so it works with mixed directions and on every dialect)."""
    alternatives = []
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        later = _later(key, value)
        if later is not None:
            equal_before = [_same(k, v) for k, v in zip(keys[:i], values[:i], strict=True)]
            alternatives.append(sa.and_(*equal_before, later))
    return sa.or_(*alternatives) if alternatives else sa.false()


def _later(key: OrderKey, value: Any) -> ColumnElement[bool] | None:
    if value is None:
        return None  # NULLs sort last: nothing comes after a NULL within its column
    rank, sort_value = key.sorted_by, key.sort_value(value)
    later = rank < sort_value if key.descending else rank > sort_value
    return sa.or_(later, key.column.is_(None)) if key.nullable else later


def _same(key: OrderKey, value: Any) -> ColumnElement[bool]:
    return key.column.is_(None) if value is None else key.column == value


# -- cursors ---------------------------------------------------------------------------------


def _fingerprint(keys: Sequence[OrderKey]) -> str:
    spec = ",".join(("-" if k.descending else "") + k.column.name for k in keys)
    return hashlib.sha256(f"{keys[0].column.table.name}:{spec}".encode()).hexdigest()[:12]


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "dt" in value:
            return datetime.fromisoformat(value["dt"])
        if "uuid" in value:
            return uuid.UUID(value["uuid"])
    return value


def encode_cursor(keys: Sequence[OrderKey], row: Any) -> str:
    """An opaque, url-safe cursor for the position just after ``row``."""
    values = [_encode_value(row.__dict__.get(key.attr)) for key in keys]
    raw = json.dumps([_fingerprint(keys), values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(keys: Sequence[OrderKey], cursor: str) -> list[Any]:
    """The order values a cursor holds; InvalidInputError if it is not one of this ordering's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fingerprint, values = json.loads(raw)
        decoded = [_decode_value(v) for v in values]
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidInputError("invalid page cursor; pass next_cursor back unchanged") from exc
    if fingerprint != _fingerprint(keys) or len(decoded) != len(keys):
        raise InvalidInputError(
            "this cursor belongs to another table or ordering; start again without `after`"
        )
    return decoded
