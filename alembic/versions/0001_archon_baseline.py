"""Archon baseline: the Archon tables as the models declare them, plus each dialect's extras.

Everything here is frozen on purpose (types are spelled out rather than imported from the
models), so that later changes to the models show up as differences and get their own revision.

Beyond the models, per dialect:
- PostgreSQL: the extensions pgcrypto, pg_trgm and vector where available; Archon's server
  defaults; native enum types; the updated_at trigger; the generated ``content_search_vector``
  columns with GIN indexes; GIN indexes on ``metadata``; trigram indexes; five ``embedding_<dim>``
  columns, ``vector(n)`` with pgvector and ``bytea`` (float32 blobs, exact search) without it.
- MySQL / MariaDB: ``embedding_<dim>`` LONGBLOB columns; server defaults except on JSON and TEXT
  columns, which MySQL 8 only accepts as expressions.
- SQLite: ``embedding_<dim>`` BLOB columns; server defaults.
Vector ANN indexes, keyword-search structures (FTS5 / FULLTEXT) and Archon's SQL search functions
belong to later revisions.

Revision ID: 0001_archon_baseline
Revises:
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from alembic import context, op

# TEXT, but LONGTEXT on MySQL/MariaDB, where TEXT stops at 64 KB (a whole crawled page is larger).
# Spelled out here rather than imported: a revision keeps the types it was written with.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

revision: str = "0001_archon_baseline"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

ENUMS = {
    "task_status": ("todo", "doing", "review", "done"),
    "task_priority": ("low", "medium", "high", "critical"),
}
EMBEDDING_DIMENSIONS = (384, 768, 1024, 1536, 3072)
TRIGGER_TABLES = ("archon_settings", "archon_projects", "archon_tasks", "archon_prompts")
# Children before parents, for the downgrade.
TABLES = (
    "archon_document_versions",
    "archon_project_sources",
    "archon_tasks",
    "archon_projects",
    "archon_code_examples",
    "archon_crawled_pages",
    "archon_page_metadata",
    "archon_sources",
    "archon_settings",
    "archon_prompts",
    "archon_migrations",
)
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
PREFIX = 191  # MySQL index prefix for TEXT columns (191 * 4 bytes fits the smallest key limit)


class _Vector(sa.types.UserDefinedType[Any]):
    """pgvector's ``vector(n)``, without importing pgvector into a migration."""

    cache_ok = True

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def get_col_spec(self, **_: Any) -> str:
        return f"vector({self.dim})"


# A NamedTuple rather than a dataclass: Alembic loads revision files without registering them in
# sys.modules, which @dataclass needs.
class Flavor(NamedTuple):
    """The dialect, and on PostgreSQL what the server turned out to offer."""

    name: str
    vector: bool = False
    trgm: bool = False
    uuid_default: bool = False

    @property
    def pg(self) -> bool:
        return self.name == "postgresql"

    @property
    def my(self) -> bool:
        return self.name in ("mysql", "mariadb")

    # -- types ---------------------------------------------------------------------------------

    def uuid(self) -> sa.types.TypeEngine[Any]:
        return sa.Uuid()

    def keyed_text(self, mysql_length: int) -> sa.types.TypeEngine[Any]:
        return sa.String(mysql_length) if self.my else sa.Text()

    def chunk_url(self) -> sa.types.TypeEngine[Any]:
        return sa.String() if self.pg else self.keyed_text(700)

    def ts(self) -> sa.types.TypeEngine[Any]:
        return mysql.DATETIME(fsp=6) if self.my else sa.DateTime(timezone=True)

    def json(self) -> sa.types.TypeEngine[Any]:
        return postgresql.JSONB() if self.pg else sa.JSON()

    def big_id(self) -> sa.types.TypeEngine[Any]:
        return sa.Integer() if self.name == "sqlite" else sa.BigInteger()

    def enum(self, name: str) -> sa.types.TypeEngine[Any]:
        if self.pg:
            return postgresql.ENUM(*ENUMS[name], name=name, create_type=False)
        return sa.String(16)

    def embedding(self, dim: int) -> sa.types.TypeEngine[Any]:
        if self.pg:
            return _Vector(dim) if self.vector else postgresql.BYTEA()
        return mysql.LONGBLOB() if self.my else sa.LargeBinary()

    # -- server defaults -----------------------------------------------------------------------

    def now(self) -> Any:
        if self.pg:
            return sa.text("now()")
        # The layer stores naive UTC on MySQL and SQLite; CURRENT_TIMESTAMP is UTC on SQLite.
        return sa.text("(UTC_TIMESTAMP(6))") if self.my else sa.text("CURRENT_TIMESTAMP")

    def new_uuid(self) -> Any:
        return sa.text("gen_random_uuid()") if self.pg and self.uuid_default else None

    def json_default(self, literal: str) -> Any:
        if self.pg:
            return sa.text(f"'{literal}'::jsonb")
        return None if self.my else sa.text(f"'{literal}'")

    def text_default(self, literal: str) -> Any:
        # MySQL 8 rejects literal defaults on TEXT columns.
        return None if self.my else sa.text(f"'{literal}'")

    def varchar_default(self, literal: str) -> Any:
        return sa.text(f"'{literal}'")

    def false(self) -> Any:
        return sa.text("false") if self.pg else sa.text("0")

    def zero(self) -> Any:
        return sa.text("0")

    def table_kwargs(self) -> dict[str, Any]:
        return MYSQL_TABLE if self.my else {}


