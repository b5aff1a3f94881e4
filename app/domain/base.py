"""The declarative base every Archon entity shares: its own registry and constraint names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

# Archon's PostgreSQL schema stamps updated_at on these tables with a BEFORE UPDATE trigger that
# overwrites any value given; an explicit updated_at is refused there on every backend alike.
UPDATED_AT_BY_TRIGGER = frozenset(
    {
        "archon_settings",
        "archon_projects",
        "archon_tasks",
        "archon_prompts",
        "archon_configured_repositories",
        "archon_agent_work_orders",
    }
)

metadata = MetaData(naming_convention=NAMING_CONVENTION)
archon_registry = registry(metadata=metadata)
_CONSTRUCTIONS: dict[type[Any], Construction | None] = {}
_STATE = "_sa_instance_state"


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

    if not TYPE_CHECKING:  # declared as pydantic declares its own, unseen by type checkers

        def __getattr__(self, name: str) -> Any:
            # SQLAlchemy asks every new instance whether it has its state yet (hasattr); the
            # same answer as pydantic's, without its lookups: ~1.5 us of a ~12 us construction.
            if name == _STATE:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            return super().__getattr__(name)


def _construction(model: type[Any]) -> Construction | None:
    try:
        return _CONSTRUCTIONS[model]
    except KeyError:
        found = Construction.for_model(model)
        if found is not None and not found.ready:
            return None  # mappers not configured yet: ask again next time
        _CONSTRUCTIONS[model] = found
        return found
