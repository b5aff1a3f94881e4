"""What a copy carries: the tables, in foreign-key order, and the columns each one holds.

Copied: every table of Archon's schema (the entities' tables, ``archon_migrations`` and the
agent work order tables included, and the audit log ``archon_audit_log``), in
the order their foreign keys need, each with the model's columns that exist in the source plus
every ``embedding_<dim>`` column (the vectors live in the rows). Not copied, because each belongs
to the database that holds it rather than to its data:

- ``alembic_version``: the target is migrated by its own history first;
- ``archon_database_identity``: the target keeps its own identity (it names the target's external
  store; sharing the source's would make two databases read one store);
- ``archon_vector_outbox``: pending writes to the *source's* store; the target's store is rebuilt
  from the copied rows instead;
- ``archon_vector_versions``: the exact index's cache versions; the target gets fresh ones;
- derived search structures (SQLite's FTS5 tables, PostgreSQL's ``content_search_vector``,
  MySQL's FULLTEXT indexes): each target computes its own from the copied text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import metadata
from app.domain.audit import AuditEntry
from app.vector.sql.common import table_columns

_EMBEDDING = re.compile(r"^embedding_([0-9]+)$")
# Tables whose rows a new database's own setup may have written (Archon's settings, prompts and
# migration log): the source's rows replace the target's, so the copy equals the source.
SETUP_TABLES = frozenset({"archon_settings", "archon_prompts", "archon_migrations"})
SKIPPED_TABLES = (
    "alembic_version",
    "archon_database_identity",
    "archon_vector_outbox",
    "archon_vector_versions",
)


@dataclass(frozen=True)
class TableSpec:
    """One table to copy: its model table, primary key, and the columns it carries."""

    table: sa.Table
    columns: tuple[str, ...]  # the model's columns present in the source
    vectors: dict[int, str]  # dimension -> embedding column, present in the source
    deferred: tuple[str, ...]  # self-referencing foreign keys, written in a second pass

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def pk(self) -> sa.Column[Any]:
        (column,) = self.table.primary_key.columns
        return column

    @property
    def setup(self) -> bool:
        return self.name in SETUP_TABLES


def model_tables() -> list[sa.Table]:
    """Archon's tables in an order that puts every referenced table before its referrers, then
    the audit log (its own metadata: it references nothing)."""
    audit_log = AuditEntry.__table__
    assert isinstance(audit_log, sa.Table)
    return [*metadata.sorted_tables, audit_log]


def vector_columns(columns: dict[str, str]) -> dict[int, str]:
    """The ``embedding_<dim>`` columns among ``columns``: dimension -> column name."""
    found = {}
    for name in columns:
        match = _EMBEDDING.match(name)
        if match:
            found[int(match.group(1))] = name
    return dict(sorted(found.items()))


async def table_specs(source: AsyncSession) -> list[TableSpec]:
    """What to copy from the database ``source`` talks to, table by table, in FK order."""
    specs = []
    for table in model_tables():
        present = await table_columns(source, table.name)
        if not present:
            continue  # an older Archon generation without this table
        columns = tuple(c.name for c in table.columns if c.name in present)
        deferred = tuple(
            fk.parent.name
            for fk in table.foreign_keys
            if fk.column.table is table and fk.parent.name in columns
        )
        specs.append(TableSpec(table, columns, vector_columns(present), deferred))
    return specs