def _flavor() -> Flavor:
    name = op.get_context().dialect.name
    if name != "postgresql":
        return Flavor(name)
    if context.is_offline_mode():
        for extension in ("pgcrypto", "pg_trgm", "vector"):
            op.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
        return Flavor(name, vector=True, trgm=True, uuid_default=True)
    bind = op.get_bind()
    pgcrypto = _ensure_extension(bind, "pgcrypto")
    trgm = _ensure_extension(bind, "pg_trgm")
    vector = _ensure_extension(bind, "vector")
    # gen_random_uuid() is built in from PostgreSQL 13; before that it comes with pgcrypto.
    modern = int(bind.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 130000
    return Flavor(name, vector=vector, trgm=trgm, uuid_default=modern or pgcrypto)


def _ensure_extension(bind: sa.engine.Connection, name: str) -> bool:
    """Create ``name`` if the server offers it; ``False`` when it is absent or not permitted."""
    installed = bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = :name"), {"name": name}
    ).first()
    if installed:
        return True
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = :name"), {"name": name}
    ).first()
    if not available:
        log.info("extension %s is not available on this server; continuing without it", name)
        return False
    try:
        with bind.begin_nested():
            bind.execute(sa.text(f"CREATE EXTENSION IF NOT EXISTS {name}"))
    except sa.exc.DBAPIError as exc:
        log.warning("could not create extension %s (%s); continuing without it", name, exc.orig)
        return False
    return True


# -- tables ------------------------------------------------------------------------------------


def _timestamp(f: Flavor, name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, f.ts(), nullable=nullable, server_default=f.now())


def _uuid_pk(f: Flavor) -> sa.Column[Any]:
    return sa.Column("id", f.uuid(), nullable=False, server_default=f.new_uuid())


def _index(name: str, table: str, column: str, *, text: bool = False) -> None:
    kwargs: dict[str, Any] = {"mysql_length": {column: PREFIX}} if text else {}
    op.create_index(name, table, [column], **kwargs)


def _create_sources(f: Flavor) -> None:
    op.create_table(
        "archon_sources",
        sa.Column("source_id", f.keyed_text(255), nullable=False),
        sa.Column("source_url", LongText),
        sa.Column("source_display_name", LongText),
        sa.Column("summary", LongText),
        sa.Column("total_word_count", sa.Integer(), server_default=f.zero()),
        sa.Column("title", LongText),
        sa.Column("metadata", f.json(), server_default=f.json_default("{}")),
        _timestamp(f, "created_at", nullable=False),
        _timestamp(f, "updated_at", nullable=False),
        sa.PrimaryKeyConstraint("source_id", name="archon_sources_pkey"),
        **f.table_kwargs(),
    )
    _index("idx_archon_sources_title", "archon_sources", "title", text=True)
    _index("idx_archon_sources_url", "archon_sources", "source_url", text=True)
    _index("idx_archon_sources_display_name", "archon_sources", "source_display_name", text=True)


def _create_page_metadata(f: Flavor) -> None:
    op.create_table(
        "archon_page_metadata",
        _uuid_pk(f),
        sa.Column("source_id", f.keyed_text(255), nullable=False),
        sa.Column("url", f.keyed_text(700), nullable=False),
        sa.Column("full_content", LongText, nullable=False),
        sa.Column("section_title", LongText),
        sa.Column("section_order", sa.Integer(), server_default=f.zero()),
        sa.Column("word_count", sa.Integer(), nullable=False),
        sa.Column("char_count", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False, server_default=f.zero()),
        sa.Column("metadata", f.json(), server_default=f.json_default("{}")),
        _timestamp(f, "created_at"),
        _timestamp(f, "updated_at"),
        sa.PrimaryKeyConstraint("id", name="archon_page_metadata_pkey"),
        sa.UniqueConstraint("url", name="archon_page_metadata_url_unique"),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["archon_sources.source_id"],
            name="archon_page_metadata_source_fk",
            ondelete="CASCADE",
        ),
        **f.table_kwargs(),
    )
    _index("idx_archon_page_metadata_source_id", "archon_page_metadata", "source_id")


