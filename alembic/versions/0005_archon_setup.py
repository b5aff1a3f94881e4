"""Archon's own setup on PostgreSQL / Supabase: row-level security, Archon's SQL functions, indexes.

Filled in by the revision's implementation; until then it changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005_archon_setup"
down_revision: str | Sequence[str] | None = "0004_rows_of_record"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
