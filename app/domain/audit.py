"""``AuditEntry``: one row of ``archon_audit_log``, what one write of a Unit of Work did.

Kept out of the entities' metadata (``app.domain.metadata``): the audit log is the data layer's
own table, made by migration 0007, not one of Archon's, so adopting an Archon database, copying
one or checking it for drift never expects it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.domain.base import NAMING_CONVENTION
from app.domain.types import BigIntId, JSONType, TZDateTime

AUDIT_TABLE = "archon_audit_log"
audit_metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
# Unknown ids are SQL NULL, not JSON null (``{"entity_ids": {"is_null": True}}`` finds them).
_IDS = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


class _AuditBase(DeclarativeBase):
    metadata = audit_metadata


class AuditEntry(_AuditBase):
    """Who (``actor``) did what (``operation`` on ``entity``: which ids, which fields) and when.

    ``entity`` is the table written (``archon_tasks``); ``entity_id`` the row's primary key when
    the write touched one known row, ``entity_ids`` every known key of a multi-row write (as
    text), ``row_count`` how many rows it wrote. ``fields`` holds column names only, never a
    value. ``unit_id`` groups the rows of one commit (one transaction).
    """

    __tablename__ = AUDIT_TABLE
    __table_args__ = (
        sa.Index("ix_archon_audit_log_occurred_at", "occurred_at"),
        sa.Index("ix_archon_audit_log_entity", "entity", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(TZDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    unit_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    entity: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    operation: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    entity_id: Mapped[str | None] = mapped_column(sa.String(255))
    entity_ids: Mapped[Any] = mapped_column(_IDS)
    row_count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    fields: Mapped[Any] = mapped_column(JSONType, nullable=False)

    def __repr__(self) -> str:
        return (
            f"AuditEntry({self.actor!r} {self.operation} {self.entity} "
            f"{self.entity_id or self.row_count} {self.fields})"
        )
