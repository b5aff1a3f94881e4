"""Compile ``app.filters`` trees to SQLAlchemy expressions that give ``filter_eval``'s answer.

Every backend must return exactly the rows ``app.filter_eval.evaluate`` matches, under SQL's
three-valued logic. Plain columns need little help (values are type-checked, text compares
by code point). JSON values need more: a JSON value may be a string in one row and a number in
the next, so each comparison is guarded by the value's JSON type (``app.repositories.sql_json``)
and yields NULL exactly where the reference yields "unknown".
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from app.errors import InvalidInputError
from app.filters import And, Comparison, Node, Not, Or, parse_filters
from app.repositories.sql_dialect import JsonPath, like_text, text_compare, text_in
from app.repositories.validation import (
    ModelColumns,
    check_for,
    check_uuid,
    columns_of,
    json_text,
)

Expr = ColumnElement[bool]
_OPERATOR = {
    "eq": "__eq__",
    "ne": "__ne__",
    "gt": "__gt__",
    "gte": "__ge__",
    "lt": "__lt__",
    "lte": "__le__",
}


def compile_filters(filters: Mapping[str, Any] | None, model: type[Any]) -> Expr | None:
    """The WHERE clause for ``filters`` on ``model``'s table (``None`` when there is none).

    Field names are the table's column names (``metadata``) or attribute names (``metadata_``);
    dotted paths reach into JSON columns. Raises ``InvalidInputError`` naming the bad field,
    operator or value before any SQL exists.
    """
    columns = columns_of(model)
    node = parse_filters(filters, fields=columns.by_name, json_fields=columns.json)
    return None if node is None else compile_node(node, columns)


def compile_node(node: Node, columns: ModelColumns) -> Expr:
    """One parsed filter tree as a SQL expression over ``columns.table``."""
    if isinstance(node, Comparison):
        column = columns.column(node.field)
        if node.field in columns.json:
            return _json_comparison(JsonPath(column, node.path), node)
        return _column_comparison(column, node)
    if isinstance(node, Not):
        return sa.not_(compile_node(node.item, columns))
    parts = [compile_node(item, columns) for item in node.items]
    if isinstance(node, And):
        return sa.and_(*parts) if parts else sa.true()
    assert isinstance(node, Or)
    return sa.or_(*parts) if parts else sa.false()


# -- plain columns ---------------------------------------------------------------------------


def _column_comparison(column: sa.Column[Any], node: Comparison) -> Expr:
    op, value, name = node.op, node.value, node.key
    if op == "is_null":
        return column.is_(None) if value else column.is_not(None)
    if op in ("eq", "ne") and value is None:
        return column.is_(None) if op == "eq" else column.is_not(None)
    if op == "contains":
        raise InvalidInputError(f"'contains' needs a JSON field; {name!r} is not one")
    coerce = _coercer(column, name)
    is_text = isinstance(column.type, sa.String)
    is_enum = isinstance(column.type, sa.Enum)
    if op in ("like", "ilike"):
        if not is_text:
            raise InvalidInputError(f"{op!r} needs a text field; {name!r} is not one")
        return _like(like_text(column), op, value, name)  # a pattern, not a column value
    if op in ("in", "not_in"):
        values = [coerce(item) for item in value]
        if not values:
            # Unknown on NULL, as in the reference: `x <> x` is NULL there and false elsewhere.
            return column != column if op == "in" else column == column
        exact = is_text and not is_enum  # enum values are validated: no PAD SPACE ties
        found = text_in(column, [_text(v) for v in values]) if exact else column.in_(values)
        return found if op == "in" else sa.not_(found)
    value = coerce(value)
    if is_text and not (is_enum and op in ("eq", "ne")):
        return text_compare(column, op, _text(value))
    bind = sa.bindparam(None, value, type_=column.type)  # also for `> true`, which SA refuses
    return getattr(column, _OPERATOR[op])(bind)


def _text(value: Any) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def _like(left: Any, op: str, pattern: str, name: str) -> Expr:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    if trailing % 2:
        raise InvalidInputError(f"{op!r} pattern on {name!r} ends with a lone escape '\\'")
    if op == "like":
        return left.like(pattern, escape="\\")
    return left.ilike(pattern, escape="\\")


def _coercer(column: sa.Column[Any], name: str) -> Callable[[Any], Any]:
    """Check a filter value against the column's type; enums and UUIDs accept their strings."""
    check = check_for(column)
    if isinstance(column.type, sa.Uuid):
        check = check_uuid
    label = f"filter value for {name!r}"

    def coerce(value: Any) -> Any:
        if isinstance(value, enum.Enum) and getattr(column.type, "enum_class", None) is None:
            value = value.value
        return value if check is None else check(label, value)

    return coerce


