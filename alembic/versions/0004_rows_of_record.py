"""The rows are the system of record for vectors: an identity, deletes queued, ids never reused.

- ``archon_database_identity``: one row holding a UUID made when this revision runs. External
  stores (Chroma, Weaviate) name their collections with it, so a store left by another database,
  or by an earlier life of this one (file deleted, ``downgrade base``), is never read as this
  one's. ``external_store`` says whether an external store is fed from this database.
- While an external store is fed, chunk rows deleted queue a ``delete`` in ``archon_vector_outbox``
  (batch ``queued``), and chunk rows whose stored fields change (``source_id``, ``url``,
  ``chunk_number``, ``embedding_model``, ``metadata``, ``content``) queue an ``upsert``, whatever
  changed them: a repository, a cascade from the source, plain SQL. PostgreSQL: a statement-level
  trigger per table for deletes (transition table), a row trigger for updates; SQLite: row
  triggers (foreign-key cascades fire them); MySQL/MariaDB: row triggers, plus one on
  ``archon_sources`` for its chunks, since MySQL's cascades fire no triggers.
- SQLite: the chunk tables are rebuilt with ``AUTOINCREMENT``, so a deleted row's id is never
  handed out again (MySQL/MariaDB and PostgreSQL never reuse one). Downgrading keeps it.

Revision ID: 0004_rows_of_record
Revises: 0003_vector_outbox
Create Date: 2025-01-04
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004_rows_of_record"
down_revision: str | Sequence[str] | None = "0003_vector_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDENTITY = "archon_database_identity"
OUTBOX = "archon_vector_outbox"
CHUNKS = {"archon_crawled_pages": "crawled_pages", "archon_code_examples": "code_examples"}
FED = f"EXISTS (SELECT 1 FROM {IDENTITY} WHERE external_store IS NOT NULL)"
NOW = {"postgresql": "now()", "sqlite": "CURRENT_TIMESTAMP", "mysql": "UTC_TIMESTAMP(6)"}
QUEUED = "queued"  # the outbox batch of what the triggers queue
# What a store's record holds of its row besides the vector: a change queues the row again.
WATCHED = ("source_id", "url", "chunk_number", "embedding_model", "metadata", "content")


def upgrade() -> None:
    dialect = _dialect()
    _create_identity(dialect)
    if dialect == "sqlite":
        for table in CHUNKS:
            _sqlite_autoincrement(table)
    for statement in _trigger_ddl(dialect):
        op.execute(statement)


def downgrade() -> None:
    dialect = _dialect()
    for table in CHUNKS:
        for suffix in ("deleted", "changed"):
            on = f" ON {table}" if dialect == "postgresql" else ""
            op.execute(f"DROP TRIGGER IF EXISTS {table}_vector_{suffix}{on}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS archon_vector_deleted()")
        op.execute("DROP FUNCTION IF EXISTS archon_vector_changed()")
    if dialect == "mysql":
        op.execute("DROP TRIGGER IF EXISTS archon_sources_vector_deleted")
    op.drop_table(IDENTITY)


def _dialect() -> str:
    name = op.get_context().dialect.name
    return "mysql" if name == "mariadb" else name


def _create_identity(dialect: str) -> None:
    kwargs = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
    table = op.create_table(
        IDENTITY,
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("identity", sa.String(36), nullable=False),
        sa.Column("external_store", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name=f"{IDENTITY}_pkey"),
        **(kwargs if dialect == "mysql" else {}),
    )
    op.bulk_insert(table, [{"id": 1, "identity": str(uuid.uuid4()), "external_store": None}])


def _queue(dialect: str, collection: str, op_name: str, ids: str, source: str) -> str:
    """INSERT of one operation per id that ``source`` yields, only while a store is fed."""
    now = NOW[dialect]
    text_id = f"CAST({ids} AS TEXT)" if dialect != "mysql" else f"CAST({ids} AS CHAR)"
    return (
        f"INSERT INTO {OUTBOX} (batch, collection, record_id, op, attempts, created_at, "
        f"updated_at) SELECT '{QUEUED}', {collection}, {text_id}, '{op_name}', 0, {now}, {now} "
        f"{source} {'AND' if ' WHERE ' in source else 'WHERE'} {FED}"
    )


def _changed(dialect: str) -> str:
    """The condition that a watched column changed (NULL-safe)."""
    if dialect == "mysql":
        return "NOT (" + " AND ".join(f"OLD.{c} <=> NEW.{c}" for c in WATCHED) + ")"
    different = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    return "(" + " OR ".join(f"OLD.{c} {different} NEW.{c}" for c in WATCHED) + ")"


def _trigger_ddl(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return _postgresql_triggers()
    statements = []
    for table, collection in CHUNKS.items():
        name = f"'{collection}'"
        deleted = _queue(dialect, name, "delete", "OLD.id", "FROM (SELECT 1) AS one")
        changed = _queue(
            dialect, name, "upsert", "NEW.id", f"FROM (SELECT 1) AS one WHERE {_changed(dialect)}"
        )
        if dialect == "sqlite":
            statements += [
                f"CREATE TRIGGER {table}_vector_deleted AFTER DELETE ON {table} "
                f"BEGIN {deleted}; END",
                f"CREATE TRIGGER {table}_vector_changed AFTER UPDATE OF {', '.join(WATCHED)} "
                f"ON {table} BEGIN {changed}; END",
            ]
        else:
            statements += [
                f"CREATE TRIGGER {table}_vector_deleted AFTER DELETE ON {table} "
                f"FOR EACH ROW {deleted}",
                f"CREATE TRIGGER {table}_vector_changed AFTER UPDATE ON {table} "
                f"FOR EACH ROW {changed}",
            ]
    if dialect != "mysql":
        return statements
    # MySQL's foreign-key cascades fire no triggers: queue a source's chunks as it goes.
    parts = [
        _queue("mysql", f"'{collection}'", "delete", "c.id",
               f"FROM {table} c WHERE c.source_id = OLD.source_id")
        for table, collection in CHUNKS.items()
    ]  # fmt: skip
    statements.append(
        "CREATE TRIGGER archon_sources_vector_deleted BEFORE DELETE ON archon_sources "
        f"FOR EACH ROW BEGIN {'; '.join(parts)}; END"
    )
    return statements


def _postgresql_triggers() -> list[str]:
    # TG_ARGV[0] is the collection; plpgsql passes it to the statement as a parameter.
    deleted = _queue("postgresql", "TG_ARGV[0]", "delete", "d.id", "FROM deleted_rows d")
    changed = _queue("postgresql", "TG_ARGV[0]", "upsert", "NEW.id", "FROM (SELECT 1) AS one")
    statements = [
        "CREATE OR REPLACE FUNCTION archon_vector_deleted() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN {deleted}; RETURN NULL; END $$",
        "CREATE OR REPLACE FUNCTION archon_vector_changed() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN {changed}; RETURN NULL; END $$",
    ]
    for table, collection in CHUNKS.items():
        # One statement-level trigger per DELETE (its transition table holds every row); a row
        # trigger for updates, fired only when a watched column is in the SET list and changed.
        statements += [
            f"CREATE TRIGGER {table}_vector_deleted AFTER DELETE ON {table} REFERENCING OLD "
            f"TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION "
            f"archon_vector_deleted('{collection}')",
            f"CREATE TRIGGER {table}_vector_changed AFTER UPDATE OF {', '.join(WATCHED)} ON "
            f"{table} FOR EACH ROW WHEN {_changed('postgresql')} EXECUTE FUNCTION "
            f"archon_vector_changed('{collection}')",
        ]
    return statements


def _sqlite_autoincrement(table: str) -> None:
    """Rebuild ``table`` with ``id INTEGER PRIMARY KEY AUTOINCREMENT``, keeping everything else."""
    bind = op.get_bind()
    ddl = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar_one()
    if "AUTOINCREMENT" in ddl.upper():
        return
    others = bind.execute(
        sa.text(
            "SELECT sql FROM sqlite_master WHERE tbl_name = :t AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type"
        ),
        {"t": table},
    ).scalars().all()
    rebuilt, found = re.subn(rf",\s*CONSTRAINT {table}_pkey PRIMARY KEY \(id\)", "", ddl)
    rebuilt, typed = re.subn(
        r"\bid INTEGER NOT NULL\b",
        f"id INTEGER NOT NULL CONSTRAINT {table}_pkey PRIMARY KEY AUTOINCREMENT",
        rebuilt,
        count=1,
    )
    if found != 1 or typed != 1:
        raise RuntimeError(f"unexpected SQLite definition of {table}; cannot add AUTOINCREMENT")
    rebuilt = rebuilt.replace(f"CREATE TABLE {table}", f"CREATE TABLE {table}__rebuilt", 1)
    op.execute(rebuilt)
    op.execute(f"INSERT INTO {table}__rebuilt SELECT * FROM {table}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {table}__rebuilt RENAME TO {table}")
    for statement in others:
        op.execute(statement)
