"""The declarative base every Archon entity shares: its own registry and constraint names."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

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


class ArchonModel(SQLModel, registry=archon_registry):
    """Base of all table models; kept apart from SQLModel's global metadata."""
