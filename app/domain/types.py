"""Portable column types: one place decides how each logical type looks on every dialect."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL (Archon's type, GIN-indexable, supports @>), JSON elsewhere.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# TEXT, except on MySQL/MariaDB where TEXT stops at 64 KB and a crawled page can be larger.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

# Archon's bigserial ids; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class TZDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every dialect.

    PostgreSQL stores ``timestamptz``. MySQL and SQLite have no zone, so values are stored as naive
    UTC (MySQL with microseconds) and come back tagged as UTC. Naive input is taken to be UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite hands back the stored text: one ISO parse (its own processor runs a regex first).
        slow = super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                parsed = datetime.fromisoformat(value)
            except (TypeError, ValueError):
                return slow(value) if slow is not None else None
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite rows written by other tools
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class _PostgresEnum(postgresql.ENUM):
    """PostgreSQL's named enum, whose CREATE/DROP TYPE only ever runs on PostgreSQL.

    As a variant of a portable Enum its metadata events still fire on every dialect, and other
    dialects have no ``CREATE TYPE`` (``metadata.create_all`` on MySQL would fail).
    """

    def _on_table_create(self, target: Any, bind: Any, checkfirst: Any = False, **kw: Any) -> None:
        if bind.dialect.name == "postgresql":
            super()._on_table_create(target, bind, checkfirst=checkfirst, **kw)

    def _on_metadata_create(
        self, target: Any, bind: Any, checkfirst: Any = False, **kw: Any
    ) -> None:
        if bind.dialect.name == "postgresql":
            super()._on_metadata_create(target, bind, checkfirst=checkfirst, **kw)

    def _on_metadata_drop(self, target: Any, bind: Any, checkfirst: Any = False, **kw: Any) -> None:
        if bind.dialect.name == "postgresql":
            super()._on_metadata_drop(target, bind, checkfirst=checkfirst, **kw)


def enum_type(enum_cls: type[enum.Enum], name: str, length: int = 16) -> sa.types.TypeEngine[Any]:
    """A PostgreSQL enum type named like Archon's; VARCHAR with a CHECK constraint elsewhere."""

    def values(e: type[enum.Enum]) -> list[str]:
        return [str(m.value) for m in e]

    portable = sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=values,
        validate_strings=True,
    )
    native = _PostgresEnum(enum_cls, name=name, values_callable=values, validate_strings=True)
    return portable.with_variant(native, "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


# Plain functions as default factories: pydantic inspects a factory's signature on every
# construction, and builtins such as ``list`` make that ~10 times slower than a def.
def new_list() -> list[Any]:
    """A new empty list (a default factory)."""
    return []


def new_dict() -> dict[str, Any]:
    """A new empty dict (a default factory)."""
    return {}


def new_uuid() -> uuid.UUID:
    """A new random UUID (a default factory)."""
    return uuid.uuid4()


def keyed_text(mysql_length: int) -> sa.types.TypeEngine[str]:
    """TEXT, except on MySQL/MariaDB where keys and unique constraints need a VARCHAR length."""
    return sa.Text().with_variant(sa.String(mysql_length), "mysql", "mariadb")


def mysql_prefix(*columns: str, length: int = 191) -> dict[str, Any]:
    """Index kwargs giving MySQL the prefix length it needs to index TEXT columns."""
    return {"mysql_length": dict.fromkeys(columns, length)}


# Case- and accent-sensitive comparison on MySQL/MariaDB, as on PostgreSQL and SQLite, so that
# filters (=, LIKE, IN) give the same rows on every backend.
MYSQL_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
