"""The audit log: who wrote what, and when, recorded in the transaction of the write.

``archon_audit_log`` holds one row per write call of a Unit of Work (``ENABLE_AUDIT_LOG``): the
actor, the table, the operation, the ids written and the names of the columns written (never a
value). On PostgreSQL the table is private as Archon's private tables are: row-level security
enabled and no policy, so Supabase's anon and authenticated roles read nothing; the data layer's
own role (the owner, or the service role) is not bound by it. Types are spelled out here (not
imported from ``app.domain.audit``) so the revision stays what it was when written.

Revision ID: 0007_audit_log
Revises: 0006_archon_data
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from alembic import op
from app.migrations.rls import enable_archon_rls

revision: str = "0007_audit_log"
down_revision: str | Sequence[str] | None = "0006_archon_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "archon_audit_log"


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("occurred_at", timestamp, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("unit_id", sa.String(36), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(255)),
        sa.Column("entity_ids", json),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("fields", json, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{TABLE}_pkey"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_archon_audit_log_occurred_at", TABLE, ["occurred_at"])
    op.create_index("ix_archon_audit_log_entity", TABLE, ["entity", "entity_id"])
    # Private, as Archon keeps its settings: the service role only (nothing on other dialects).
    enable_archon_rls(TABLE, "private")


def downgrade() -> None:
    op.drop_index("ix_archon_audit_log_entity", table_name=TABLE)
    op.drop_index("ix_archon_audit_log_occurred_at", table_name=TABLE)
    op.drop_table(TABLE)
