"""Knowledge-base entities: sources, document chunks, code examples and full pages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from app.domain.base import ArchonModel
from app.domain.types import (
    MYSQL_TABLE_OPTIONS,
    BigIntId,
    JSONType,
    LongText,
    TZDateTime,
    keyed_text,
    mysql_prefix,
    new_dict,
    new_uuid,
    utcnow,
)

_SOURCE_FK = "archon_sources.source_id"


def _json(default: Any = new_dict, nullable: bool = True) -> Any:
    return Field(
        default_factory=default, sa_column=sa.Column("metadata", JSONType, nullable=nullable)
    )


# Archon's chunk url is an unbounded VARCHAR; MySQL needs a length to put it in a unique key.
_CHUNK_URL = keyed_text(700).with_variant(sa.String(), "postgresql")


def _source_id() -> Any:
    fk = sa.ForeignKey(_SOURCE_FK, ondelete="CASCADE")
    return Field(sa_column=sa.Column(keyed_text(255), fk, nullable=False))


def _created_at() -> Any:
    return Field(default_factory=utcnow, sa_column=sa.Column(TZDateTime, nullable=False))


class Source(ArchonModel, table=True):
    """One crawled site or uploaded document (``archon_sources``)."""

    __tablename__ = "archon_sources"
    __table_args__ = (
        sa.Index("idx_archon_sources_title", "title", **mysql_prefix("title")),
        sa.Index("idx_archon_sources_url", "source_url", **mysql_prefix("source_url")),
        sa.Index(
            "idx_archon_sources_display_name",
            "source_display_name",
            **mysql_prefix("source_display_name"),
        ),
        MYSQL_TABLE_OPTIONS,
    )

    source_id: str = Field(sa_column=sa.Column(keyed_text(255), primary_key=True))
    source_url: str | None = Field(default=None, sa_type=LongText)
    source_display_name: str | None = Field(default=None, sa_type=LongText)
    summary: str | None = Field(default=None, sa_type=LongText)
    total_word_count: int | None = Field(default=0)
    title: str | None = Field(default=None, sa_type=LongText)
    metadata_: dict[str, Any] | None = _json()
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


class CrawledPage(ArchonModel, table=True):
    """A chunk of a crawled page (``archon_crawled_pages``); its embedding is the index's."""

    __tablename__ = "archon_crawled_pages"
    __table_args__ = (
        sa.UniqueConstraint("url", "chunk_number"),
        sa.Index("idx_archon_crawled_pages_source_id", "source_id"),
        sa.Index(
            "idx_archon_crawled_pages_embedding_model",
            "embedding_model",
            **mysql_prefix("embedding_model"),
        ),
        sa.Index("idx_archon_crawled_pages_embedding_dimension", "embedding_dimension"),
        sa.Index(
            "idx_archon_crawled_pages_llm_chat_model",
            "llm_chat_model",
            **mysql_prefix("llm_chat_model"),
        ),
        sa.Index("idx_archon_crawled_pages_page_id", "page_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntId, primary_key=True))
    url: str = Field(
        sa_column=sa.Column(keyed_text(700).with_variant(sa.String(), "postgresql"), nullable=False)
    )
    chunk_number: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    content: str = Field(sa_column=sa.Column(LongText, nullable=False))
    metadata_: dict[str, Any] = _json(nullable=False)
    source_id: str = Field(
        sa_column=sa.Column(
            keyed_text(255), sa.ForeignKey(_SOURCE_FK, ondelete="CASCADE"), nullable=False
        )
    )
    llm_chat_model: str | None = Field(default=None, sa_type=LongText)
    embedding_model: str | None = Field(default=None, sa_type=LongText)
    embedding_dimension: int | None = Field(default=None)
    page_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("archon_page_metadata.id", ondelete="SET NULL"), nullable=True
        ),
    )
    created_at: datetime = _created_at()


class CodeExample(ArchonModel, table=True):
    """An extracted code block with its summary (``archon_code_examples``)."""

    __tablename__ = "archon_code_examples"
    __table_args__ = (
        sa.UniqueConstraint("url", "chunk_number"),
        sa.Index("idx_archon_code_examples_source_id", "source_id"),
        sa.Index(
            "idx_archon_code_examples_embedding_model",
            "embedding_model",
            **mysql_prefix("embedding_model"),
        ),
        sa.Index("idx_archon_code_examples_embedding_dimension", "embedding_dimension"),
        sa.Index(
            "idx_archon_code_examples_llm_chat_model",
            "llm_chat_model",
            **mysql_prefix("llm_chat_model"),
        ),
        MYSQL_TABLE_OPTIONS,
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntId, primary_key=True))
    url: str = Field(
        sa_column=sa.Column(keyed_text(700).with_variant(sa.String(), "postgresql"), nullable=False)
    )
    chunk_number: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    content: str = Field(sa_column=sa.Column(LongText, nullable=False))
    summary: str = Field(sa_column=sa.Column(LongText, nullable=False))
    metadata_: dict[str, Any] = _json(nullable=False)
    source_id: str = Field(
        sa_column=sa.Column(
            keyed_text(255), sa.ForeignKey(_SOURCE_FK, ondelete="CASCADE"), nullable=False
        )
    )
    llm_chat_model: str | None = Field(default=None, sa_type=LongText)
    embedding_model: str | None = Field(default=None, sa_type=LongText)
    embedding_dimension: int | None = Field(default=None)
    created_at: datetime = _created_at()


class PageMetadata(ArchonModel, table=True):
    """A whole crawled page, from which chunks are cut (``archon_page_metadata``)."""

    __tablename__ = "archon_page_metadata"
    __table_args__ = (
        # Archon's own names for this table's constraints (upgrade 011), not PostgreSQL's default.
        sa.UniqueConstraint("url", name="archon_page_metadata_url_unique"),
        sa.Index("idx_archon_page_metadata_source_id", "source_id"),
        MYSQL_TABLE_OPTIONS,
    )

    id: uuid.UUID = Field(default_factory=new_uuid, sa_column=sa.Column(sa.Uuid, primary_key=True))
    source_id: str = Field(
        sa_column=sa.Column(
            keyed_text(255),
            sa.ForeignKey(_SOURCE_FK, ondelete="CASCADE", name="archon_page_metadata_source_fk"),
            nullable=False,
        )
    )
    url: str = Field(sa_column=sa.Column(keyed_text(700), nullable=False))
    full_content: str = Field(sa_column=sa.Column(LongText, nullable=False))
    section_title: str | None = Field(default=None, sa_type=LongText)
    section_order: int | None = Field(default=0)
    word_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    char_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    chunk_count: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    metadata_: dict[str, Any] | None = _json()
    created_at: datetime | None = Field(default_factory=utcnow, sa_type=TZDateTime)
    updated_at: datetime | None = Field(default_factory=utcnow, sa_type=TZDateTime)
