"""Entity and value validation, run before any SQL is sent.

SQLModel table models skip pydantic validation on construction, so this is where bad input is
caught. It is on the ingest hot path: the checks of each model are worked out once, from its
columns, and then run as a flat list of small functions per entity.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from app.errors import InvalidInputError
from app.text import MAX_VALUE_BYTES, check_size, check_text

# A check takes (field name, value) and returns the value to store (normalized) or raises.
Check = Callable[[str, Any], Any]
_INT_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))
_JSON_INT = (-(2**63), 2**64 - 1)  # what every backend's JSON keeps exactly (MySQL: 64 bits)
_MISSING = object()


@dataclass(frozen=True)
class ModelColumns:
    """The columns of a model by column and by attribute name, worked out once per model."""

    model: type[Any]
    table: sa.Table
    by_name: Mapping[str, sa.Column[Any]]  # column names and attribute names
    attr_of: Mapping[str, str]  # column name -> attribute name
    json: frozenset[str]  # names (both kinds) of JSON columns
    pk: sa.Column[Any]

    def column(self, name: str) -> sa.Column[Any]:
        """The column called ``name`` (column or attribute name); InvalidInputError otherwise."""
        try:
            return self.by_name[name]
        except KeyError:
            raise InvalidInputError(
                f"{self.table.name} has no column {name!r}; "
                f"columns: {', '.join(sorted(self.attr_of))}"
            ) from None

    def enum_class(self, column: sa.Column[Any]) -> type[enum.Enum] | None:
        return getattr(column.type, "enum_class", None)


_CATALOGS: dict[type[Any], ModelColumns] = {}
_VALIDATORS: dict[type[Any], ModelValidator] = {}


def columns_of(model: type[Any]) -> ModelColumns:
    """The (cached) column catalog of a table model."""
    found = _CATALOGS.get(model)
    if found is None:
        found = _CATALOGS[model] = _catalog(model)
    return found


def _catalog(model: type[Any]) -> ModelColumns:
    mapper = sa.inspect(model)
    table = model.__table__
    by_name: dict[str, sa.Column[Any]] = {}
    attr_of: dict[str, str] = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        by_name[column.name] = by_name[prop.key] = column
        attr_of[column.name] = prop.key
    pks = list(table.primary_key.columns)
    if len(pks) != 1:
        raise TypeError(f"{table.name}: repositories need a single-column primary key")
    json_names = {n for n, c in by_name.items() if _base(c.type, sa.JSON) is not None}
    return ModelColumns(model, table, by_name, attr_of, frozenset(json_names), pks[0])


def _base(type_: sa.types.TypeEngine[Any], kind: type[Any]) -> Any:
    """``type_`` (or the type a TypeDecorator wraps) when it is a ``kind``; else None."""
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return type_ if isinstance(type_, kind) else None


def check_for(column: sa.Column[Any]) -> Check | None:
    """The value check for one column, chosen by its (portable) type."""
    type_ = column.type
    if (enum_type := _base(type_, sa.Enum)) is not None and enum_type.enum_class is not None:
        return _enum_check(enum_type.enum_class)
    if _base(type_, sa.Boolean) is not None:
        return _typed(bool, "true or false")
    for kind, bits in _INT_BITS:
        if _base(type_, kind) is not None:
            return _int_check(bits)
    if _base(type_, sa.Float) is not None or _base(type_, sa.Numeric) is not None:
        return _float_check
    if (string := _base(type_, sa.String)) is not None:
        return _string_check(_shortest_bound(type_, string))
    if _base(type_, sa.Uuid) is not None:
        return check_uuid
    if _base(type_, sa.DateTime) is not None:
        return _datetime_check
    if _base(type_, sa.JSON) is not None:
        return check_json
    return None


def _typed(kind: type[Any], what: str) -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, kind):
            raise InvalidInputError(f"{name} must be {what}, got {type(value).__name__}")
        return value

    return check


def _int_check(bits: int) -> Check:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(name: str, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInputError(f"{name} must be an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise InvalidInputError(f"{name} = {value} is outside the {bits}-bit integer range")
        return value

    return check


def _datetime_check(name: str, value: Any) -> Any:
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{name} must be a datetime, got {type(value).__name__}")
    try:  # stored as UTC: year 1 east of UTC, or 9999 west of it, has no UTC time
        (value.replace(tzinfo=UTC) if value.tzinfo is None else value).astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInputError(f"{name} = {value.isoformat()} has no UTC time to store") from None
    return value


def _float_check(name: str, value: Any) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value}")
    return value


def _shortest_bound(type_: Any, string: sa.String) -> int | None:
    """The shortest length any backend's variant of the column keeps (None: unbounded).

    keyed_text is TEXT on PostgreSQL and SQLite but VARCHAR(n) on MySQL/MariaDB: a longer value
    is refused on every backend rather than stored by some and refused by one.
    """
    variants = getattr(type_, "_variant_mapping", {}).values()
    lengths = [n for n in (string.length, *(getattr(v, "length", None) for v in variants)) if n]
    return min(lengths) if lengths else None


def _string_check(length: int | None) -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
        check_text(name, value)
        if len(value) > MAX_VALUE_BYTES // 4:  # cheap first; UTF-8 takes up to 4 bytes a char
            check_size(name, len(value.encode("utf-8")))
        if length is not None and len(value) > length:
            raise InvalidInputError(f"{name} is longer than {length} characters")
        return value

    return check


def _enum_check(enum_cls: type[enum.Enum]) -> Check:
    by_value = {str(member.value): member for member in enum_cls}
    allowed = ", ".join(by_value)

    def check(name: str, value: Any) -> Any:
        if isinstance(value, enum_cls):
            return value
        member = by_value.get(value) if isinstance(value, str) else None
        if member is None:
            raise InvalidInputError(f"{name} = {value!r} is not valid; allowed: {allowed}")
        return member

    return check


def check_uuid(name: str, value: Any) -> uuid.UUID:
    """A UUID, or its string form (normalized to ``uuid.UUID``)."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInputError(f"{name} must be a UUID, got {value!r}")


