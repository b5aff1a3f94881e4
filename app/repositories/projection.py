"""Projections: some columns of an entity's rows, for listings that must not load the large ones.

``list(..., fields=[...])`` and ``get(..., fields=[...])`` select exactly the columns named, so a
listing of crawled pages never reads ``content``, of page metadata never ``full_content``, of
projects never ``docs`` / ``features`` / ``data`` (embedding columns are no entity fields: they are
only ever read by the vector index). The rows come back as ``Projection`` instances: frozen
pydantic models with one field per selected column, typed as the entity types it, holding the
values the full entity would hold (enum members, UUIDs, aware datetimes, parsed JSON). Reading a
field that was not selected raises ``AttributeError`` naming it: a projection never passes off
a column it did not read as ``None``. Projections are plain values, not session entities: they
are never tracked, and changing a row goes through ``update`` / ``update_where``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, create_model

from app.errors import InvalidInputError
from app.repositories.validation import ModelColumns


class Projection(BaseModel):
    """Some fields of one entity's row (see the module docstring); compare with ``==``, dump
    with ``model_dump()``. ``entity`` is the entity class, ``fields`` the attribute names held."""

    model_config = ConfigDict(frozen=True, protected_namespaces=(), arbitrary_types_allowed=True)

    entity: ClassVar[type[Any]]
    fields: ClassVar[tuple[str, ...]]

    if TYPE_CHECKING:  # fields are made per selection: typed at run time, Any to type checkers

        def __getattr__(self, name: str) -> Any: ...

    else:

        def __getattr__(self, name: str) -> Any:
            if name in _entity_fields(type(self).entity):
                raise AttributeError(
                    f"{name!r} was not selected: this {type(self).__name__} holds only "
                    f"{', '.join(type(self).fields)}; add it to fields=[...]"
                )
            return super().__getattr__(name)


@lru_cache(maxsize=64)
def _entity_fields(entity: type[Any]) -> frozenset[str]:
    return frozenset(entity.model_fields)


def selected(columns: ModelColumns, fields: Any) -> tuple[str, ...]:
    """The attribute names ``fields`` asks for (column or attribute names), in the order given;
    InvalidInputError, before any SQL, for an empty list, a bare string, an unknown or a
    repeated name."""
    table = columns.table.name
    if isinstance(fields, str | bytes) or not isinstance(fields, Sequence):
        raise InvalidInputError(
            f"fields takes a list of column names of {table}, got {type(fields).__name__}"
        )
    if not fields:
        raise InvalidInputError(
            f"fields=[] selects nothing from {table}: name the columns, or leave fields out "
            "for whole entities"
        )
    attrs: list[str] = []
    for name in fields:
        if not isinstance(name, str):
            raise InvalidInputError(f"fields of {table} are column names, got {name!r}")
        if name.startswith("embedding_") and name not in columns.by_name:
            raise InvalidInputError(
                f"{table}.{name} is no entity field: vectors are read through the vector index"
            )
        attr = columns.attr_of[columns.column(name).name]
        if attr in attrs:
            raise InvalidInputError(f"fields names {name!r} twice ({table}.{attr})")
        attrs.append(attr)
    return tuple(attrs)


@lru_cache(maxsize=256)
def projection_class(entity: type[Any], attrs: tuple[str, ...]) -> type[Projection]:
    """The (cached) ``Projection`` model of ``entity`` holding ``attrs``, typed as the entity."""
    found = entity.model_fields
    definitions: dict[str, Any] = {attr: (found[attr].annotation, ...) for attr in attrs}
    model = create_model(
        f"{entity.__name__}Fields", __base__=Projection, __module__=__name__, **definitions
    )
    model.entity = entity
    model.fields = attrs
    built: type[Projection] = model
    return built


def build(cls: type[Projection], rows: Sequence[Sequence[Any]]) -> list[Projection]:
    """Projections of rows whose values the column types already converted (no re-validation:
    they are the values an entity would hold)."""
    names = cls.fields
    return [cls.model_construct(**dict(zip(names, row, strict=True))) for row in rows]


def of_entity(cls: type[Projection], entity: Any) -> Projection | None:
    """The projection of an entity this Unit of Work holds (what it would read, without SQL);
    ``None`` when the entity lacks one of the fields (then the row is read)."""
    state = entity.__dict__
    if not all(name in state for name in cls.fields):
        return None
    return cls.model_construct(**{name: state[name] for name in cls.fields})


__all__ = ["Projection", "build", "of_entity", "projection_class", "selected"]
