"""Configuration entities: settings (with encrypted credentials), prompts and applied migrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from app.domain.base import ArchonModel
from app.domain.types import (
    MYSQL_TABLE_OPTIONS,
    LongText,
    TZDateTime,
    keyed_text,
    new_uuid,
    utcnow,
)


def _uuid_pk() -> Any:
    return Field(default_factory=new_uuid, sa_column=sa.Column(sa.Uuid, primary_key=True))


class Setting(ArchonModel, table=True):
    """A configuration value or an encrypted credential (``archon_settings``)."""

    __tablename__ = "archon_settings"
    __table_args__ = (
        sa.UniqueConstraint("key"),
        sa.Index("idx_archon_settings_key", "key"),
        sa.Index("idx_archon_settings_category", "category"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = _uuid_pk()
    key: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    value: str | None = Field(default=None, sa_type=LongText)
    encrypted_value: str | None = Field(default=None, sa_type=LongText)
    is_encrypted: bool | None = Field(default=False)
    category: str | None = Field(default=None, sa_type=sa.String(100))
    description: str | None = Field(default=None, sa_type=LongText)
    created_at: datetime | None = Field(default_factory=utcnow, sa_type=TZDateTime)
    updated_at: datetime | None = Field(default_factory=utcnow, sa_type=TZDateTime)


class Prompt(ArchonModel, table=True):
    """A named system prompt for an agent (``archon_prompts``)."""

    __tablename__ = "archon_prompts"
    __table_args__ = (
        sa.UniqueConstraint("prompt_name"),
        sa.Index("idx_archon_prompts_name", "prompt_name"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = _uuid_pk()
    prompt_name: str = Field(sa_column=sa.Column(keyed_text(255), nullable=False))
    prompt: str = Field(sa_column=sa.Column(LongText, nullable=False))
    description: str | None = Field(default=None, sa_type=LongText)
    created_at: datetime | None = Field(default_factory=utcnow, sa_type=TZDateTime)
    updated_at: datetime | None = Field(default_factory=utcnow, sa_type=TZDateTime)


class MigrationRecord(ArchonModel, table=True):
    """An Archon SQL upgrade script recorded as applied (``archon_migrations``)."""

    __tablename__ = "archon_migrations"
    __table_args__ = (
        sa.UniqueConstraint("version", "migration_name"),
        sa.Index("idx_archon_migrations_version", "version"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = _uuid_pk()
    version: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    migration_name: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    applied_at: datetime | None = Field(default_factory=utcnow, sa_type=TZDateTime)
    checksum: str | None = Field(default=None, sa_type=sa.String(32))


# Archon's index runs newest first; declared here because it needs the mapped column.
_applied_at = sa.inspect(MigrationRecord).local_table.c.applied_at
sa.Index("idx_archon_migrations_applied_at", _applied_at.desc())