def _create_chunks(f: Flavor, table: str) -> None:
    """``archon_crawled_pages`` and ``archon_code_examples``: the same shape, two differences."""
    pages = table == "archon_crawled_pages"
    searchable = "content" if pages else "content || ' ' || COALESCE(summary, '')"
    columns: list[Any] = [
        sa.Column("id", f.big_id(), nullable=False, autoincrement=True),
        sa.Column("url", f.chunk_url(), nullable=False),
        sa.Column("chunk_number", sa.Integer(), nullable=False),
        sa.Column("content", LongText, nullable=False),
        *([] if pages else [sa.Column("summary", LongText, nullable=False)]),
        sa.Column("metadata", f.json(), nullable=False, server_default=f.json_default("{}")),
        sa.Column("source_id", f.keyed_text(255), nullable=False),
        *(sa.Column(f"embedding_{dim}", f.embedding(dim)) for dim in EMBEDDING_DIMENSIONS),
        sa.Column("llm_chat_model", LongText),
        sa.Column("embedding_model", LongText),
        sa.Column("embedding_dimension", sa.Integer()),
        *([sa.Column("page_id", f.uuid())] if pages else []),
        _timestamp(f, "created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{table}_pkey"),
        sa.UniqueConstraint("url", "chunk_number", name=f"{table}_url_chunk_number_key"),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["archon_sources.source_id"],
            name=f"{table}_source_id_fkey",
            ondelete="CASCADE",
        ),
    ]
    if pages:
        columns.append(
            sa.ForeignKeyConstraint(
                ["page_id"],
                ["archon_page_metadata.id"],
                name=f"{table}_page_id_fkey",
                ondelete="SET NULL",
            )
        )
    if f.pg:
        expression = f"to_tsvector('english'::regconfig, {searchable})"
        columns.append(
            sa.Column(
                "content_search_vector",
                postgresql.TSVECTOR(),
                sa.Computed(expression, persisted=True),
            )
        )
    op.create_table(table, *columns, **f.table_kwargs())
    _index(f"idx_{table}_source_id", table, "source_id")
    _index(f"idx_{table}_embedding_model", table, "embedding_model", text=True)
    _index(f"idx_{table}_embedding_dimension", table, "embedding_dimension")
    _index(f"idx_{table}_llm_chat_model", table, "llm_chat_model", text=True)
    if pages:
        _index(f"idx_{table}_page_id", table, "page_id")


def _create_projects(f: Flavor) -> None:
    op.create_table(
        "archon_projects",
        _uuid_pk(f),
        sa.Column("title", LongText, nullable=False),
        sa.Column("description", LongText, server_default=f.text_default("")),
        sa.Column("docs", f.json(), server_default=f.json_default("[]")),
        sa.Column("features", f.json(), server_default=f.json_default("[]")),
        sa.Column("data", f.json(), server_default=f.json_default("[]")),
        sa.Column("github_repo", LongText),
        sa.Column("pinned", sa.Boolean(), server_default=f.false()),
        _timestamp(f, "created_at"),
        _timestamp(f, "updated_at"),
        sa.PrimaryKeyConstraint("id", name="archon_projects_pkey"),
        **f.table_kwargs(),
    )


# Alembic applies the models' naming convention ("<table>_<name>_check") to explicit CHECK names;
# op.f() marks a name as final, so the constraints carry exactly the names below.


def _enum_checks(f: Flavor, table: str, columns: dict[str, str]) -> list[sa.CheckConstraint]:
    """VARCHAR + CHECK where there are no native enum types (as ``sa.Enum`` renders it)."""
    if f.pg:
        return []
    checks = []
    for column, enum_name in columns.items():
        labels = ", ".join(f"'{label}'" for label in ENUMS[enum_name])
        check = sa.CheckConstraint(
            f"{column} IN ({labels})", name=op.f(f"{table}_{enum_name}_check")
        )
        checks.append(check)
    return checks