# -- JSON values -----------------------------------------------------------------------------


def _json_scalar(value: Any, name: str) -> Any:
    """The JSON scalar a filter value stands for."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        raise InvalidInputError(
            f"filter on {name!r} compares a JSON value with a datetime; compare with its "
            "ISO string or a number instead"
        )
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise InvalidInputError(f"filter value {value} for {name!r} is beyond 64-bit integers")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _json_comparison(path: JsonPath, node: Comparison) -> Expr:
    op, value, name = node.op, node.value, node.key
    if op == "is_null" or (op in ("eq", "ne") and value is None):
        wants_null = value if op == "is_null" else op == "eq"
        return path.absent() if wants_null else sa.not_(path.absent())
    if op == "contains":
        return _json_contains(path, json_text(f"filter value for {name!r}", value), value)
    if op in ("in", "not_in"):
        return _json_membership(path, [_json_scalar(v, name) for v in value], op == "in")
    value = _json_scalar(value, name)
    kind = _kind(value)
    if op in ("like", "ilike"):
        return path.guard({"string": _like(like_text(path.typed("string")), op, value, name)})
    if op in ("eq", "ne"):
        branch = {kind: _json_compare(path, kind, op, value)}
        return path.guard(branch, sa.false() if op == "eq" else sa.true())
    if kind == "string":
        return path.guard({"string": _json_compare(path, kind, op, value)})
    # Python orders booleans as the numbers 0 and 1, so the reference compares them with numbers.
    number = int(value) if isinstance(value, bool) else value
    return path.guard(
        {
            "number": _json_compare(path, "number", op, number),
            "boolean": _json_compare(path, "boolean_number", op, number),
        }
    )


def _json_compare(path: JsonPath, kind: str, op: str, value: Any) -> Expr:
    if kind == "string":
        return text_compare(path.typed("string"), op, value)
    if kind == "number":
        return path.compare_number(op, value)
    if kind == "boolean_number":
        type_ = sa.BigInteger() if isinstance(value, int) else sa.Float()
        value = sa.bindparam(None, value, type_=type_)
    return getattr(path.typed(kind), _OPERATOR[op])(value)


def _json_membership(path: JsonPath, values: list[Any], positive: bool) -> Expr:
    branches: dict[str, Expr] = {}
    for kind in ("string", "number", "boolean"):
        wanted = [v for v in values if _kind(v) == kind]
        if wanted:
            found = sa.or_(*(_json_compare(path, kind, "eq", v) for v in wanted))
            branches[kind] = found if positive else sa.not_(found)
    return path.guard(branches, sa.false() if positive else sa.true())


def _json_contains(path: JsonPath, document: str, value: Any) -> Expr:
    # PostgreSQL's @> wants an object for an object, an array for an array, and takes a bare
    # scalar in an array only at the top; MySQL's JSON_CONTAINS is laxer, so say it here.
    if isinstance(value, dict):
        kinds = "object"
    elif isinstance(value, list):
        kinds = "array"
    else:
        kinds = f"array,{_kind(value)}"
    return path.guard({kinds: path.contains(document)}, sa.false())
