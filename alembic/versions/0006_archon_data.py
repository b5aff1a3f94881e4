"""Archon's data: its default settings, its upgrade records and the agent work order tables.

- ``archon_settings``: Archon's default settings (``app.archon_defaults``), each inserted only when
  its key is absent (ON CONFLICT DO NOTHING / ON DUPLICATE KEY no-op), so values a user set and
  rows of an adopted Archon database stay as they are.
- ``archon_migrations``: Archon's 0.1.0 upgrade scripts recorded as applied, the same way, so
  Archon's migration page shows nothing pending on a database the layer built.
- ``archon_configured_repositories``, ``archon_agent_work_orders``, ``archon_agent_work_order_steps``:
  the tables of Archon's agent work order service, created when absent (an adopted database may
  have them from Archon's own scripts). PostgreSQL adds what Archon's scripts add: the repository
  URL check, GIN indexes on the JSON columns, the updated_at triggers and row-level security
  with full access for ``service_role`` and ``authenticated`` where those roles exist.

Downgrade drops the three work order tables (and their rows). Seeded settings and upgrade records
stay: once written they cannot be told apart from rows a user or Archon wrote, and upgrading
again leaves them untouched.

Revision ID: 0006_archon_data
Revises: 0005_archon_setup
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from alembic import context, op
from app.archon_defaults import ARCHON_SETTINGS, archon_migration_keys
from app.migrations.rls import enable_archon_rls

revision: str = "0006_archon_data"
down_revision: str | Sequence[str] | None = "0005_archon_setup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPOSITORIES = "archon_configured_repositories"
WORK_ORDERS = "archon_agent_work_orders"
STEPS = "archon_agent_work_order_steps"
# Spelled out rather than imported from the models: a revision keeps what it was written with.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
SANDBOX_TYPES = "'git_worktree', 'full_clone', 'tmp_dir'"
STATUSES = "'pending', 'running', 'completed', 'failed'"
COMMANDS = '["create-branch", "planning", "execute", "commit", "create-pr"]'
URL_CHECK = r"repository_url ~ '^https://github\.com/[a-zA-Z0-9_-]+/[a-zA-Z0-9_.-]+/?$'"

def upgrade() -> None:
    dialect = _dialect()
    existing = _existing_tables()
    if REPOSITORIES not in existing:
        _create_repositories(dialect)
    if WORK_ORDERS not in existing:
        _create_work_orders(dialect)
    if STEPS not in existing:
        _create_steps(dialect)
    if dialect == "postgresql":
        for table in (REPOSITORIES, WORK_ORDERS, STEPS):
            if table not in existing:
                _postgresql_security(table)
    _seed_settings(dialect)
    _seed_migrations(dialect)


def downgrade() -> None:
    existing = _existing_tables()
    for table in (STEPS, WORK_ORDERS, REPOSITORIES):
        if table in existing or context.is_offline_mode():
            op.drop_table(table)


# -- helpers -----------------------------------------------------------------------------------


def _dialect() -> str:
    name = op.get_context().dialect.name
    return "mysql" if name == "mariadb" else name


def _existing_tables() -> set[str]:
    if context.is_offline_mode():
        return set()
    return set(sa.inspect(op.get_bind()).get_table_names())


def _ts(dialect: str) -> sa.types.TypeEngine[Any]:
    return mysql.DATETIME(fsp=6) if dialect == "mysql" else sa.DateTime(timezone=True)


def _now(dialect: str) -> Any:
    if dialect == "postgresql":
        return sa.text("now()")
    return sa.text("(UTC_TIMESTAMP(6))") if dialect == "mysql" else sa.text("CURRENT_TIMESTAMP")


def _keyed(dialect: str, mysql_length: int) -> sa.types.TypeEngine[Any]:
    return sa.String(mysql_length) if dialect == "mysql" else sa.Text()


def _json(dialect: str) -> sa.types.TypeEngine[Any]:
    return postgresql.JSONB() if dialect == "postgresql" else sa.JSON()


def _json_default(dialect: str, literal: str) -> Any:
    # MySQL 8 only accepts expressions as defaults of JSON columns: the layer fills them instead.
    if dialect == "mysql":
        return None
    return sa.text(f"'{literal}'::jsonb" if dialect == "postgresql" else f"'{literal}'")


def _text_default(dialect: str, literal: str) -> Any:
    return None if dialect == "mysql" else sa.text(f"'{literal}'")


def _uuid_pk(dialect: str) -> sa.Column[Any]:
    default = sa.text("gen_random_uuid()") if dialect == "postgresql" else None
    return sa.Column("id", sa.Uuid(), nullable=False, server_default=default)


def _timestamps(dialect: str) -> list[sa.Column[Any]]:
    return [
        sa.Column(name, _ts(dialect), server_default=_now(dialect))
        for name in ("created_at", "updated_at")
    ]


def _table_kwargs(dialect: str) -> dict[str, Any]:
    if dialect == "mysql":
        return {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
    return {}


# -- tables ------------------------------------------------------------------------------------


def _create_repositories(dialect: str) -> None:
    pg = dialect == "postgresql"
    op.create_table(
        REPOSITORIES,
        _uuid_pk(dialect),
        sa.Column("repository_url", _keyed(dialect, 700), nullable=False),
        sa.Column("display_name", LongText),
        sa.Column("owner", LongText),
        sa.Column("default_branch", LongText),
        sa.Column("is_verified", sa.Boolean(), server_default=sa.text("false" if pg else "0")),
        sa.Column("last_verified_at", _ts(dialect)),
        sa.Column(
            "default_sandbox_type", LongText, server_default=_text_default(dialect, "git_worktree")
        ),
        sa.Column(
            "default_commands", _json(dialect), server_default=_json_default(dialect, COMMANDS)
        ),
        *_timestamps(dialect),
        sa.PrimaryKeyConstraint("id", name=f"{REPOSITORIES}_pkey"),
        sa.UniqueConstraint("repository_url", name=f"{REPOSITORIES}_repository_url_key"),
        sa.CheckConstraint(
            f"default_sandbox_type IN ({SANDBOX_TYPES})",
            name=op.f(f"{REPOSITORIES}_default_sandbox_type_check"),
        ),
        # Archon's check, in PostgreSQL's regex syntax; the layer checks the URL on every backend.
        *([sa.CheckConstraint(URL_CHECK, name=op.f("valid_repository_url"))] if pg else []),
        **_table_kwargs(dialect),
    )
    op.create_index("idx_configured_repositories_verified", REPOSITORIES, ["is_verified"])
    op.create_index(
        "idx_configured_repositories_created_at", REPOSITORIES, [sa.text("created_at DESC")]
    )
    if pg:
        op.create_index(
            "idx_configured_repositories_commands",
            REPOSITORIES,
            ["default_commands"],
            postgresql_using="gin",
        )


def _create_work_orders(dialect: str) -> None:
    op.create_table(
        WORK_ORDERS,
        sa.Column("agent_work_order_id", _keyed(dialect, 255), nullable=False),
        sa.Column("repository_url", LongText, nullable=False),
        sa.Column("sandbox_identifier", LongText, nullable=False),
        sa.Column("git_branch_name", LongText),
        sa.Column("agent_session_id", LongText),
        sa.Column("status", _keyed(dialect, 32), nullable=False),
        sa.Column("metadata", _json(dialect), server_default=_json_default(dialect, "{}")),
        *_timestamps(dialect),
        sa.PrimaryKeyConstraint("agent_work_order_id", name=f"{WORK_ORDERS}_pkey"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f(f"{WORK_ORDERS}_status_check")),
        **_table_kwargs(dialect),
    )
    op.create_index("idx_agent_work_orders_status", WORK_ORDERS, ["status"])
    op.create_index("idx_agent_work_orders_created_at", WORK_ORDERS, [sa.text("created_at DESC")])
    op.create_index(
        "idx_agent_work_orders_repository",
        WORK_ORDERS,
        ["repository_url"],
        mysql_length={"repository_url": 191},
    )
    if dialect == "postgresql":
        op.create_index(
            "idx_agent_work_orders_metadata", WORK_ORDERS, ["metadata"], postgresql_using="gin"
        )


def _create_steps(dialect: str) -> None:
    op.create_table(
        STEPS,
        _uuid_pk(dialect),
        sa.Column("agent_work_order_id", _keyed(dialect, 255), nullable=False),
        sa.Column("step", LongText, nullable=False),
        sa.Column("agent_name", LongText, nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("output", LongText),
        sa.Column("error_message", LongText),
        sa.Column("duration_seconds", sa.Double(), nullable=False),
        sa.Column("session_id", LongText),
        sa.Column("executed_at", _ts(dialect), nullable=False),
        sa.Column("step_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{STEPS}_pkey"),
        sa.ForeignKeyConstraint(
            ["agent_work_order_id"],
            [f"{WORK_ORDERS}.agent_work_order_id"],
            name=f"{STEPS}_agent_work_order_id_fkey",
            ondelete="CASCADE",
        ),
        **_table_kwargs(dialect),
    )
    op.create_index("idx_agent_work_order_steps_work_order_id", STEPS, ["agent_work_order_id"])
    op.create_index("idx_agent_work_order_steps_executed_at", STEPS, ["executed_at"])


def _postgresql_security(table: str) -> None:
    """Archon's updated_at trigger and row-level security; policies only for roles that exist."""
    if table != STEPS:
        trigger = {REPOSITORIES: "configured_repositories", WORK_ORDERS: "agent_work_orders"}
        op.execute(
            f"CREATE TRIGGER update_{trigger[table]}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()"
        )
    # Service role full access, authenticated users read and write, as Archon's scripts set it.
    enable_archon_rls(table, "authenticated")