def _create_tasks(f: Flavor) -> None:
    op.create_table(
        "archon_tasks",
        _uuid_pk(f),
        sa.Column("project_id", f.uuid()),
        sa.Column("parent_task_id", f.uuid()),
        sa.Column("title", LongText, nullable=False),
        sa.Column("description", LongText, server_default=f.text_default("")),
        sa.Column("status", f.enum("task_status"), server_default=f.varchar_default("todo")),
        sa.Column("assignee", LongText, server_default=f.text_default("User")),
        sa.Column("task_order", sa.Integer(), server_default=f.zero()),
        sa.Column(
            "priority",
            f.enum("task_priority"),
            nullable=False,
            server_default=f.varchar_default("medium"),
        ),
        sa.Column("feature", LongText),
        sa.Column("sources", f.json(), server_default=f.json_default("[]")),
        sa.Column("code_examples", f.json(), server_default=f.json_default("[]")),
        sa.Column("archived", sa.Boolean(), server_default=f.false()),
        sa.Column("archived_at", f.ts()),
        sa.Column("archived_by", LongText),
        _timestamp(f, "created_at"),
        _timestamp(f, "updated_at"),
        sa.PrimaryKeyConstraint("id", name="archon_tasks_pkey"),
        sa.CheckConstraint(
            "assignee IS NOT NULL AND assignee <> ''", name=op.f("archon_tasks_assignee_check")
        ),
        *_enum_checks(f, "archon_tasks", {"status": "task_status", "priority": "task_priority"}),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["archon_projects.id"],
            name="archon_tasks_project_id_fkey",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_task_id"],
            ["archon_tasks.id"],
            name="archon_tasks_parent_task_id_fkey",
            ondelete="CASCADE",
        ),
        **f.table_kwargs(),
    )
    _index("idx_archon_tasks_project_id", "archon_tasks", "project_id")
    _index("idx_archon_tasks_status", "archon_tasks", "status")
    _index("idx_archon_tasks_assignee", "archon_tasks", "assignee", text=True)
    _index("idx_archon_tasks_order", "archon_tasks", "task_order")
    _index("idx_archon_tasks_priority", "archon_tasks", "priority")
    _index("idx_archon_tasks_archived", "archon_tasks", "archived")
    _index("idx_archon_tasks_archived_at", "archon_tasks", "archived_at")


def _create_project_sources(f: Flavor) -> None:
    op.create_table(
        "archon_project_sources",
        _uuid_pk(f),
        sa.Column("project_id", f.uuid()),
        sa.Column("source_id", f.keyed_text(255), nullable=False),
        _timestamp(f, "linked_at"),
        sa.Column("created_by", LongText, server_default=f.text_default("system")),
        sa.Column("notes", LongText),
        sa.PrimaryKeyConstraint("id", name="archon_project_sources_pkey"),
        sa.UniqueConstraint(
            "project_id", "source_id", name="archon_project_sources_project_id_source_id_key"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["archon_projects.id"],
            name="archon_project_sources_project_id_fkey",
            ondelete="CASCADE",
        ),
        **f.table_kwargs(),
    )
    _index("idx_archon_project_sources_project_id", "archon_project_sources", "project_id")
    _index("idx_archon_project_sources_source_id", "archon_project_sources", "source_id")


