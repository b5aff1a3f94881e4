"""Grouping by a column with the same groups on every backend (``count_by``).

PostgreSQL (deterministic collations) and SQLite (BINARY) group text by its exact characters.
MySQL/MariaDB do not: ``utf8mb4_bin`` is a PAD SPACE collation (``'a'`` and ``'a '`` fall in
one group) and TEXT is sorted on its first ``max_sort_length`` bytes only (1024 by default),
so two long values sharing that prefix could be counted as one. There a VARCHAR groups by the
value and its length (values equal but for trailing spaces differ in length; the index on the
column still serves the grouping), and TEXT by its SHA-256 (exact but for a collision), the
group's value read with ``MIN`` (every value of a group is the same text). Other types group
exactly everywhere: enums, UUIDs, numbers, booleans and timestamps are stored normalized.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from app.errors import InvalidInputError
from app.repositories.validation import ModelColumns


def group_column(columns: ModelColumns, field: Any) -> sa.Column[Any]:
    """The column ``count_by`` groups on; InvalidInputError (before any SQL) for a name that is
    not a column of the table, or a JSON column (JSON has no portable equality)."""
    if not isinstance(field, str):
        raise InvalidInputError(f"count_by takes one column name, got {type(field).__name__}")
    column = columns.column(field.split(".", 1)[0])
    if column.name in columns.json or "." in field:
        raise InvalidInputError(
            f"count_by cannot group by {field!r}: JSON values ({columns.table.name}."
            f"{column.name}) compare differently on each backend; group by a plain column"
        )
    return column


def grouped(
    column: sa.Column[Any], dialect: Dialect
) -> tuple[ColumnElement[Any], list[ColumnElement[Any]]]:
    """(the value to select, the expressions to group by) for ``column`` on ``dialect``."""
    type_ = column.type
    if dialect.name not in ("mysql", "mariadb") or not isinstance(type_, sa.String):
        return column, [column]
    if isinstance(type_, sa.Enum):
        return column, [column]
    stored = type_.dialect_impl(dialect)
    if isinstance(stored, sa.String) and not isinstance(stored, sa.Text) and stored.length:
        return column, [column, sa.func.length(column)]
    value = sa.type_coerce(sa.func.min(column), type_)
    return value, [sa.func.sha2(column, 256)]