MAX_JSON_DEPTH = 31  # MariaDB refuses deeper documents (JSON_VALID, its CHECK constraint)


def check_json(name: str, value: Any) -> Any:
    """JSON that every backend stores and returns unchanged: no NUL, lone surrogate, NaN, inf or
    odd types, nested at most ``MAX_JSON_DEPTH`` deep (MariaDB's limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    size = 0
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, dict | list | tuple) and depth > MAX_JSON_DEPTH:
            raise InvalidInputError(
                f"{name} is nested more than {MAX_JSON_DEPTH} deep, which MariaDB cannot store"
            )
        size += 8
        if isinstance(item, str):
            check_text(f"a string in {name}", item)
            size += len(item)
            if size > MAX_VALUE_BYTES // 4:
                check_size(name, len(json.dumps(value, ensure_ascii=False).encode("utf-8")))
                size = -(2**62)  # measured once: small enough
        elif isinstance(item, int):
            if not _JSON_INT[0] <= item <= _JSON_INT[1]:
                raise InvalidInputError(f"{name} holds {item}, beyond 64-bit JSON integers")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInputError(f"{name} holds {item}; JSON has no NaN or infinity")
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise InvalidInputError(f"{name} has a key {key!r}: keys must be text")
                check_text(f"a key in {name}", key)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        else:
            raise InvalidInputError(
                f"{name} holds a {type(item).__name__}, which is not JSON-serializable"
            )
    return value


def _generated_key_check(check: Check | None) -> Check:
    def checked(name: str, value: Any) -> Any:
        if value == 0 and not isinstance(value, bool):
            # MySQL replaces an explicit 0 in an AUTO_INCREMENT column with the next id.
            raise InvalidInputError(f"{name} = 0 is not a valid id; leave it unset to generate one")
        return value if check is None else check(name, value)

    return checked


@dataclass(frozen=True)
class _Field:
    attr: str
    label: str  # how messages name it: "table.column"
    check: Check | None
    required: bool  # NOT NULL, no default, not generated


class ModelValidator:
    """The precomputed checks of one model."""

    def __init__(self, model: type[Any]) -> None:
        self.columns = columns_of(model)
        table = self.columns.table
        generated = table.autoincrement_column
        self.fields = [
            _Field(
                attr,
                f"{table.name}.{name}",
                _generated_key_check(check_for(column))
                if column is generated
                else check_for(column),
                not column.nullable
                and column is not generated
                and column.default is None
                and column.server_default is None,
            )
            for name, attr in self.columns.attr_of.items()
            for column in (self.columns.by_name[name],)
        ]
        by_attr = {f.attr: f for f in self.fields}
        self.by_name = by_attr | {n: by_attr[a] for n, a in self.columns.attr_of.items()}

    def entity(self, entity: Any) -> None:
        """Check (and normalize in place) every column value of ``entity``."""
        state = entity.__dict__
        for field in self.fields:
            value = state.get(field.attr, _MISSING)
            if value is None or value is _MISSING:
                if field.required:
                    raise InvalidInputError(f"{field.label} is required (NOT NULL, no default)")
                continue
            if field.check is not None:
                checked = field.check(field.label, value)
                if checked is not value:
                    setattr(entity, field.attr, checked)

    def values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Checked values keyed by attribute name (accepts column or attribute names)."""
        if not isinstance(values, Mapping):
            raise InvalidInputError(
                f"values are a mapping of field names to values, got {type(values).__name__}"
            )
        out: dict[str, Any] = {}
        for name, value in values.items():
            field = self.by_name.get(name)
            if field is None:
                self.columns.column(name)  # raises, listing the columns
                raise AssertionError("unreachable")  # pragma: no cover
            if value is None:
                if field.required or self.columns.by_name[name] is self.columns.pk:
                    raise InvalidInputError(f"{field.label} cannot be set to NULL")
            elif field.check is not None:
                value = field.check(field.label, value)
            out[field.attr] = value
        return out

    def many(self, entities: Iterable[Any]) -> list[Any]:
        """Check every entity; the list of them (all are checked before any is written)."""
        items = entity_list(entities, self.columns.model)
        model = self.columns.model
        for item in items:
            if not isinstance(item, model):
                raise InvalidInputError(f"expected {model.__name__}, got {type(item).__name__}")
            self.entity(item)
        return items


def entity_list(entities: Any, model: type[Any]) -> list[Any]:
    """``entities`` as a list; InvalidInputError when it is one entity or no iterable at all
    (a model is iterable, as its (field, value) pairs, so it is named before iterating)."""
    if isinstance(entities, model):
        raise InvalidInputError(
            f"entities takes a list of {model.__name__}, got one {model.__name__}: "
            "pass [entity], or use add()"
        )
    if isinstance(entities, (str, bytes, Mapping)) or not isinstance(entities, Iterable):
        raise InvalidInputError(
            f"entities takes a list of {model.__name__}, got {type(entities).__name__}"
        )
    return list(entities)


def validator_for(model: type[Any]) -> ModelValidator:
    """The (cached) validator of a table model."""
    found = _VALIDATORS.get(model)
    if found is None:
        found = _VALIDATORS[model] = ModelValidator(model)
    return found


def json_text(name: str, value: Any) -> str:
    """``value`` checked and serialized as JSON text (for bound JSON parameters)."""
    return json.dumps(check_json(name, value), separators=(",", ":"), ensure_ascii=False)