def _create_document_versions(f: Flavor) -> None:
    table = "archon_document_versions"
    op.create_table(
        table,
        _uuid_pk(f),
        sa.Column("project_id", f.uuid()),
        sa.Column("task_id", f.uuid()),
        sa.Column("field_name", f.keyed_text(64), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("content", f.json(), nullable=False),
        sa.Column("change_summary", LongText),
        sa.Column("change_type", LongText, server_default=f.text_default("update")),
        sa.Column("document_id", LongText),
        sa.Column("created_by", LongText, server_default=f.text_default("system")),
        _timestamp(f, "created_at"),
        sa.PrimaryKeyConstraint("id", name=f"{table}_pkey"),
        sa.CheckConstraint(
            "(project_id IS NOT NULL AND task_id IS NULL) OR "
            "(project_id IS NULL AND task_id IS NOT NULL)",
            name=op.f("chk_project_or_task"),
        ),
        sa.UniqueConstraint(
            "project_id",
            "task_id",
            "field_name",
            "version_number",
            name="archon_document_versions_project_id_task_id_field_name_vers_key",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["archon_projects.id"],
            name=f"{table}_project_id_fkey",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["archon_tasks.id"], name=f"{table}_task_id_fkey", ondelete="CASCADE"
        ),
        **f.table_kwargs(),
    )
    _index(f"idx_{table}_project_id", table, "project_id")
    _index(f"idx_{table}_task_id", table, "task_id")
    _index(f"idx_{table}_field_name", table, "field_name")
    _index(f"idx_{table}_version_number", table, "version_number")
    _index(f"idx_{table}_created_at", table, "created_at")


def _create_settings(f: Flavor) -> None:
    op.create_table(
        "archon_settings",
        _uuid_pk(f),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", LongText),
        sa.Column("encrypted_value", LongText),
        sa.Column("is_encrypted", sa.Boolean(), server_default=f.false()),
        sa.Column("category", sa.String(100)),
        sa.Column("description", LongText),
        _timestamp(f, "created_at"),
        _timestamp(f, "updated_at"),
        sa.PrimaryKeyConstraint("id", name="archon_settings_pkey"),
        sa.UniqueConstraint("key", name="archon_settings_key_key"),
        **f.table_kwargs(),
    )
    _index("idx_archon_settings_key", "archon_settings", "key")
    _index("idx_archon_settings_category", "archon_settings", "category")


def _create_prompts(f: Flavor) -> None:
    op.create_table(
        "archon_prompts",
        _uuid_pk(f),
        sa.Column("prompt_name", f.keyed_text(255), nullable=False),
        sa.Column("prompt", LongText, nullable=False),
        sa.Column("description", LongText),
        _timestamp(f, "created_at"),
        _timestamp(f, "updated_at"),
        sa.PrimaryKeyConstraint("id", name="archon_prompts_pkey"),
        sa.UniqueConstraint("prompt_name", name="archon_prompts_prompt_name_key"),
        **f.table_kwargs(),
    )
    _index("idx_archon_prompts_name", "archon_prompts", "prompt_name")


def _create_migrations(f: Flavor) -> None:
    op.create_table(
        "archon_migrations",
        _uuid_pk(f),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("migration_name", sa.String(255), nullable=False),
        _timestamp(f, "applied_at"),
        sa.Column("checksum", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="archon_migrations_pkey"),
        sa.UniqueConstraint(
            "version", "migration_name", name="archon_migrations_version_migration_name_key"
        ),
        **f.table_kwargs(),
    )
    _index("idx_archon_migrations_version", "archon_migrations", "version")
    op.create_index(
        "idx_archon_migrations_applied_at", "archon_migrations", [sa.text("applied_at DESC")]
    )


# -- PostgreSQL extras -------------------------------------------------------------------------

UPDATED_AT_FUNCTION = """
CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""


def _create_enum_types() -> None:
    for name, labels in ENUMS.items():
        quoted = ", ".join(f"'{label}'" for label in labels)
        op.execute(f"CREATE TYPE {name} AS ENUM ({quoted})")


def _create_postgresql_extras(f: Flavor) -> None:
    op.execute(UPDATED_AT_FUNCTION)
    for table in TRIGGER_TABLES:
        op.execute(
            f"CREATE TRIGGER update_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()"
        )
    for table in ("archon_sources", "archon_crawled_pages", "archon_code_examples"):
        op.create_index(f"idx_{table}_metadata", table, ["metadata"], postgresql_using="gin")
    op.create_index(
        "idx_archon_page_metadata_metadata",
        "archon_page_metadata",
        ["metadata"],
        postgresql_using="gin",
    )
    op.create_index(
        "idx_archon_sources_knowledge_type",
        "archon_sources",
        [sa.text("(metadata ->> 'knowledge_type')")],
    )
    trigram = {"archon_crawled_pages": ("content",), "archon_code_examples": ("content", "summary")}
    for table, columns in trigram.items():
        op.create_index(
            f"idx_{table}_content_search", table, ["content_search_vector"], postgresql_using="gin"
        )
        if not f.trgm:
            continue
        for column in columns:
            op.create_index(
                f"idx_{table}_{column}_trgm",
                table,
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )


def upgrade() -> None:
    f = _flavor()
    if f.pg:
        _create_enum_types()
    _create_sources(f)
    _create_page_metadata(f)
    _create_chunks(f, "archon_crawled_pages")
    _create_chunks(f, "archon_code_examples")
    _create_projects(f)
    _create_tasks(f)
    _create_project_sources(f)
    _create_document_versions(f)
    _create_settings(f)
    _create_prompts(f)
    _create_migrations(f)
    if f.pg:
        _create_postgresql_extras(f)


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
    if op.get_context().dialect.name == "postgresql":
        # Extensions stay: other schemas and tools in the same database may rely on them.
        op.execute("DROP FUNCTION IF EXISTS update_updated_at_column()")
        for name in reversed(ENUMS):
            op.execute(f"DROP TYPE IF EXISTS {name}")
