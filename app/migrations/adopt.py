"""Adopting an Archon database: does its live schema give the layer what the models need?

The rule: everything the models declare is **required** (a blocker when absent or incompatible):
every table, every column with a type of the same kind, the primary keys, the unique constraints
(upserts rely on them), the foreign keys (their columns and target) and the enum types with every
label the models use. These differences are **tolerated** (warnings: the layer copes with them):
- a foreign key's ON DELETE rule (beta databases lack CASCADE: the layer deletes children itself);
- nullability, and width within a kind of type (varchar(n) for text, bigint for integer);
- missing ``embedding_<dim>`` columns (the vector index adds them) and the beta ``embedding``
  column; a missing ``content_search_vector`` (keyword search needs Archon's upgrade 002);
- check constraints, and enum labels the models do not know.
Reported for information only (notes): the agent work order tables when absent (an upgrade
creates them), constraint names that differ from the models', missing
non-unique indexes, extra columns, Archon's SQL functions and the pgvector extension.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from app.domain import metadata
from app.migrations.autogen import HIDDEN_TABLE
from app.migrations.catalog import LiveSchema, LiveTable, read_schema
from app.migrations.report import AdoptReport, Finding, Severity

EMBEDDING_DIMENSIONS = (384, 768, 1024, 1536, 3072)
CHUNK_TABLES = ("archon_crawled_pages", "archon_code_examples")
ARCHON_FUNCTIONS = (
    "match_archon_crawled_pages",
    "match_archon_crawled_pages_multi",
    "match_archon_code_examples",
    "match_archon_code_examples_multi",
    "hybrid_search_archon_crawled_pages",
    "hybrid_search_archon_crawled_pages_multi",
    "hybrid_search_archon_code_examples",
    "hybrid_search_archon_code_examples_multi",
    "update_updated_at_column",
)
# Where the pieces older Archon generations lack come from: Archon's upgrade files, as named.
UPGRADES = "migration/0.1.0/"
_ADDED_BY = "added by Archon's " + UPGRADES
_HINTS = {
    "archon_sources.source_url": _ADDED_BY + "001_add_source_url_display_name.sql",
    "archon_sources.source_display_name": _ADDED_BY + "001_add_source_url_display_name.sql",
    "archon_tasks.priority": _ADDED_BY + "007_add_priority_column_to_tasks.sql",
    "enum type task_priority": _ADDED_BY + "007_add_priority_column_to_tasks.sql",
    "archon_migrations": _ADDED_BY + "008_add_migration_tracking.sql",
    "archon_page_metadata": _ADDED_BY + "011_add_page_metadata_table.sql",
    "archon_crawled_pages.page_id": _ADDED_BY + "011_add_page_metadata_table.sql",
    **{
        f"{table}.{column}": _ADDED_BY + "003_ollama_add_columns.sql"
        for table in CHUNK_TABLES
        for column in ("llm_chat_model", "embedding_model", "embedding_dimension")
    },
}
# Tables a later revision creates when they are absent (Archon's optional agent work orders
# feature): a database without them is adopted all the same.
CREATED_ON_UPGRADE = {
    "archon_configured_repositories": "0006_archon_data",
    "archon_agent_work_orders": "0006_archon_data",
    "archon_agent_work_order_steps": "0006_archon_data",
}
_PG = postgresql.dialect()


def inspect_archon_schema(connection: Connection) -> AdoptReport:
    """Compare the live PostgreSQL schema with the models and Archon's extras (no changes made)."""
    tables = [t for t in metadata.sorted_tables if not HIDDEN_TABLE.match(t.name)]
    live = read_schema(connection, [t.name for t in tables])
    report = AdoptReport()
    add = report.findings.append
    if not live.tables:
        add(Finding(Severity.NOTE, "database", "no Archon table found: use upgrade, not adopt"))
    for table in tables:
        found = live.tables.get(table.name)
        if found is None and table.name in CREATED_ON_UPGRADE:
            later = CREATED_ON_UPGRADE[table.name]
            add(Finding(Severity.NOTE, table.name, f"absent; revision {later} creates it"))
            continue
        if found is None:
            add(_blocker(table.name, "missing table"))
            continue
        report.findings += _compare_table(table, found)
    report.findings += _compare_enums(tables, live)
    report.findings += _archon_extras(live)
    return report


def _blocker(subject: str, message: str) -> Finding:
    hint = _HINTS.get(subject)
    return Finding(Severity.BLOCKER, subject, f"{message} ({hint})" if hint else message)


# -- columns -----------------------------------------------------------------------------------


