"""The vector outbox: Chroma and Weaviate writes recorded in the SQL transaction.

``archon_vector_outbox`` holds one row per pending vector operation (upsert or delete of one record
id in one collection; an upsert's vector as float32 bytes, the rest as JSON), written in the same
transaction as the entities and deleted once applied to the store; a failed operation keeps its
attempt count and last error. Types are spelled out here (not imported from
``app.vector.outbox.table``) so the revision stays what it was when written.

Revision ID: 0003_vector_outbox
Revises: 0002_vector_search
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0003_vector_outbox"
down_revision: str | Sequence[str] | None = "0002_vector_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "archon_vector_outbox"


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("batch", sa.String(36), nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")),
        sa.Column("vector", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{TABLE}_pkey"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_archon_vector_outbox_batch", TABLE, ["batch"])
    op.create_index("ix_archon_vector_outbox_record", TABLE, ["collection", "record_id"])


def downgrade() -> None:
    op.drop_index("ix_archon_vector_outbox_record", table_name=TABLE)
    op.drop_index("ix_archon_vector_outbox_batch", table_name=TABLE)
    op.drop_table(TABLE)
