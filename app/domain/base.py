"""The declarative base every Archon entity shares: its own registry and constraint names."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.orm import registry
from sqlmodel import SQLModel
from sqlmodel._compat import finish_init

from app.domain.construction import Construction

# PostgreSQL's own default names, so constraints made by Alembic carry the same names as those in
# databases set up by Archon's SQL scripts (adopt compares by name).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
archon_registry = registry(metadata=metadata)
_CONSTRUCTIONS: dict[type[Any], Construction | None] = {}


class ArchonModel(SQLModel, registry=archon_registry):
    """Base of all table models; kept apart from SQLModel's global metadata."""

    def __init__(__pydantic_self__, **data: Any) -> None:
        # SQLModel's result, faster (see app.domain.construction); SQLModel's own __init__
        # wherever that cannot be vouched for. Not finishing is SQLModel's model_validate path.
        if not finish_init.get():
            return
        construction = _construction(type(__pydantic_self__))
        if construction is None or not construction.build(__pydantic_self__, data):
            super().__init__(**data)


def _construction(model: type[Any]) -> Construction | None:
    try:
        return _CONSTRUCTIONS[model]
    except KeyError:
        found = Construction.for_model(model)
        if found is not None and not found.ready:
            return None  # mappers not configured yet: ask again next time
        _CONSTRUCTIONS[model] = found
        return found