def _normalize(type_: str) -> str:
    type_ = type_.lower().strip()
    return re.sub(r"^varchar", "character varying", type_)


def _kind(type_: str) -> str:
    base = re.sub(r"\(.*\)", "", type_).strip()
    if base in ("text", "character varying", "character", "citext"):
        return "text"
    if base in ("smallint", "integer", "bigint"):
        return "integer"
    return base


def _expected_type(column: sa.Column[Any]) -> str:
    return _normalize(column.type.compile(dialect=_PG))


def _compare_column(table: str, column: sa.Column[Any], live: LiveTable) -> list[Finding]:
    subject = f"{table}.{column.name}"
    expected = _expected_type(column)
    found = live.columns.get(column.name)
    if found is None:
        return [_blocker(subject, f"missing column ({expected})")]
    actual = _normalize(found.type)
    findings = []
    if actual != expected:
        severity = Severity.WARNING if _kind(actual) == _kind(expected) else Severity.BLOCKER
        findings.append(Finding(severity, subject, f"type {actual}, the models expect {expected}"))
    if found.not_null and column.nullable:
        findings.append(
            Finding(Severity.WARNING, subject, "NOT NULL in the database, optional in the models")
        )
    elif not found.not_null and not column.nullable and not column.primary_key:
        findings.append(
            Finding(Severity.WARNING, subject, "nullable in the database, required in the models")
        )
    return findings


def _compare_table(table: sa.Table, live: LiveTable) -> list[Finding]:
    findings: list[Finding] = []
    for column in table.columns:
        findings += _compare_column(table.name, column, live)
    known = {c.name for c in table.columns}
    for name, extra in live.columns.items():
        if name not in known and not _is_archon_extra(table.name, name):
            findings.append(
                Finding(Severity.NOTE, f"{table.name}.{name}", f"{extra.type}, not mapped")
            )
    findings += _compare_keys(table, live)
    findings += _compare_foreign_keys(table, live)
    findings += _compare_checks_and_indexes(table, live)
    return findings


def _is_archon_extra(table: str, column: str) -> bool:
    return table in CHUNK_TABLES and (
        column.startswith("embedding_") or column in ("embedding", "content_search_vector")
    )


# -- keys, constraints, indexes ----------------------------------------------------------------


def _compare_keys(table: sa.Table, live: LiveTable) -> list[Finding]:
    findings = []
    expected_pk = {c.name for c in table.primary_key.columns}
    live_pk = live.of_kind("p")
    if not live_pk or set(live_pk[0].columns) != expected_pk:
        actual = ", ".join(live_pk[0].columns) if live_pk else "none"
        findings.append(
            _blocker(
                table.name,
                f"primary key is ({actual}), the models expect ({', '.join(sorted(expected_pk))})",
            )
        )
    uniques = {c.name: set(c.columns) for c in live.of_kind("u")}
    uniques.update({n: set(cols) for n, cols in live.unique_indexes.items() if n not in uniques})
    for constraint in table.constraints:
        if not isinstance(constraint, sa.UniqueConstraint):
            continue
        columns = {c.name for c in constraint.columns}
        subject = f"{table.name}({', '.join(c.name for c in constraint.columns)})"
        names = [name for name, cols in uniques.items() if cols == columns]
        if not names:
            findings.append(_blocker(subject, "missing unique constraint"))
        elif constraint.name not in names:
            message = f"unique constraint is named {names[0]}, the models call it {constraint.name}"
            findings.append(Finding(Severity.NOTE, subject, message))
    return findings


def _compare_foreign_keys(table: sa.Table, live: LiveTable) -> list[Finding]:
    findings = []
    for fk in table.foreign_key_constraints:
        columns = tuple(c.name for c in fk.columns)
        referred = fk.referred_table.name
        subject = f"{table.name}({', '.join(columns)}) -> {referred}"
        matches = [
            c for c in live.of_kind("f") if c.columns == columns and c.referred_table == referred
        ]
        if not matches:
            findings.append(_blocker(subject, "missing foreign key"))
            continue
        found, expected = matches[0], (fk.ondelete or "NO ACTION").upper()
        if found.on_delete != expected:
            message = (
                f"ON DELETE {found.on_delete}, the models expect {expected} "
                "(tolerated: the layer deletes dependent rows itself; Archon's "
                f"{UPGRADES}009_add_cascade_delete_constraints.sql adds the CASCADE)"
            )
            findings.append(Finding(Severity.WARNING, subject, message))
        if found.name != fk.name:
            message = f"foreign key is named {found.name}, the models call it {fk.name}"
            findings.append(Finding(Severity.NOTE, subject, message))
    return findings