# -- seeds -------------------------------------------------------------------------------------


def _insert_missing(
    dialect: str, table: sa.TableClause, rows: list[dict[str, Any]], key: list[str]
) -> None:
    """INSERT ``rows``, skipping each whose ``key`` is already taken (one statement)."""
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(table).values(rows)
        op.execute(pg_stmt.on_conflict_do_nothing(index_elements=key))
    elif dialect == "sqlite":
        lite_stmt = sqlite.insert(table).values(rows)
        op.execute(lite_stmt.on_conflict_do_nothing(index_elements=key))
    else:
        # A no-op assignment: the row already there keeps every value.
        my_stmt = mysql.insert(table).values(rows)
        op.execute(my_stmt.on_duplicate_key_update({key[0]: table.c[key[0]]}))


def _seed_settings(dialect: str) -> None:
    table = sa.table(
        "archon_settings",
        sa.column("id", sa.Uuid()),
        sa.column("key", sa.String(255)),
        sa.column("value", sa.Text()),
        sa.column("is_encrypted", sa.Boolean()),
        sa.column("category", sa.String(100)),
        sa.column("description", sa.Text()),
    )
    rows = [
        {
            "id": uuid.uuid4(),
            "key": s.key,
            "value": s.value,
            "is_encrypted": s.encrypted,
            "category": s.category,
            "description": s.description,
        }
        for s in ARCHON_SETTINGS
    ]
    _insert_missing(dialect, table, rows, ["key"])


def _seed_migrations(dialect: str) -> None:
    table = sa.table(
        "archon_migrations",
        sa.column("id", sa.Uuid()),
        sa.column("version", sa.String(20)),
        sa.column("migration_name", sa.String(255)),
    )
    rows = [
        {"id": uuid.uuid4(), "version": version, "migration_name": name}
        for version, name in archon_migration_keys()
    ]
    _insert_missing(dialect, table, rows, ["version", "migration_name"])
