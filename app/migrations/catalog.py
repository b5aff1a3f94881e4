"""The live schema of a PostgreSQL database, read from pg_catalog (what ``adopt`` compares).

Catalog queries rather than SQLAlchemy's inspector: they see pgvector and tsvector columns without
warnings, generated columns, ON DELETE rules and enum labels in one round trip each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

_COLUMNS = sa.text(
    """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
           a.attgenerated <> ''
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
      AND c.relname = ANY(:tables) AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY c.relname, a.attnum
    """
)
_CONSTRAINTS = sa.text(
    """
    SELECT c.relname, con.conname, con.contype::text, con.confdeltype::text, f.relname,
           ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, pos)
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
                 ORDER BY k.pos)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_class f ON f.oid = con.confrelid
    WHERE n.nspname = current_schema() AND c.relname = ANY(:tables)
      AND con.contype IN ('p', 'u', 'f', 'c')
    """
)
_INDEXES = sa.text(
    """
    SELECT t.relname, i.relname, x.indisunique AND x.indexprs IS NULL AND x.indpred IS NULL,
           ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(num, pos)
                 JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.num
                 ORDER BY k.pos)
    FROM pg_index x
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = current_schema() AND t.relname = ANY(:tables) AND NOT x.indisprimary
    """
)
_ENUMS = sa.text(
    """
    SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
    FROM pg_type t
    JOIN pg_enum e ON e.enumtypid = t.oid
    JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = current_schema()
    GROUP BY t.typname
    """
)
_FUNCTIONS = sa.text(
    """
    SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = current_schema()
    """
)
_EXTENSIONS = sa.text("SELECT extname FROM pg_extension")


@dataclass(frozen=True)
class LiveColumn:
    name: str
    type: str  # as format_type() spells it: "character varying(255)", "vector(1536)", ...
    not_null: bool
    generated: bool


@dataclass(frozen=True)
class LiveConstraint:
    name: str
    kind: str  # p(rimary key), u(nique), f(oreign key), c(heck)
    columns: tuple[str, ...]
    referred_table: str | None = None
    on_delete: str | None = None


@dataclass
class LiveTable:
    name: str
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    constraints: list[LiveConstraint] = field(default_factory=list)
    unique_indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    indexes: set[str] = field(default_factory=set)

    def of_kind(self, kind: str) -> list[LiveConstraint]:
        return [c for c in self.constraints if c.kind == kind]


@dataclass
class LiveSchema:
    tables: dict[str, LiveTable]
    enums: dict[str, list[str]]
    functions: set[str]
    extensions: set[str]


def read_schema(connection: Connection, tables: Iterable[str]) -> LiveSchema:
    """What the database in the connection's current schema holds for ``tables``."""
    names = {"tables": sorted(tables)}
    live: dict[str, LiveTable] = {}
    for table, column, type_, not_null, generated in connection.execute(_COLUMNS, names):
        entry = live.setdefault(table, LiveTable(table))
        entry.columns[column] = LiveColumn(column, type_, not_null, generated)
    for table, name, kind, deltype, referred, columns in connection.execute(_CONSTRAINTS, names):
        if table in live:
            on_delete = ON_DELETE.get(deltype) if kind == "f" else None
            constraint = LiveConstraint(name, kind, tuple(columns), referred, on_delete)
            live[table].constraints.append(constraint)
    for table, name, unique, columns in connection.execute(_INDEXES, names):
        if table in live:
            live[table].indexes.add(name)
            if unique:
                live[table].unique_indexes[name] = tuple(columns)
    return LiveSchema(
        tables=live,
        enums={name: list(labels) for name, labels in connection.execute(_ENUMS)},
        functions={name for (name,) in connection.execute(_FUNCTIONS)},
        extensions={name for (name,) in connection.execute(_EXTENSIONS)},
    )