def _compare_checks_and_indexes(table: sa.Table, live: LiveTable) -> list[Finding]:
    findings = []
    live_checks = {c.name for c in live.of_kind("c")}
    for check in table.constraints:
        # Checks bound to a type (sa.Enum's) only exist on dialects without native enums.
        if isinstance(check, sa.CheckConstraint) and not getattr(check, "_type_bound", False):
            if check.name not in live_checks:
                message = f"missing check constraint {check.name} (the layer validates anyway)"
                findings.append(Finding(Severity.WARNING, table.name, message))
    for index in table.indexes:
        if index.name not in live.indexes:
            message = f"missing index {index.name} (queries work, more slowly)"
            findings.append(Finding(Severity.NOTE, table.name, message))
    return findings


# -- enums and Archon's own extras -------------------------------------------------------------


def _compare_enums(tables: list[sa.Table], live: LiveSchema) -> list[Finding]:
    findings = []
    expected: dict[str, list[str]] = {}
    for table in tables:
        for column in table.columns:
            impl = column.type.dialect_impl(_PG)
            if isinstance(impl, postgresql.ENUM) and impl.name:
                expected[impl.name] = list(impl.enums)
    for name, labels in expected.items():
        found = live.enums.get(name)
        subject = f"enum type {name}"
        if found is None:
            findings.append(_blocker(subject, f"missing ({', '.join(labels)})"))
            continue
        missing = [label for label in labels if label not in found]
        extra = [label for label in found if label not in labels]
        if missing:
            findings.append(_blocker(subject, f"lacks the labels {', '.join(missing)}"))
        if extra:
            message = f"has labels the models do not know: {', '.join(extra)}"
            findings.append(Finding(Severity.WARNING, subject, message))
    return findings


def _archon_extras(live: LiveSchema) -> list[Finding]:
    findings = []
    pgvector = "vector" in live.extensions
    if not pgvector:
        message = "pgvector is not installed: vectors go to the exact or an external index"
        findings.append(Finding(Severity.NOTE, "extension vector", message))
    for name in CHUNK_TABLES:
        table = live.tables.get(name)
        if table is not None:
            findings += _embedding_columns(table, pgvector)
            findings += _search_vector(table)
    absent = [name for name in ARCHON_FUNCTIONS if name not in live.functions]
    if absent:
        message = f"absent: {', '.join(absent)} (optional: the layer does not call them)"
        findings.append(Finding(Severity.NOTE, "Archon SQL functions", message))
    return findings


def _embedding_columns(table: LiveTable, pgvector: bool) -> list[Finding]:
    findings = []
    for dim in EMBEDDING_DIMENSIONS:
        subject = f"{table.name}.embedding_{dim}"
        column = table.columns.get(f"embedding_{dim}")
        if column is None:
            message = (
                "missing (tolerated: the vector index adds it when a vector of that length is "
                f"first stored, or run `archon-db vectors add-dimension {dim}`; Archon's "
                f"{UPGRADES}003_ollama_add_columns.sql adds the five)"
            )
            findings.append(Finding(Severity.WARNING, subject, message))
        elif column.type not in (f"vector({dim})", "bytea"):
            findings.append(_blocker(subject, f"type {column.type}, expected vector({dim})"))
        elif column.type == "bytea" and pgvector:
            message = "bytea (float32 blobs, exact search) although pgvector is installed"
            findings.append(Finding(Severity.NOTE, subject, message))
    legacy = table.columns.get("embedding")
    if legacy is not None:
        message = (
            f"beta column ({legacy.type}) is not read by the layer: Archon's "
            f"{UPGRADES}004_ollama_migrate_data.sql is pending (it moves the vectors to "
            "embedding_1536); `archon-db migrate adopt --apply` performs it"
        )
        findings.append(Finding(Severity.WARNING, f"{table.name}.embedding", message))
    return findings


def _search_vector(table: LiveTable) -> list[Finding]:
    subject = f"{table.name}.content_search_vector"
    column = table.columns.get("content_search_vector")
    if column is None:
        message = (
            "missing: PostgreSQL keyword and hybrid search need it "
            f"(added by Archon's {UPGRADES}002_add_hybrid_search_tsvector.sql)"
        )
        return [Finding(Severity.WARNING, subject, message)]
    if column.type != "tsvector" or not column.generated:
        message = f"{column.type}{'' if column.generated else ', not generated'}; expected a "
        message += "generated tsvector"
        return [Finding(Severity.WARNING, subject, message)]
    return []
